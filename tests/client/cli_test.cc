// Smoke test of the real deltaserve-cli binary against an in-process server.
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/tests/client/test_server.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::deltaserve::client::testing::kInputDim;
using ::deltaserve::client::testing::kModelName;
using ::deltaserve::client::testing::kOutputDim;
using ::deltaserve::client::testing::ServerTest;

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr, interleaved
};

// Runs `deltaserve-cli <args>` through the shell, optionally feeding `stdin_text`.
CliRun RunCli(const std::string& args, const std::string& stdin_text = "") {
  std::string command = absl::StrCat(DELTASERVE_CLI_PATH, " ", args, " 2>&1");
  if (!stdin_text.empty()) command = absl::StrCat("printf '", stdin_text, "' | ", command);
  CliRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.output.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// The non-comment lines of `output`, each split into floats.
std::vector<std::vector<float>> CsvRows(const std::string& output) {
  std::vector<std::vector<float>> rows;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    std::vector<float> row;
    for (absl::string_view field : absl::StrSplit(line, ',')) {
      float value = 0;
      EXPECT_TRUE(absl::SimpleAtof(field, &value)) << "not a number: " << field;
      row.push_back(value);
    }
    rows.push_back(row);
  }
  return rows;
}

class Cli : public ServerTest {
 protected:
  std::string Target() const { return absl::StrCat("--target=", server->address()); }
};

TEST_F(Cli, InfoPrintsNameVersionAndParameterCount) {
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();

  const CliRun run = RunCli(absl::StrCat("info ", Target()));

  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, absl::StrCat("model: ", kModelName))) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, "version: 0\n")) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, absl::StrCat("parameters: ", info->parameter_count())))
      << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, "layers: 3 -> 8 tanh -> 2 identity")) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, "optimizer_steps: 0\n")) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, "learning_rate: 0.05\n")) << run.output;  // SGD lr.
  EXPECT_TRUE(absl::StrContains(run.output, "schedule: KIND_UNSPECIFIED")) << run.output;
}

TEST_F(Cli, ForwardPrintsTheServersOutputsAndVersion) {
  model::Matrix x(1, 3);
  x << 0.5f, -1.0f, 2.0f;
  auto expected = client->Forward(x);
  ASSERT_TRUE(expected.ok()) << expected.status();

  const CliRun run = RunCli(absl::StrCat("forward ", Target(), " --inputs=0.5,-1,2"));

  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto rows = CsvRows(run.output);
  ASSERT_EQ(rows.size(), 1u) << run.output;
  ASSERT_EQ(rows[0].size(), static_cast<size_t>(kOutputDim)) << run.output;
  for (int c = 0; c < kOutputDim; ++c) EXPECT_EQ(rows[0][c], expected->outputs(0, c));
  EXPECT_TRUE(absl::StrContains(run.output, "# version: 0")) << run.output;
}

TEST_F(Cli, ForwardReadsCsvRowsFromStdin) {
  const CliRun run = RunCli(absl::StrCat("forward ", Target()), "1,2,3\\n4,5,6\\n");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(CsvRows(run.output).size(), 2u) << run.output;
}

TEST_F(Cli, ForwardWithTheWrongWidthReportsInvalidArgument) {
  const CliRun run = RunCli(absl::StrCat("forward ", Target(), " --inputs=1,2"));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_TRUE(absl::StartsWith(run.output, "error: INVALID_ARGUMENT: ")) << run.output;
}

TEST_F(Cli, ParamsPrintsCountAndEveryValueWithAll) {
  auto params = client->GetParameters();
  ASSERT_TRUE(params.ok()) << params.status();

  const CliRun run = RunCli(absl::StrCat("params --all ", Target()));

  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, absl::StrCat("count: ", params->parameters.size())))
      << run.output;
  const std::vector<absl::string_view> lines = absl::StrSplit(run.output, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3 + params->parameters.size()) << run.output;
  float last = 0;
  ASSERT_TRUE(absl::SimpleAtof(lines.back(), &last));
  EXPECT_EQ(last, params->parameters.back());
}

