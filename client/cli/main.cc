// deltaserve-cli: inspect and poke a running deltaserve server.
//
// Exit codes: 0 success (health: SERVING), 1 an RPC failed or the server is
// not SERVING, 2 bad usage. Errors go to stderr as "error: <CODE>: <message>".
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/base/token.h"
#include "deltaserve/client/cli/matrix_text.h"
#include "deltaserve/client/cli/npz.h"
#include "deltaserve/client/security_flags.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/proto/wire.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "Server address: host:port or unix:/path/to/socket");
ABSL_FLAG(std::string, model, "", "Model name; empty = the server's default model");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Deadline of each call (e.g. 10s, 500ms); watch: how long to watch (inf: until "
          "interrupted)");
ABSL_FLAG(std::string, inputs, "",
          "forward: one input row as CSV (e.g. 1,2,3,4); empty = CSV rows on stdin. "
          "input-gradient: a file of CSV rows (X)");
ABSL_FLAG(std::string, deltas, "", "input-gradient: a file of CSV rows (one delta per input row)");
ABSL_FLAG(bool, all, false, "params: print every parameter, one per line");
ABSL_FLAG(uint64_t, min_version, 0,
          "params: wait (up to --timeout) until the model reaches this version, then print the "
          "newest; 0 = at once");
ABSL_FLAG(int64_t, count, 0, "watch: stop after this many updates; 0 = until --timeout");
ABSL_FLAG(std::string, service, "", "health: service name to check; empty = the whole server");
ABSL_FLAG(std::string, output, "", "export: the .npz file to write");
ABSL_FLAG(std::string, input, "",
          "import: the .npz file to read (np.savez layout, as export writes)");
ABSL_FLAG(std::string, name, "", "token: the principal's name (letters, digits, . _ - @)");
ABSL_FLAG(std::string, role, "", "token: observer, simulator or admin");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(2), "top: time between refreshes");
ABSL_FLAG(bool, once, false, "top: print one screen and exit");

