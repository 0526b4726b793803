// deltaserve_transport_bench: one side-by-side run of what a call costs on
// each transport (docs/benchmarks.md, "Transport"). Not a test: it prints
// numbers, asserts nothing about them.
//
//   deltaserve_transport_bench --server_binary=build/server/deltaserve
//       --echo_binary=build/bench/deltaserve_echo_server [--seconds=2]
//
// Every server is a separate process on 127.0.0.1:0 (bench/load's
// ServerProcess), so its CPU time (/proc/PID/stat utime + stime) is its own.
// Every simulator is a thread with its own connection. Sections:
//   1. Forward calls/s and latency p50/p99: bare-gRPC echo (unary, stream)
//      vs deltaserve (unary, Session) with 1, 8, 64 simulators, streams with
//      1 and 8 calls in flight.
//   2. Forward + SubmitDelta per step (8 simulators, 1 in flight).
//   3. Server CPU µs per Forward row, 64 one-row simulators, batching on
//      (max_batch_rows 256, min_batch_macs 1: every row joins a batch, the
//      small model's too, which the default computes inline) and off
//      (max_batch_rows 1), unary and Session,
//      for the small model and (--batching_models) two larger ones whose
//      weights outgrow the L2 cache (5.3 MB) and the L3 cache (50 MB).
//   4. Weight push: 100k-parameter model, 64 watchers, from sending the
//      SubmitDelta that steps to the moment the last watcher holds the version,
//      deltaserve and the echo floor (the same number of parameters, encoded
//      once per step) stepped alternately, each with its own 64 watchers; and
//      per step, the server's CPU (/proc, over the whole measured run) and this
//      process's (getrusage: the watchers' and driver's threads, over each
//      step). A watch that ends stops the section (exit 1) with each ended
//      watch's status and the server's open socket count.
//   5. SubmitDelta alone (1 row, every one an optimizer step; max_staleness
//      0), 8 simulators with 1 and 8 calls in flight, unary and Session, vs
//      the echo floor (whose SubmitDelta answers at once): what the hand-off
//      to the learner thread and back costs per call. --submit_alone picks
//      the configurations (e.g. session:1 alone, for a profile). --floors
//      adds echo variants to the Session rows (default: handoff, the
//      hand-off to a worker thread alone, with no step, so that what the
//      step costs and what the hand-off costs can be told apart; see
//      echo_server.cc for session_cq and session_cq_only).
// The model for 1–2 (and section 3's first) is 4 → 16 tanh → 2 identity,
// SGD, one row per call.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/bench/load/latency_histogram.h"
#include "deltaserve/bench/load/server_process.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/sim/runner.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

ABSL_FLAG(std::string, server_binary, "", "the deltaserve binary");
ABSL_FLAG(std::string, echo_binary, "", "the deltaserve_echo_server binary");
ABSL_FLAG(double, seconds, 2.0, "measured seconds per configuration (after 0.5 s warm-up)");
ABSL_FLAG(int, push_steps, 200, "weight-push samples");
ABSL_FLAG(int, push_window_bytes, deltaserve::client::kDefaultWatchWindowBytes,
          "weight push: each watcher's HTTP/2 stream window (client watch_window_bytes; the "
          "w-th watcher gets this + w, so each has its own connection)");
ABSL_FLAG(std::string, sections, "12345", "which sections to run");
ABSL_FLAG(std::string, forward_sims, "1,8,64", "section 1: simulator counts, comma-separated");
ABSL_FLAG(std::string, forward_depths, "0,1,8",
          "section 1: calls in flight per simulator, comma-separated; 0 = unary, n >= 1 = a "
          "Session (and an echo stream) with n in flight");
ABSL_FLAG(std::string, batching_models, "small,large,huge",
          "section 3: models, of small (4 -> 16 -> 2), large (256 -> 1024 -> 1024 -> 16, 1.3M "
          "parameters), huge (1024 -> 4096 -> 2048 -> 16, 12.6M parameters)");
ABSL_FLAG(std::string, submit_alone, "unary:1,session:1,session:8",
          "section 5: configurations, comma-separated transport:depth (unary:1, session:n)");
ABSL_FLAG(std::string, floors, "handoff",
          "section 5: echo variants measured beside the echo in the Session rows, "
          "comma-separated: handoff (SubmitDelta answered by a worker thread, as deltaserve's "
          "learner answers it, with no step), session_cq (the Session on gRPC's async API, one "
          "thread reading, answering and writing; the other methods on the callback API), "
          "session_cq_only (the same in a server serving nothing else); empty: none");
ABSL_FLAG(std::string, model_extra, "",
          "sections 1-2: extra ModelSpec fields for deltaserve, e.g. \"max_batch_rows: 1\"");