// Two models: one line each, in configuration order, the default first and
// marked; `list-models` is the same command.
TEST(CliModels, ModelsPrintsOneLinePerModelTheDefaultFirst) {
  deltaserve::v1::ServerConfig config = testing::SmallConfig();
  deltaserve::v1::ModelSpec* second = config.add_models();
  *second = config.models(0);
  second->set_name("aa_second");  // Sorts first: the order must be the config's.
  second->set_input_dim(5);
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto server = server::DeltaServer::Start(config, options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = TrainerClient::Connect((*server)->address());
  ASSERT_TRUE(client.ok()) << client.status();
  auto first_info = (*client)->GetModelInfo(kModelName);
  auto second_info = (*client)->GetModelInfo("aa_second");
  ASSERT_TRUE(first_info.ok() && second_info.ok());

  for (const char* command : {"models", "list-models"}) {
    const CliRun run = RunCli(absl::StrCat(command, " --target=", (*server)->address()));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const std::vector<std::string> lines = absl::StrSplit(run.output, '\n', absl::SkipEmpty());
    ASSERT_EQ(lines.size(), 2u) << run.output;
    EXPECT_EQ(lines[0], absl::StrCat(kModelName, " version=0 optimizer_steps=0 parameters=",
                                     first_info->parameter_count(),
                                     " input_dim=3 output_dim=", kOutputDim, " default"));
    EXPECT_EQ(lines[1],
              absl::StrCat("aa_second version=0 optimizer_steps=0 parameters=",
                           second_info->parameter_count(), " input_dim=5 output_dim=", kOutputDim));
  }
}

// params --min_version above the version waits for --timeout, then fails
// with DEADLINE_EXCEEDED; at the version it prints at once.
TEST_F(Cli, ParamsWithMinVersionWaitsThenTimesOut) {
  const CliRun waited = RunCli(absl::StrCat("params --min_version=1 --timeout=300ms ", Target()));
  EXPECT_EQ(waited.exit_code, 1) << waited.output;
  EXPECT_TRUE(absl::StartsWith(waited.output, "error: DEADLINE_EXCEEDED: ")) << waited.output;
  const CliRun at_once = RunCli(absl::StrCat("params --min_version=0 ", Target()));
  EXPECT_EQ(at_once.exit_code, 0) << at_once.output;
  EXPECT_TRUE(absl::StrContains(at_once.output, "version: 0\n")) << at_once.output;
}

TEST_F(Cli, WatchStopsAfterCount) {
  const CliRun run = RunCli(absl::StrCat("watch --count=1 ", Target()));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(absl::StartsWith(run.output, "version 0 (")) << run.output;
}

// Nothing trains: after the first update the watch waits for --timeout, then
// ends normally (it used to wait forever).
TEST_F(Cli, WatchReturnsAfterItsTimeoutWhenNothingTrains) {
  const absl::Time start = absl::Now();
  const CliRun run = RunCli(absl::StrCat("watch --timeout=2s ", Target()));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output, absl::StrCat("version 0 (", client->GetParameters()->parameters.size(),
                                     " parameters)\n"));
  EXPECT_GE(took, absl::Seconds(2));
  EXPECT_LT(took, absl::Seconds(20)) << "the watch did not end at its --timeout";
}

// top --once: one screen with the newest value of every series, after two
// optimizer steps (samples_per_step 1), and exit 0.
TEST_F(Cli, TopOncePrintsTheNewestValueOfEverySeries) {
  for (int i = 0; i < 2; ++i) {
    DeltaSubmission s;
    s.inputs = model::Matrix::Constant(1, kInputDim, 0.5f);
    s.deltas = model::Matrix::Ones(1, kOutputDim);
    ASSERT_TRUE(client->SubmitDelta(s).ok());
  }
  const CliRun run = RunCli(absl::StrCat("top --once ", Target()));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, absl::StrCat("model ", kModelName))) << run.output;
  for (const char* series : {"loss", "grad_norm", "update_norm", "learning_rate", "rows"}) {
    EXPECT_TRUE(absl::StrContains(run.output, absl::StrCat("  ", series, " "))) << run.output;
  }
  // loss: l_s = 0.5 * |ones(2)|^2 = 1 at every step; rows: 1.
  EXPECT_TRUE(absl::StrContains(run.output, "  rows ")) << run.output;
  const CliRun unknown = RunCli(absl::StrCat("top --once --model=nope ", Target()));
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_TRUE(absl::StrContains(unknown.output, "NOT_FOUND")) << unknown.output;
}

TEST_F(Cli, HealthIsServingForTheServerAndTheModel) {
  const CliRun server_health = RunCli(absl::StrCat("health ", Target()));
  EXPECT_EQ(server_health.exit_code, 0) << server_health.output;
  EXPECT_EQ(server_health.output, "SERVING\n");

  const CliRun model_health =
      RunCli(absl::StrCat("health ", Target(), " --service=deltaserve.v1.Trainer/", kModelName));
  EXPECT_EQ(model_health.exit_code, 0) << model_health.output;
}

TEST_F(Cli, HealthOfAnUnknownServiceFails) {
  const CliRun run = RunCli(absl::StrCat("health ", Target(), " --service=nope"));
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_TRUE(absl::StartsWith(run.output, "error: NOT_FOUND: ")) << run.output;
}

TEST_F(Cli, ADeadServerFailsWithUnavailable) {
  const std::string dead = Target();
  server->Shutdown();  // Nothing listens on that port any more.

  const CliRun health = RunCli(absl::StrCat("health --timeout=5s ", dead));
  const CliRun info = RunCli(absl::StrCat("info --timeout=5s ", dead));

  EXPECT_NE(health.exit_code, 0) << health.output;
  EXPECT_TRUE(absl::StartsWith(health.output, "error: UNAVAILABLE: ")) << health.output;
  EXPECT_NE(info.exit_code, 0) << info.output;
  EXPECT_TRUE(absl::StartsWith(info.output, "error: UNAVAILABLE: ")) << info.output;
}

TEST(CliUsage, MissingOrUnknownSubcommandIsAUsageError) {
  const CliRun missing = RunCli("");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_TRUE(absl::StrContains(missing.output, "Subcommands:")) << missing.output;
  EXPECT_EQ(RunCli("frobnicate").exit_code, 2);
}

TEST(CliUsage, HelpListsSubcommandsAndFlagsAndExitsZero) {
  const CliRun help = RunCli("--help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const char* text : {"Subcommands:", "--target (", "--timeout (", "--model ("}) {
    EXPECT_TRUE(absl::StrContains(help.output, text)) << text << " missing from:\n" << help.output;
  }
}

TEST(CliUsage, AnUnknownFlagIsOneLineAndExitsTwo) {
  const CliRun run = RunCli("info --no_such_flag");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_EQ(run.output, "deltaserve-cli: unknown flag --no_such_flag (--help lists the flags)\n");
}

TEST(CliUsage, VersionPrintsTheProjectVersion) {
  const CliRun version = RunCli("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.output, absl::StrCat("deltaserve-cli ", DELTASERVE_VERSION, "\n"));
}

}  // namespace
}  // namespace deltaserve::client