namespace deltaserve::client::cli {
namespace {

constexpr char kUsage[] =
    "deltaserve-cli SUBCOMMAND [flags]\n"
    "\n"
    "Subcommands:\n"
    "  info     model spec, version and parameter count\n"
    "  models   every served model, one line each, the default first: NAME version=V\n"
    "           optimizer_steps=S parameters=P input_dim=I output_dim=O [default]\n"
    "  forward  outputs (CSV) for --inputs=1,2,3 or CSV rows on stdin, then '# version: V'\n"
    "  input-gradient  d^T dy/dX (CSV, one row per input row) for --inputs=FILE and\n"
    "           --deltas=FILE (CSV rows), then '# outputs: ...' per row and '# version: V'\n"
    "           (read-only: nothing changes on the server)\n"
    "  params   version, parameter count and the first values (--all: every value)\n"
    "  params   version, parameter count and the first values (--all: every value);\n"
    "           --min_version=V waits until the model reaches V, then prints the newest\n"
    "  watch    print each parameter version as it is published, until --count=N updates\n"
    "           or --timeout passes (exit 0 either way)\n"
    "  health   grpc.health.v1 Check of --service; exit 0 only if SERVING\n"
    "  export   write the parameters to --output=FILE.npz, one array per tensor named as\n"
    "           torch.nn.Sequential names them (0.weight, 0.bias, 2.weight, ...) + version\n"
    "           (+ normalizer.mean, normalizer.var, normalizer.count with input normalisation)\n"
    "  import   (admin) set the parameters from --input=FILE.npz: a new version, optimizer\n"
    "           state reset; normalizer.* arrays, if present, replace the input statistics\n"
    "  checkpoint  (admin) write a checkpoint now (server needs --state_dir); prints its path\n"
    "  top      per model (--model: only that one), the newest value of every metrics-history\n"
    "           series, its change over the last minute and its age, refreshed every\n"
    "           --interval=2s; --once prints one screen and exits (docs/operations.md)\n"
    "  token    a new random token for --name=NAME --role=observer|simulator|admin: prints\n"
    "           the Principal line for the server's --auth_file, then the token for the\n"
    "           client (--token_file or $DELTASERVE_TOKEN); contacts no server\n"
    "\n"
    "Common flags: --target=HOST:PORT|unix:PATH --model=NAME --timeout=10s\n"
    "Security: --tls_ca_file=PEM [--tls_cert_file=PEM --tls_key_file=PEM]\n"
    "          [--tls_server_name=NAME] [--token_file=FILE] (docs/security.md)";

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kParamsShown = 8;

int Fail(const absl::Status& status) {
  std::cerr << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << std::endl;
  return kExitFailure;
}

int Info(const TrainerClient& client) {
  auto info = client.GetModelInfo(absl::GetFlag(FLAGS_model));
  if (!info.ok()) return Fail(info.status());
  const deltaserve::v1::ModelSpec& spec = info->spec();
  std::string layers = absl::StrCat(spec.input_dim());
  const absl::StatusOr<model::MlpSpec> mlp = wire::MlpSpecFromProto(spec);
  if (!mlp.ok()) return Fail(mlp.status());
  for (const model::LayerSpec& layer : mlp->layers) {
    absl::StrAppend(&layers, " -> ", layer.units, " ", model::ActivationName(layer.activation));
  }
  const auto& opt = spec.optimizer();
  const auto& sur = spec.surrogate();
  absl::PrintF("model: %s\n", spec.name());
  absl::PrintF("version: %d\n", info->version());
  absl::PrintF("parameters: %d\n", info->parameter_count());
  absl::PrintF("layers: %s\n", layers);
  absl::PrintF("input_dim: %d\noutput_dim: %d\n", spec.input_dim(), info->output_dim());
  absl::PrintF(
      "optimizer: %s lr=%g momentum=%g nesterov=%d beta1=%g beta2=%g eps=%g wd=%g clip=%g\n",
      deltaserve::v1::OptimizerConfig::Kind_Name(opt.kind()), opt.learning_rate(), opt.momentum(),
      opt.nesterov(), opt.beta1(), opt.beta2(), opt.epsilon(), opt.weight_decay(), opt.clip_norm());
  const auto& schedule = opt.schedule();
  absl::PrintF("schedule: %s warmup_steps=%d total_steps=%d final_lr=%g step_size=%d gamma=%g\n",
               deltaserve::v1::LearningRateSchedule::Kind_Name(schedule.kind()),
               schedule.warmup_steps(), schedule.total_steps(), schedule.final_learning_rate(),
               schedule.step_size(), schedule.gamma());
  absl::PrintF("optimizer_steps: %d\nlearning_rate: %g\n", info->optimizer_steps(),
               info->learning_rate());
  absl::PrintF("surrogate: %s delta_scale=%g reduction=%s\n",
               deltaserve::v1::SurrogateConfig::Mode_Name(sur.mode()), sur.delta_scale(),
               deltaserve::v1::SurrogateConfig::Reduction_Name(sur.reduction()));
  absl::PrintF("samples_per_step: %d\nmax_staleness: %d\nseed: %d\n", spec.samples_per_step(),
               spec.max_staleness(), spec.seed());
  return kExitOk;
}

int Models(const TrainerClient& client) {
  auto models = client.ListModels();
  if (!models.ok()) return Fail(models.status());
  for (size_t i = 0; i < models->size(); ++i) {
    const deltaserve::v1::ModelInfo& info = (*models)[i];
    absl::PrintF("%s version=%d optimizer_steps=%d parameters=%d input_dim=%d output_dim=%d%s\n",
                 info.spec().name(), info.version(), info.optimizer_steps(), info.parameter_count(),
                 info.spec().input_dim(), info.output_dim(), i == 0 ? " default" : "");
  }
  return kExitOk;
}

int Forward(const TrainerClient& client) {
  absl::StatusOr<model::Matrix> inputs;
  const std::string row = absl::GetFlag(FLAGS_inputs);
  if (row.empty()) {
    inputs = ReadCsvMatrix(std::cin);
  } else {
    auto values = ParseCsvRow(row);
    if (!values.ok()) return Fail(values.status());
    inputs = RowsToMatrix({*values});
  }
  if (!inputs.ok()) return Fail(inputs.status());
  auto result = client.Forward(*inputs, absl::GetFlag(FLAGS_model));
  if (!result.ok()) return Fail(result.status());
  absl::PrintF("%s# version: %d\n", FormatCsv(result->outputs), result->version);
  return kExitOk;
}

// A file of CSV rows (ReadCsvMatrix); `flag` names it in errors.
absl::StatusOr<model::Matrix> ReadCsvFile(absl::string_view flag, const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": expected a file of CSV rows"));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--", flag, ": cannot open \"", path, "\""));
  absl::StatusOr<model::Matrix> matrix = ReadCsvMatrix(in);
  if (!matrix.ok()) {
    return absl::Status(matrix.status().code(),
                        absl::StrCat("--", flag, " \"", path, "\": ", matrix.status().message()));
  }
  return matrix;
}