namespace deltaserve::bench {
namespace {

namespace v1 = ::deltaserve::v1;
using load::LatencyHistogram;
using load::ServerProcess;

constexpr char kSmallModel[] = R"pb(
  models {
    name: "m"
    input_dim: 4
    seed: 1
    layers { units: 16 activation: ACTIVATION_TANH }
    layers { units: 2 activation: ACTIVATION_IDENTITY }
    optimizer { kind: SGD learning_rate: 0.001 }
    samples_per_step: 1 %s
  })pb";

// Section 3's larger models: "m", input_dim, the three layers' units, then the
// ModelSpec fields of the batching setting.
constexpr char kWideModel[] = R"pb(
  models {
    name: "m"
    input_dim: %d
    seed: 1
    layers { units: %d activation: ACTIVATION_TANH }
    layers { units: %d activation: ACTIVATION_TANH }
    layers { units: 16 activation: ACTIVATION_IDENTITY }
    optimizer { kind: SGD learning_rate: 0.001 }
    samples_per_step: 1 %s
  })pb";

// 128 → 256 → 256 → 8: 100,872 parameters.
constexpr char kPushModel[] = R"pb(
  models {
    name: "big"
    input_dim: 128
    seed: 1
    layers { units: 256 activation: ACTIVATION_TANH }
    layers { units: 256 activation: ACTIVATION_TANH }
    layers { units: 8 activation: ACTIVATION_IDENTITY }
    optimizer { kind: ADAM learning_rate: 0.0001 }
    samples_per_step: 1
  })pb";

std::string WriteConfig(const std::string& text) {
  char path[] = "/tmp/deltaserve_transport_bench_XXXXXX";
  const int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  std::ofstream(path) << text;
  return path;
}

// CPU seconds a process spent in user and in kernel mode.
struct CpuTime {
  double user = 0, system = 0;
  double total() const { return user + system; }
  CpuTime operator-(const CpuTime& other) const {
    return {user - other.user, system - other.system};
  }
  CpuTime& operator+=(const CpuTime& other) {
    user += other.user;
    system += other.system;
    return *this;
  }
};

// utime and stime of `pid` (/proc/PID/stat).
CpuTime ProcessCpu(pid_t pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double ticks[2] = {0, 0};
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks[i - 14] = std::stod(field);
  }
  const auto hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {ticks[0] / hz, ticks[1] / hz};
}

// utime + stime of `pid`, in seconds.
double CpuSeconds(pid_t pid) { return ProcessCpu(pid).total(); }

// Context switches (voluntary and not) of `pid`'s threads alive now, from
// /proc/PID/task/*/status: a thread hand-off per call shows here first.
uint64_t ContextSwitches(pid_t pid) {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return 0;
  uint64_t switches = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream status(absl::StrCat(tasks, "/", entry->d_name, "/status"));
    std::string line;
    while (std::getline(status, line)) {
      const size_t colon = line.find(':');
      if (colon == std::string::npos || line.find("ctxt_switches") == std::string::npos) continue;
      uint64_t count = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &count)) {
        switches += count;
      }
    }
  }
  closedir(dir);
  return switches;
}

// Starts `binary` and waits until it listens; then removes `config` (a
// WriteConfig file, read by then; "" for none).
std::unique_ptr<ServerProcess> Spawn(const std::string& binary, const std::string& config,
                                     std::vector<std::string> extra_args = {}) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(binary, config, "warning", absl::Seconds(30), std::move(extra_args));
  if (!config.empty()) std::remove(config.c_str());
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start %s: %s\n", binary.c_str(),
                 server.status().ToString().c_str());
    std::exit(2);
  }
  return *std::move(server);
}

// A client on a connection of its own, as a simulator process would have.
std::unique_ptr<client::TrainerClient> OwnConnection(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  return std::make_unique<client::TrainerClient>(v1::Trainer::NewStub(channel));
}

using ::deltaserve::sim::Transport;
using ::deltaserve::sim::TransportName;

struct LoadResult {
  double calls_per_second = 0;
  double p50_ms = 0, p99_ms = 0;
  double server_cpu_us_per_call = 0;
  double server_switches_per_call = 0;  // Context switches of the server's threads.
  uint64_t errors = 0;
};

// What each simulator thread calls in a loop.
enum class Work { kForward, kForwardThenSubmit, kSubmit };

// `sims` threads, each doing `work` with `depth` calls in flight (Forward or
// SubmitDelta alone; Forward then SubmitDelta is one call at a time), for
// the measured window.
LoadResult RunLoad(const ServerProcess& server, Transport transport, int sims, int depth, Work work,
                   int input_dim = 4) {
  const bool with_submit = work == Work::kForwardThenSubmit;
  std::atomic<bool> stop{false}, measuring{false};
  std::atomic<uint64_t> calls{0}, errors{0};
  LatencyHistogram latency;
  const model::Matrix x = model::Matrix::Constant(1, input_dim, 0.25f);
  auto done = [&](absl::Time start, const absl::Status& status) {
    if (!measuring.load(std::memory_order_relaxed)) return;
    if (!status.ok()) {
      errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    latency.Record(absl::Now() - start);
    calls.fetch_add(1, std::memory_order_relaxed);
  };
  std::vector<std::thread> threads;
  for (int s = 0; s < sims; ++s) {
    threads.emplace_back([&] {
      std::unique_ptr<client::TrainerClient> client = OwnConnection(server.address());
      // SubmitDelta alone: against the newest version this simulator has seen.
      std::atomic<uint64_t> seen{0};
      auto submission = [&]() {
        return client::DeltaSubmission{x, std::nullopt, model::Matrix::Constant(1, 2, 0.01f),
                                       seen.load(std::memory_order_relaxed)};
      };
      auto submitted = [&](absl::Time start, const absl::StatusOr<client::SubmitDeltaResult>& r) {
        if (r.ok()) seen.store(r->version, std::memory_order_relaxed);
        done(start, r.status());
      };
      if (transport == Transport::kUnary) {
        while (work == Work::kSubmit && !stop.load()) {
          const absl::Time start = absl::Now();
          submitted(start, client->SubmitDelta(submission()));
        }
        while (!stop.load()) {
          const absl::Time start = absl::Now();
          absl::StatusOr<client::ForwardResult> y = client->Forward(x);
          absl::Status status = y.status();
          if (with_submit && y.ok()) {
            client::DeltaSubmission submission{x, std::nullopt,
                                               model::Matrix::Constant(1, 2, 0.01f), y->version};
            status = client->SubmitDelta(submission).status();
          }
          done(start, status);
        }
        return;
      }
      std::unique_ptr<client::Session> session = *client->OpenSession(static_cast<size_t>(depth));
      while (!stop.load()) {
        const absl::Time start = absl::Now();
        if (work == Work::kSubmit) {
          session->SubmitDelta(
              submission(),
              [&, start](absl::StatusOr<client::SubmitDeltaResult> r) { submitted(start, r); });
          continue;
        }
        if (!with_submit) {
          session->Forward(
              x, [&, start](absl::StatusOr<client::ForwardResult> y) { done(start, y.status()); });
          continue;
        }
        absl::StatusOr<client::ForwardResult> y = session->ForwardSync(x);
        absl::Status status = y.status();
        if (y.ok()) {
          client::DeltaSubmission submission{x, std::nullopt, model::Matrix::Constant(1, 2, 0.01f),
                                             y->version};
          status = session->SubmitDeltaSync(submission).status();
        }
        done(start, status);
      }
      session->Close().IgnoreError();
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  const double cpu_before = CpuSeconds(server.pid());
  const uint64_t switches_before = ContextSwitches(server.pid());
  const absl::Time start = absl::Now();
  measuring = true;
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  measuring = false;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = CpuSeconds(server.pid()) - cpu_before;
  const auto switches = static_cast<double>(ContextSwitches(server.pid()) - switches_before);
  stop = true;
  for (std::thread& t : threads) t.join();
  LoadResult result;
  const LatencyHistogram::Snapshot snapshot = latency.Take();
  result.calls_per_second = static_cast<double>(calls.load()) / seconds;
  result.p50_ms = snapshot.QuantileMs(0.5);
  result.p99_ms = snapshot.QuantileMs(0.99);
  result.server_cpu_us_per_call = calls.load() ? cpu * 1e6 / static_cast<double>(calls.load()) : 0;
  result.server_switches_per_call = calls.load() ? switches / static_cast<double>(calls.load()) : 0;
  result.errors = errors.load();
  return result;
}

std::string Row(const std::string& what, const LoadResult& r, double floor = 0) {
  return absl::StrFormat("| %s | %.0f | %.3f | %.3f | %.1f | %.2f | %s |%s\n", what,
                         r.calls_per_second, r.p50_ms, r.p99_ms, r.server_cpu_us_per_call,
                         r.server_switches_per_call,
                         floor > 0 ? absl::StrFormat("%.2fx", r.calls_per_second / floor) : "",
                         r.errors ? absl::StrCat(" errors: ", r.errors) : "");
}

// The echo floor and deltaserve with the small model's default config, both
// stopped at the end of the section.
struct EchoAndReal {
  EchoAndReal(const std::string& deltaserve, const std::string& echo_binary)
      : echo(Spawn(echo_binary, "")),
        real(Spawn(deltaserve,
                   WriteConfig(absl::StrFormat(kSmallModel, absl::GetFlag(FLAGS_model_extra))))) {}
  ~EchoAndReal() {
    bool clean = false;
    real->Stop(absl::Seconds(15), &clean);
    echo->Stop(absl::Seconds(15), &clean);
  }
  std::unique_ptr<ServerProcess> echo, real;
};

void ForwardSection(const std::string& deltaserve, const std::string& echo) {
  EchoAndReal servers(deltaserve, echo);
  ServerProcess* echo_server = servers.echo.get();
  ServerProcess* real = servers.real.get();
  std::printf("\n### 1. Forward (1 row), calls/s and latency\n\n");
  std::printf(
      "| configuration | calls/s | p50 ms | p99 ms | server CPU us/call | server ctx switches/call "
      "| / echo, same shape |\n|---|---:|---:|---:|---:|---:|---:|\n");
  std::vector<int> depths;
  for (absl::string_view piece : absl::StrSplit(absl::GetFlag(FLAGS_forward_depths), ',')) {
    int depth = -1;
    if (!absl::SimpleAtoi(piece, &depth) || depth < 0) {
      std::fprintf(stderr, "--forward_depths: expected counts >= 0, got \"%s\"\n",
                   std::string(piece).c_str());
      std::exit(2);
    }
    depths.push_back(depth);
  }
  for (absl::string_view count : absl::StrSplit(absl::GetFlag(FLAGS_forward_sims), ',')) {
    int sims = 0;
    if (!absl::SimpleAtoi(count, &sims) || sims < 1) {
      std::fprintf(stderr, "--forward_sims: expected counts >= 1, got \"%s\"\n",
                   std::string(count).c_str());
      std::exit(2);
    }
    for (int depth : depths) {
      if (depth == 0) {
        const LoadResult echo_unary =
            RunLoad(*echo_server, Transport::kUnary, sims, 1, Work::kForward);
        const LoadResult real_unary = RunLoad(*real, Transport::kUnary, sims, 1, Work::kForward);
        std::fputs(Row(absl::StrCat("echo unary, ", sims, " sims"), echo_unary).c_str(), stdout);
        std::fputs(Row(absl::StrCat("deltaserve unary, ", sims, " sims"), real_unary,
                       echo_unary.calls_per_second)
                       .c_str(),
                   stdout);
        continue;
      }
      const LoadResult echo_stream =
          RunLoad(*echo_server, Transport::kSession, sims, depth, Work::kForward);
      const LoadResult session = RunLoad(*real, Transport::kSession, sims, depth, Work::kForward);
      std::fputs(
          Row(absl::StrCat("echo stream, ", sims, " sims x ", depth, " in flight"), echo_stream)
              .c_str(),
          stdout);
      std::fputs(Row(absl::StrCat("deltaserve Session, ", sims, " sims x ", depth, " in flight"),
                     session, echo_stream.calls_per_second)
                     .c_str(),
                 stdout);
    }
    std::fflush(stdout);
  }
}

void SubmitSection(const std::string& deltaserve, const std::string& echo) {
  EchoAndReal servers(deltaserve, echo);
  ServerProcess* echo_server = servers.echo.get();
  ServerProcess* real = servers.real.get();
  std::printf("\n### 2. Forward + SubmitDelta per step (1 row), 8 simulators, steps/s\n\n");
  std::printf(
      "| configuration | steps/s | p50 ms | p99 ms | server CPU us/step | server ctx switches/step "
      "| / echo, same transport |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (Transport transport : {Transport::kUnary, Transport::kSession}) {
    const absl::string_view name = TransportName(transport);
    const LoadResult floor = RunLoad(*echo_server, transport, 8, 1, Work::kForwardThenSubmit);
    const LoadResult got = RunLoad(*real, transport, 8, 1, Work::kForwardThenSubmit);
    std::fputs(Row(absl::StrCat("echo ", name), floor).c_str(), stdout);
    std::fputs(Row(absl::StrCat("deltaserve ", name), got, floor.calls_per_second).c_str(), stdout);
  }
}

// False if a load got an error or no answer at all (the rows say which).
bool SubmitAloneSection(const std::string& deltaserve, const std::string& echo_binary) {
  bool answered = true;
  std::unique_ptr<ServerProcess> echo = Spawn(echo_binary, "");
  struct Floor {
    std::string name;
    std::unique_ptr<ServerProcess> server;
  };
  std::vector<Floor> floors;
  for (absl::string_view floor :
       absl::StrSplit(absl::GetFlag(FLAGS_floors), ',', absl::SkipEmpty())) {
    const std::pair<absl::string_view, absl::string_view> known[] = {
        {"handoff", "echo + hand-off"},
        {"session_cq", "echo (async Session)"},
        {"session_cq_only", "echo (async only)"}};
    const auto* found = std::find_if(std::begin(known), std::end(known),
                                     [&](const auto& k) { return k.first == floor; });
    if (found == std::end(known)) {
      std::fprintf(stderr,
                   "--floors: expected handoff, session_cq or session_cq_only, got \"%s\"\n",
                   std::string(floor).c_str());
      std::exit(2);
    }
    floors.push_back(
        {std::string(found->second), Spawn(echo_binary, "", {absl::StrCat("--", found->first)})});
  }
  std::unique_ptr<ServerProcess> real =
      Spawn(deltaserve,
            WriteConfig(absl::StrFormat(
                kSmallModel, absl::StrCat("max_staleness: 0 ", absl::GetFlag(FLAGS_model_extra)))));
  std::printf("\n### 5. SubmitDelta alone (1 row, one optimizer step each), calls/s\n\n");
  std::printf(
      "| configuration | calls/s | p50 ms | p99 ms | server CPU us/call | server ctx switches/call "
      "| / echo, same transport |\n|---|---:|---:|---:|---:|---:|---:|\n");
  std::vector<std::pair<Transport, int>> configurations;
  for (absl::string_view piece : absl::StrSplit(absl::GetFlag(FLAGS_submit_alone), ',')) {
    const std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(piece, ':');
    int depth = 0;
    if ((parts.first != "unary" && parts.first != "session") ||
        !absl::SimpleAtoi(parts.second, &depth) || depth < 1 ||
        (parts.first == "unary" && depth != 1)) {
      std::fprintf(stderr, "--submit_alone: expected unary:1 or session:N (N >= 1), got \"%s\"\n",
                   std::string(piece).c_str());
      std::exit(2);
    }
    configurations.emplace_back(parts.first == "unary" ? Transport::kUnary : Transport::kSession,
                                depth);
  }
  for (const auto& [transport, depth] : configurations) {
    const std::string name = absl::StrCat(TransportName(transport), ", 8 sims x ", depth);
    const LoadResult floor = RunLoad(*echo, transport, 8, depth, Work::kSubmit);
    // The variants differ in the Session only: a unary row would be the echo's.
    std::vector<LoadResult> variants;
    if (transport == Transport::kSession) {
      for (const Floor& floor : floors) {
        variants.push_back(RunLoad(*floor.server, transport, 8, depth, Work::kSubmit));
      }
    }
    const LoadResult got = RunLoad(*real, transport, 8, depth, Work::kSubmit);
    std::fputs(Row(absl::StrCat("echo ", name), floor).c_str(), stdout);
    for (const LoadResult* result : {&floor, &got}) {
      answered = answered && result->errors == 0 && result->calls_per_second > 0;
    }
    for (const LoadResult& result : variants) {
      answered = answered && result.errors == 0 && result.calls_per_second > 0;
    }
    const auto ratio = [&](const std::string& who, const LoadResult& result) {
      std::fputs(Row(absl::StrCat(who, " ", name), result, floor.calls_per_second).c_str(), stdout);
      if (floor.server_cpu_us_per_call > 0) {
        std::printf("| %s %s: server CPU/call / echo's | | | | %.2fx | | |\n", who.c_str(),
                    name.c_str(), result.server_cpu_us_per_call / floor.server_cpu_us_per_call);
      }
    };
    for (size_t k = 0; k < variants.size(); ++k) ratio(floors[k].name, variants[k]);
    ratio("deltaserve", got);
    std::fflush(stdout);
  }
  bool clean = false;
  real->Stop(absl::Seconds(15), &clean);
  for (Floor& floor : floors) floor.server->Stop(absl::Seconds(15), &clean);
  echo->Stop(absl::Seconds(15), &clean);
  if (!answered) std::fprintf(stderr, "section 5: a load got errors or no answers (rows above)\n");
  return answered;
}

void BatchingSection(const std::string& deltaserve) {
  struct Model {
    std::string name;
    int input_dim, hidden1, hidden2;  // hidden1 = 0: the small model.
  };
  const Model all[] = {{"small", 4, 0, 0}, {"large", 256, 1024, 1024}, {"huge", 1024, 4096, 2048}};
  const std::vector<std::string> wanted = absl::StrSplit(absl::GetFlag(FLAGS_batching_models), ',');
  std::printf("\n### 3. Server CPU per Forward row, 64 one-row simulators\n\n");
  std::printf(
      "| configuration | rows/s | p50 ms | p99 ms | server CPU us/row | server ctx switches/row | "
      "|\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Model& model : all) {
    if (std::find(wanted.begin(), wanted.end(), model.name) == wanted.end()) continue;
    for (Transport transport : {Transport::kUnary, Transport::kSession}) {
      const std::string name = absl::StrCat(model.name, " model, ", TransportName(transport));
      LoadResult results[2];
      for (int batched : {0, 1}) {
        const char* setting =
            batched ? "max_batch_rows: 256 min_batch_macs: 1" : "max_batch_rows: 1";
        const std::string config = WriteConfig(
            model.hidden1 == 0 ? absl::StrFormat(kSmallModel, setting)
                               : absl::StrFormat(kWideModel, model.input_dim, model.hidden1,
                                                 model.hidden2, setting));
        std::unique_ptr<ServerProcess> real = Spawn(deltaserve, config);
        results[batched] = RunLoad(*real, transport, 64, 1, Work::kForward, model.input_dim);
        bool clean = false;
        real->Stop(absl::Seconds(15), &clean);
      }
      std::fputs(Row(absl::StrCat(name, ", unbatched (max_batch_rows 1)"), results[0]).c_str(),
                 stdout);
      std::fputs(
          Row(absl::StrCat(name, ", batched (max_batch_rows 256, min_batch_macs 1)"), results[1])
              .c_str(),
          stdout);
      std::printf("| %s: CPU/row unbatched / batched | | | | %.2fx | | |\n", name.c_str(),
                  results[0].server_cpu_us_per_call / results[1].server_cpu_us_per_call);
      std::fflush(stdout);
    }
  }
}

// Sockets `pid` has open (listening ones and connections): what the kernel
// says, whatever the server counts.
int SocketsOpen(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* fds = opendir(dir.c_str());
  if (fds == nullptr) return -1;
  int sockets = 0;
  while (const dirent* entry = readdir(fds)) {
    char target[64];
    const std::string link = absl::StrCat(dir, "/", entry->d_name);
    const ssize_t n = readlink(link.c_str(), target, sizeof target);
    if (n > 0 && absl::string_view(target, static_cast<size_t>(n)).substr(0, 7) == "socket:") {
      ++sockets;
    }
  }
  closedir(fds);
  return sockets;
}

// utime and stime of this process (all its threads).
CpuTime OwnCpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  return {seconds(usage.ru_utime), seconds(usage.ru_stime)};
}

constexpr int kWatchers = 64;

// One server under the weight push: kWatchers watches, each on a connection
// of its own, and a driver that steps the model with one SubmitDelta. Every
// update must carry `parameters` values.
class PushRig {
 public:
  PushRig(std::string name, std::unique_ptr<ServerProcess> server, size_t parameters)
      : name_(std::move(name)),
        server_(std::move(server)),
        parameters_(parameters),
        seen_(kWatchers, 0) {
    for (int w = 0; w < kWatchers; ++w) {
      // Equal channel arguments share one connection; watchers stand for
      // separate replicas, so each gets a distinct (one byte larger) window.
      client::ClientOptions options;
      options.watch_window_bytes = absl::GetFlag(FLAGS_push_window_bytes) + w;
      absl::StatusOr<std::unique_ptr<client::TrainerClient>> c =
          client::TrainerClient::Connect(server_->address(), options);
      clients_.push_back(*std::move(c));
      watches_.push_back(*clients_.back()->Watch("", [this, w](client::Parameters p) {
        absl::MutexLock lock(&mu_);
        if (p.parameters.size() != parameters_) ++wrong_size_;
        if (seen_[w] < target_ && p.version >= target_ && ++holding_ == kWatchers) {
          completed_ = absl::Now();
        }
        seen_[w] = std::max(seen_[w], p.version);
      }));
    }
    driver_ = OwnConnection(server_->address());
  }
  ~PushRig() {
    watches_.clear();
    bool clean = false;
    server_->Stop(absl::Seconds(15), &clean);
  }

  const std::string& name() const { return name_; }
  const ServerProcess& server() const { return *server_; }

  // One SubmitDelta, then waits until every watcher holds its version; the
  // time from sending it and this process's CPU meanwhile are recorded if
  // `record`. False if a watch has ended (the section stops: a watch that
  // ended never comes back, and waiting 10 s at every later step would only
  // stretch the run).
  bool Step(bool record) {
    if (!version_) {  // First step, or after a failed one.
      absl::StatusOr<client::Parameters> now = driver_->GetParameters();
      if (!now.ok()) {
        std::fprintf(stderr, "push %s: GetParameters %s\n", name_.c_str(),
                     now.status().ToString().c_str());
        return true;
      }
      version_ = now->version;
    }
    {
      absl::MutexLock lock(&mu_);
      target_ = *version_ + 1;
      holding_ = 0;
      for (uint64_t v : seen_) holding_ += v >= target_ ? 1 : 0;
    }
    const CpuTime cpu_before = OwnCpu();
    const absl::Time start = absl::Now();
    client::DeltaSubmission submission{x_, std::nullopt, model::Matrix::Constant(1, 8, 0.01f),
                                       *version_};
    absl::StatusOr<client::SubmitDeltaResult> stepped = driver_->SubmitDelta(submission);
    if (!stepped.ok() || stepped->version != *version_ + 1) {
      std::fprintf(stderr, "push %s: submit %s\n", name_.c_str(),
                   stepped.status().ToString().c_str());
      version_.reset();
      return true;
    }
    version_ = stepped->version;
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(
                                  +[](int* h) { return *h == kWatchers; }, &holding_),
                              absl::Seconds(10))) {
      std::fprintf(stderr, "push %s: version %d held by %d of %d watchers after 10 s\n",
                   name_.c_str(), static_cast<int>(target_), holding_, kWatchers);
      return std::none_of(watches_.begin(), watches_.end(), [](const auto& watch) {
        return watch->WaitWithTimeout(absl::ZeroDuration()).has_value();
      });
    }
    if (!record) return true;
    bench_cpu_ += OwnCpu() - cpu_before;
    ++recorded_;
    latency_.Record(completed_ - start);
    worst_ms_ = std::max(worst_ms_, absl::ToDoubleMilliseconds(completed_ - start));
    return true;
  }

  // Says which watches ended early and why (and, if any did, the server's
  // open socket count), and how many updates had the wrong size; false if
  // any watch ended or any update had the wrong size.
  bool ReportEndedWatches() {
    {
      absl::MutexLock lock(&mu_);
      if (wrong_size_ > 0) {
        std::fprintf(stderr, "push %s: %d updates did not have %d parameters\n", name_.c_str(),
                     wrong_size_, static_cast<int>(parameters_));
        return false;
      }
    }
    int running = 0;
    for (int w = 0; w < kWatchers; ++w) {
      if (std::optional<absl::Status> ended = watches_[w]->WaitWithTimeout(absl::ZeroDuration())) {
        std::fprintf(stderr, "push %s: watcher %d ended: %s\n", name_.c_str(), w,
                     ended->ToString().c_str());
      } else {
        ++running;
      }
    }
    if (running == kWatchers) return true;
    std::fprintf(stderr,
                 "push %s: %d of %d watches still running; the server has %d sockets open\n",
                 name_.c_str(), running, kWatchers, SocketsOpen(server_->pid()));
    return false;
  }

  struct Result {
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
    CpuTime bench_cpu;  // Over the recorded steps.
    int steps = 0;
  };
  Result Take() {
    const LatencyHistogram::Snapshot snapshot = latency_.Take();
    return {snapshot.QuantileMs(0.5), snapshot.QuantileMs(0.99), worst_ms_, bench_cpu_, recorded_};
  }

 private:
  const std::string name_;
  std::unique_ptr<ServerProcess> server_;
  const size_t parameters_;
  absl::Mutex mu_;
  int wrong_size_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> seen_ ABSL_GUARDED_BY(mu_);  // Newest version each watcher holds.
  uint64_t target_ ABSL_GUARDED_BY(mu_) = 0;
  int holding_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time completed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<client::TrainerClient>> clients_;
  std::vector<std::unique_ptr<client::WatchHandle>> watches_;
  std::unique_ptr<client::TrainerClient> driver_;
  std::optional<uint64_t> version_;  // The server's, as of the last step; nullopt: ask.
  const model::Matrix x_ = model::Matrix::Constant(1, 128, 0.1f);
  LatencyHistogram latency_;
  double worst_ms_ = 0;
  CpuTime bench_cpu_;
  int recorded_ = 0;
};

// The echo floor (the same number of parameters, one encoding per step) and
// deltaserve, stepped alternately (which goes first alternates too), each
// with its own kWatchers watchers. False if a watch ended during the run.
bool PushSection(const std::string& deltaserve, const std::string& echo) {
  std::unique_ptr<ServerProcess> real_process = Spawn(deltaserve, WriteConfig(kPushModel));
  absl::StatusOr<v1::ModelInfo> info = OwnConnection(real_process->address())->GetModelInfo();
  if (!info.ok()) {
    std::fprintf(stderr, "push: GetModelInfo %s\n", info.status().ToString().c_str());
    return false;
  }
  absl::StatusOr<std::unique_ptr<ServerProcess>> echo_process =
      ServerProcess::Start(echo, "", "warning", absl::Seconds(30),
                           {absl::StrCat("--parameters=", info->parameter_count())});
  if (!echo_process.ok()) {
    std::fprintf(stderr, "cannot start %s: %s\n", echo.c_str(),
                 echo_process.status().ToString().c_str());
    return false;
  }
  const auto parameters = static_cast<size_t>(info->parameter_count());
  PushRig rigs[2] = {PushRig("echo", *std::move(echo_process), parameters),
                     PushRig("deltaserve", std::move(real_process), parameters)};
  constexpr int kWarmup = 5;
  const int steps = absl::GetFlag(FLAGS_push_steps);
  CpuTime server_cpu[2];
  bool lost_watcher = false;
  for (int step = 0; step < kWarmup + steps && !lost_watcher; ++step) {
    if (step == kWarmup) {
      for (int r : {0, 1}) server_cpu[r] = ProcessCpu(rigs[r].server().pid());
    }
    for (int i : {0, 1}) {
      PushRig& rig = rigs[(step + i) % 2];
      if (!rig.Step(/*record=*/step >= kWarmup)) lost_watcher = true;
      if (lost_watcher) break;
    }
  }
  for (int r : {0, 1}) server_cpu[r] = ProcessCpu(rigs[r].server().pid()) - server_cpu[r];
  for (PushRig& rig : rigs) lost_watcher = !rig.ReportEndedWatches() || lost_watcher;
  PushRig::Result results[2] = {rigs[0].Take(), rigs[1].Take()};
  std::printf("\n### 4. Weight push: %d parameters, %d watchers, %d steps per server\n\n",
              static_cast<int>(info->parameter_count()), kWatchers, steps);
  std::printf(
      "| from sending the stepping SubmitDelta to all watchers holding the version | p50 ms | "
      "p99 ms | max ms | server CPU ms/step (kernel share) | bench (watchers + driver) CPU "
      "ms/step (kernel share) | both / 2 cores, ms/step |\n|---|---:|---:|---:|---:|---:|---:|\n");
  // Milliseconds per step of `cpu`, and the kernel's share of it.
  auto per_step = [](const CpuTime& cpu, int steps) {
    const double ms = steps ? cpu.total() * 1e3 / static_cast<double>(steps) : 0;
    return std::make_pair(
        ms,
        absl::StrFormat("%.2f (%.0f%%)", ms, cpu.total() > 0 ? 100 * cpu.system / cpu.total() : 0));
  };
  double server_ms[2], bench_ms[2];
  for (int r : {0, 1}) {
    const PushRig::Result& got = results[r];
    const auto [server, server_text] = per_step(server_cpu[r], got.steps);
    const auto [bench, bench_text] = per_step(got.bench_cpu, got.steps);
    server_ms[r] = server;
    bench_ms[r] = bench;
    std::printf(
        "| %s | %.2f | %.2f | %.2f | %s | %s | %.2f |\n",
        r == 0 ? "echo floor (bare gRPC, one encoding per step)" : "deltaserve WatchParameters",
        got.p50_ms, got.p99_ms, got.max_ms, server_text.c_str(), bench_text.c_str(),
        (server + bench) / 2);
  }
  auto ratio = [](double a, double b) { return b > 0 ? absl::StrFormat("%.2fx", a / b) : ""; };
  std::printf("| deltaserve / echo | %s | %s | %s | %s | %s | |\n",
              ratio(results[1].p50_ms, results[0].p50_ms).c_str(),
              ratio(results[1].p99_ms, results[0].p99_ms).c_str(),
              ratio(results[1].max_ms, results[0].max_ms).c_str(),
              ratio(server_ms[1], server_ms[0]).c_str(), ratio(bench_ms[1], bench_ms[0]).c_str());
  std::fflush(stdout);
  return !lost_watcher;
}

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  deltaserve::base::DisableMutexDeadlockDetection();
  namespace b = ::deltaserve::bench;
  const std::string server = absl::GetFlag(FLAGS_server_binary);
  const std::string echo = absl::GetFlag(FLAGS_echo_binary);
  if (server.empty() || echo.empty()) {
    std::fprintf(stderr,
                 "usage: deltaserve_transport_bench --server_binary=BIN "
                 "--echo_binary=BIN [--seconds=S]\n");
    return 2;
  }
  const std::string sections = absl::GetFlag(FLAGS_sections);
  if (sections.find('1') != std::string::npos) b::ForwardSection(server, echo);
  if (sections.find('2') != std::string::npos) b::SubmitSection(server, echo);
  if (sections.find('3') != std::string::npos) b::BatchingSection(server);
  if (sections.find('4') != std::string::npos && !b::PushSection(server, echo)) return 1;
  if (sections.find('5') != std::string::npos && !b::SubmitAloneSection(server, echo)) return 1;
  return 0;
}