// The input gradient as CSV rows (so the output can be another model's
// --deltas), then each row's outputs and the version as '#' comments.
int InputGradient(const TrainerClient& client) {
  absl::StatusOr<model::Matrix> inputs = ReadCsvFile("inputs", absl::GetFlag(FLAGS_inputs));
  if (!inputs.ok()) return Fail(inputs.status());
  absl::StatusOr<model::Matrix> deltas = ReadCsvFile("deltas", absl::GetFlag(FLAGS_deltas));
  if (!deltas.ok()) return Fail(deltas.status());
  auto result = client.InputGradient(*inputs, *deltas, absl::GetFlag(FLAGS_model));
  if (!result.ok()) return Fail(result.status());
  std::string outputs;
  for (Eigen::Index i = 0; i < result->outputs.rows(); ++i) {
    absl::StrAppend(&outputs, "# outputs: ",
                    FormatCsv(model::Matrix(result->outputs.row(i))));  // Ends in '\n'.
  }
  absl::PrintF("%s%s# version: %d\n", FormatCsv(result->input_gradient), outputs, result->version);
  return kExitOk;
}

int Params(const TrainerClient& client) {
  auto params = client.GetParameters(absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_min_version));
  if (!params.ok()) return Fail(params.status());
  absl::PrintF("model: %s\nversion: %d\ncount: %d\n", params->model, params->version,
               params->parameters.size());
  if (absl::GetFlag(FLAGS_all)) {
    for (float value : params->parameters) absl::PrintF("%.9g\n", value);
  } else {
    const size_t shown = std::min<size_t>(kParamsShown, params->parameters.size());
    std::vector<std::string> first;
    for (size_t i = 0; i < shown; ++i)
      first.push_back(absl::StrFormat("%.9g", params->parameters[i]));
    absl::PrintF("first %d: %s%s\n", shown, absl::StrJoin(first, ","),
                 shown < params->parameters.size() ? ",..." : "");
  }
  return kExitOk;
}

int Watch(const TrainerClient& client) {
  const int64_t count = absl::GetFlag(FLAGS_count);
  int64_t seen = 0;
  const absl::Status status =
      client.WatchParameters(absl::GetFlag(FLAGS_model), [&](Parameters params) {
        absl::PrintF("version %d (%d parameters)\n", params.version, params.parameters.size());
        std::fflush(stdout);
        return count <= 0 || ++seen < count;
      });
  // The watch lasts --timeout (ClientOptions::watch_timeout): its deadline
  // is the normal end of a watch without --count.
  if (status.ok() || absl::IsDeadlineExceeded(status)) return kExitOk;
  return Fail(status);
}

int Export(const TrainerClient& client) {
  const std::string output = absl::GetFlag(FLAGS_output);
  if (output.empty())
    return Fail(absl::InvalidArgumentError("export: --output=FILE.npz is required"));
  auto info = client.GetModelInfo(absl::GetFlag(FLAGS_model));
  if (!info.ok()) return Fail(info.status());
  auto params = client.GetParameters(absl::GetFlag(FLAGS_model));
  if (!params.ok()) return Fail(params.status());
  std::vector<NpyArray> tensors =
      TensorsFromParameters(info->spec(), params->parameters, params->version);
  if (params->input_statistics) {
    for (NpyArray& a : TensorsFromStatistics(*params->input_statistics)) {
      tensors.push_back(std::move(a));
    }
  }
  const absl::Status written = WriteNpz(output, tensors);
  if (!written.ok()) return Fail(written);
  absl::PrintF("wrote %s: model %s, version %d, %d parameters\n", output, params->model,
               params->version, params->parameters.size());
  return kExitOk;
}

int Import(const TrainerClient& client) {
  const std::string input = absl::GetFlag(FLAGS_input);
  if (input.empty())
    return Fail(absl::InvalidArgumentError("import: --input=FILE.npz is required"));
  auto info = client.GetModelInfo(absl::GetFlag(FLAGS_model));
  if (!info.ok()) return Fail(info.status());
  auto arrays = ReadNpz(input);
  if (!arrays.ok()) return Fail(arrays.status());
  auto parameters = ParametersFromTensors(info->spec(), *arrays);
  if (!parameters.ok()) return Fail(parameters.status());
  auto statistics = StatisticsFromTensors(info->spec(), *arrays);
  if (!statistics.ok()) return Fail(statistics.status());
  auto version =
      client.ImportParameters(absl::GetFlag(FLAGS_model), *parameters, statistics->get());
  if (!version.ok()) return Fail(version.status());
  absl::PrintF("imported %s into model %s as version %d\n", input, info->spec().name(), *version);
  return kExitOk;
}

int Checkpoint(const TrainerClient& client) {
  auto written = client.Checkpoint(absl::GetFlag(FLAGS_model));
  if (!written.ok()) return Fail(written.status());
  absl::PrintF("checkpoint %s: model %s, version %d, %d bytes\n", written->path(), written->model(),
               written->version(), written->bytes());
  return kExitOk;
}

int Token() {
  const std::string name = absl::GetFlag(FLAGS_name);
  const std::string role = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_role));
  const bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-' || c == '@';
  });
  if (!name_ok) {
    std::cerr << "token: --name must be letters, digits, '.', '_', '-' or '@', got \"" << name
              << "\"" << std::endl;
    return kExitUsage;
  }
  if (role != "OBSERVER" && role != "SIMULATOR" && role != "ADMIN") {
    std::cerr << "token: --role must be observer, simulator or admin, got \""
              << absl::GetFlag(FLAGS_role) << "\"" << std::endl;
    return kExitUsage;
  }
  absl::StatusOr<std::string> token = base::NewToken();
  if (!token.ok()) return Fail(token.status());
  std::cerr << "# line 1: add it to the server's --auth_file, then SIGHUP the server;\n"
               "# line 2: the token, for the client only (--token_file or $"
            << kTokenEnvVar << ")" << std::endl;
  absl::PrintF("principals { name: \"%s\" role: %s token_sha256: \"%s\" }\n%s\n", name, role,
               base::Sha256Hex(*token), *token);
  return kExitOk;
}

int Health(absl::Duration timeout, const ChannelSecurity& security) {
  auto stub = grpc::health::v1::Health::NewStub(
      CreateChannel(absl::GetFlag(FLAGS_target), kDefaultMaxMessageBytes, security));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  const absl::Status status = FromGrpcStatus(stub->Check(&context, request, &response));
  if (!status.ok()) return Fail(status);
  absl::PrintF("%s\n",
               grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()));
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk
                                                                             : kExitFailure;
}

// The value of the newest point at or before `unix_ms`, if any.
std::optional<double> ValueAt(const deltaserve::v1::MetricSeries& series, int64_t unix_ms) {
  std::optional<double> found;
  for (int i = 0; i < series.unix_ms_size() && i < series.values_size(); ++i) {
    if (series.unix_ms(i) > unix_ms) break;
    found = series.values(i);
  }
  return found;
}

// One screen of `top`: every model's series, newest value, change over the
// last minute and age. An error ends the screen (and, with --once, the run).
absl::Status TopScreen(const TrainerClient& client, const std::string& only_model) {
  std::vector<std::string> names;
  if (!only_model.empty()) {
    names.push_back(only_model);
  } else {
    auto models = client.ListModels();
    if (!models.ok()) return models.status();
    for (const auto& info : *models) names.push_back(info.spec().name());
  }
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  absl::PrintF("deltaserve top  %s  %s\n", absl::GetFlag(FLAGS_target),
               absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()));
  for (const std::string& name : names) {
    auto history = client.GetMetricsHistory(name);
    if (!history.ok()) return history.status();
    absl::PrintF("\nmodel %s\n", history->model());
    absl::PrintF("  %-28s %14s %14s %8s\n", "series", "newest", "change 1m", "age");
    if (history->series().empty()) absl::PrintF("  (no points yet)\n");
    for (const deltaserve::v1::MetricSeries& series : history->series()) {
      const int n = std::min(series.unix_ms_size(), series.values_size());
      if (n == 0) continue;
      const int64_t newest_ms = series.unix_ms(n - 1);
      const double newest = series.values(n - 1);
      const std::optional<double> before = ValueAt(series, newest_ms - 60'000);
      const std::string change = before ? absl::StrFormat("%+.6g", newest - *before) : "-";
      const double age = static_cast<double>(std::max<int64_t>(now_ms - newest_ms, 0)) / 1000.0;
      absl::PrintF("  %-28s %14.6g %14s %7.0fs\n", series.name(), newest, change, age);
    }
  }
  std::fflush(stdout);
  return absl::OkStatus();
}

int Top(const TrainerClient& client) {
  const std::string model = absl::GetFlag(FLAGS_model);
  if (absl::GetFlag(FLAGS_once)) {
    const absl::Status status = TopScreen(client, model);
    return status.ok() ? kExitOk : Fail(status);
  }
  const absl::Duration interval = std::max(absl::GetFlag(FLAGS_interval), absl::Milliseconds(100));
  while (true) {
    absl::PrintF("\033[H\033[2J");  // Home, clear screen.
    if (const absl::Status status = TopScreen(client, model); !status.ok()) {
      absl::PrintF("error: %s: %s (retrying)\n", absl::StatusCodeToString(status.code()),
                   status.message());
      std::fflush(stdout);
    }
    absl::SleepFor(interval);
  }
}

int Run(const std::vector<char*>& args) {
  if (args.size() != 2) {
    std::cerr << (args.size() < 2 ? "missing subcommand" : "one subcommand expected") << "\n\n"
              << kUsage << std::endl;
    return kExitUsage;
  }
  const std::string command = args[1];
  if (command == "token") return Token();
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  ClientOptions options;
  options.timeout = timeout;
  options.watch_timeout = timeout;
  options.security = SecurityOptionsFromFlags();
  if (command == "health") {
    absl::StatusOr<ChannelSecurity> security = ChannelSecurity::Load(options.security);
    if (!security.ok()) return Fail(security.status());
    return Health(timeout, *security);
  }

  auto client = TrainerClient::Connect(absl::GetFlag(FLAGS_target), options);
  if (!client.ok()) return Fail(client.status());
  if (command == "info") return Info(**client);
  if (command == "models" || command == "list-models") return Models(**client);
  if (command == "forward") return Forward(**client);
  if (command == "input-gradient") return InputGradient(**client);
  if (command == "params") return Params(**client);
  if (command == "watch") return Watch(**client);
  if (command == "export") return Export(**client);
  if (command == "import") return Import(**client);
  if (command == "checkpoint") return Checkpoint(**client);
  if (command == "top") return Top(**client);
  std::cerr << "unknown subcommand \"" << command << "\"\n\n" << kUsage << std::endl;
  return kExitUsage;
}

}  // namespace
}  // namespace deltaserve::client::cli

int main(int argc, char** argv) {
  const deltaserve::base::ProgramInfo program = {
      "deltaserve-cli",
      deltaserve::client::cli::kUsage,
      {"client/cli/", deltaserve::client::kSecurityFlagsFile}};
  if (std::optional<int> exit_code = deltaserve::base::CheckCommandLine(program, argc, argv)) {
    return *exit_code;
  }
  absl::SetProgramUsageMessage(deltaserve::client::cli::kUsage);
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  return deltaserve::client::cli::Run(args);
}
