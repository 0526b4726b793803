// deltaserve_load: a soak / load tool that drives a REAL deltaserve server
// process with simulator-like clients and watchers for a fixed time, and
// reports throughput, latency, status codes and the server's RSS over time.
//
//   deltaserve_load --server_binary=build/server/deltaserve
//                   --config=configs/cartpole.textproto [flags]
//   deltaserve_load --target=127.0.0.1:50051 [--server_pid=PID] [flags]
//
// TLS and tokens: --server_args passes --tls_cert_file/--auth_file/... to the
// server it starts; the clients take the shared --tls_ca_file/--token_file
// flags (client/security_flags.h). scripts/bench_tls.sh compares plaintext,
// TLS and TLS + token with them (docs/benchmarks.md).
//
// Every --report_every it prints one interval line; at the end a summary and
// one "DELTASERVE_LOAD_SUMMARY {json}" line (docs/reliability.md). Traffic
// goes only to loopback or unix sockets. Exit codes: 0 pass; 1 errors other
// than the expected ABORTED (and RESOURCE_EXHAUSTED with
// --allow_resource_exhausted), a bad response, or a server that died or did
// not stop cleanly on SIGTERM; 2 bad flags or the server could not be
// started/reached; 3 no errors, but the RSS after warm-up left the
// ±--rss_band_pct band.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/bench/load/report.h"
#include "deltaserve/bench/load/server_process.h"
#include "deltaserve/bench/load/workload.h"
#include "deltaserve/client/security_flags.h"
#include "deltaserve/client/trainer_client.h"

ABSL_FLAG(std::string, server_binary, "",
          "deltaserve binary to start on 127.0.0.1:0 (stopped with SIGTERM at the end)");
ABSL_FLAG(std::string, config, "", "with --server_binary: the server's --config file");
ABSL_FLAG(std::string, server_log_level, "warning", "with --server_binary: its --log_level");
ABSL_FLAG(std::string, server_args, "",
          "with --server_binary: more server flags, comma-separated (e.g. TLS and --auth_file)");
ABSL_FLAG(std::string, target, "",
          "instead of --server_binary: a running server (127.x, [::1], localhost or unix:)");
ABSL_FLAG(int, server_pid, 0, "with --target: the server's pid, for RSS (0: no RSS)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
ABSL_FLAG(int, clients, 16, "simulator threads, each with its own connection");
ABSL_FLAG(int, watchers, 4, "WatchParameters streams, each with its own connection");
ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "how long to load the server");
ABSL_FLAG(int, rows, 1, "rows per Forward");
ABSL_FLAG(int, submit_every, 4, "Forwards per SubmitDelta (a submission holds all their rows)");
ABSL_FLAG(absl::Duration, report_every, absl::Seconds(10), "interval of the progress lines");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(60), "RSS samples before this are warm-up");
ABSL_FLAG(absl::Duration, rss_every, absl::Seconds(1), "RSS sampling interval");
ABSL_FLAG(double, rss_band_pct, 5.0,
          "criterion: post-warm-up RSS within +/-this % of its mean (exit 3 if not); 0 = off");
ABSL_FLAG(std::string, rss_csv, "", "also write every RSS sample as seconds,kib to this file");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "deadline of every unary call");
ABSL_FLAG(bool, allow_resource_exhausted, false,
          "count RESOURCE_EXHAUSTED (learner queue full) as expected, like ABORTED");
ABSL_FLAG(uint64_t, seed, 1, "seed of the clients' random inputs");

namespace deltaserve::load {
namespace {

constexpr int kExitPass = 0, kExitErrors = 1, kExitSetup = 2, kExitRss = 3;
constexpr absl::Duration kTick = absl::Milliseconds(50);

std::atomic<bool> g_interrupted{false};
extern "C" void OnSignal(int) { g_interrupted.store(true); }

base::ProgramInfo Program() {
  return {"deltaserve_load",
          "usage: deltaserve_load (--server_binary=BIN [--config=FILE] | --target=ADDR "
          "[--server_pid=PID]) [flags]\n\n"
          "Drives Forward + SubmitDelta simulators and WatchParameters watchers against a real\n"
          "deltaserve process for --duration; prints calls/s, p50/p99 latency, status codes and\n"
          "the server's RSS every --report_every, then a summary and a DELTASERVE_LOAD_SUMMARY\n"
          "JSON line. Exit: 0 pass, 1 unexpected errors, 2 setup, 3 RSS outside the band.",
          {"bench/load/main.cc", client::kSecurityFlagsFile}};
}

// Empty if the flags make sense, else the reason.
std::string CheckFlags() {
  const bool spawn = !absl::GetFlag(FLAGS_server_binary).empty();
  if (spawn == !absl::GetFlag(FLAGS_target).empty()) {
    return "give exactly one of --server_binary and --target";
  }
  if (spawn && absl::GetFlag(FLAGS_server_pid) != 0) return "--server_pid goes with --target";
  if (absl::GetFlag(FLAGS_clients) < 1 || absl::GetFlag(FLAGS_clients) > 4096) {
    return "--clients: expected 1..4096";
  }
  if (absl::GetFlag(FLAGS_watchers) < 0 || absl::GetFlag(FLAGS_watchers) > 4096) {
    return "--watchers: expected 0..4096";
  }
  if (absl::GetFlag(FLAGS_rows) < 1 || absl::GetFlag(FLAGS_submit_every) < 1) {
    return "--rows and --submit_every: expected >= 1";
  }
  for (absl::Duration d : {absl::GetFlag(FLAGS_duration), absl::GetFlag(FLAGS_report_every),
                           absl::GetFlag(FLAGS_rss_every), absl::GetFlag(FLAGS_timeout)}) {
    if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return "--duration, --report_every, --rss_every, --timeout: expected finite and > 0";
    }
  }
  return "";
}

std::string LoadAverage() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  file >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

// Where the load goes, and the process to watch (null server: not ours).
struct Server {
  std::unique_ptr<ServerProcess> process;
  std::string target;
  pid_t pid = 0;
};

absl::StatusOr<Server> StartOrAttach() {
  Server server;
  if (!absl::GetFlag(FLAGS_server_binary).empty()) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> process = ServerProcess::Start(
        absl::GetFlag(FLAGS_server_binary), absl::GetFlag(FLAGS_config),
        absl::GetFlag(FLAGS_server_log_level), absl::Seconds(30),
        absl::StrSplit(absl::GetFlag(FLAGS_server_args), ',', absl::SkipEmpty()));
    if (!process.ok()) return process.status();
    server.process = *std::move(process);
    server.target = server.process->address();
    server.pid = server.process->pid();
  } else {
    server.target = absl::GetFlag(FLAGS_target);
    server.pid = absl::GetFlag(FLAGS_server_pid);
  }
  if (!IsLocalTarget(server.target)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target ", server.target, " is not loopback or a unix socket"));
  }
  return server;
}

// The model's shape, asked with retries for up to 10 s.
absl::StatusOr<deltaserve::v1::ModelInfo> AwaitModelInfo(const std::string& target) {
  client::ClientOptions options;
  options.timeout = absl::Seconds(2);
  options.security = client::SecurityOptionsFromFlags();
  absl::StatusOr<std::unique_ptr<client::TrainerClient>> trainer =
      client::TrainerClient::Connect(target, options);
  if (!trainer.ok()) return trainer.status();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (true) {
    absl::StatusOr<deltaserve::v1::ModelInfo> info =
        (*trainer)->GetModelInfo(absl::GetFlag(FLAGS_model));
    if (info.ok() || info.status().code() != absl::StatusCode::kUnavailable ||
        absl::Now() > give_up) {
      return info;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

WorkloadOptions MakeWorkload(const std::string& target, const deltaserve::v1::ModelInfo& info) {
  WorkloadOptions options;
  options.target = target;
  options.model = absl::GetFlag(FLAGS_model);
  options.input_dim = static_cast<int>(info.spec().input_dim());
  options.output_dim = static_cast<int>(info.output_dim());
  options.parameter_count = info.parameter_count();
  options.rows = absl::GetFlag(FLAGS_rows);
  options.submit_every = absl::GetFlag(FLAGS_submit_every);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  options.end = absl::Now() + absl::GetFlag(FLAGS_duration);
  options.request_id_prefix = absl::StrCat("load-", getpid(), "-", absl::ToUnixNanos(absl::Now()));
  options.seed = absl::GetFlag(FLAGS_seed);
  // Already loaded once, and its errors reported, by AwaitModelInfo's Connect;
  // were it to fail now, the calls would fail (UNAVAILABLE) and be counted.
  absl::StatusOr<client::ChannelSecurity> security =
      client::ChannelSecurity::Load(client::SecurityOptionsFromFlags());
  if (security.ok()) options.security = *std::move(security);
  return options;
}

// What the monitor loop saw.
struct Observed {
  std::vector<RssSample> rss;
  std::optional<std::string> server_died;  // how, if it exited during the load
  bool interrupted = false;
  double seconds = 0;
};

// Samples RSS, prints interval lines and watches the server until the run is
// done, the server dies or a signal arrives; then stops the run.
Observed Monitor(Server& server, RunControl& control, const LoadStats& stats,
                 const ExpectedCodes& expected) {
  Observed seen;
  const absl::Time start = absl::Now();
  const absl::Duration report_every = absl::GetFlag(FLAGS_report_every);
  absl::Time next_sample = start, next_report = start + report_every;
  Totals previous = TakeTotals(stats);
  int64_t rss_kib = -1;
  absl::Time previous_report = start;
  auto report = [&](absl::Time now) {
    const Totals now_totals = TakeTotals(stats);
    std::fputs(IntervalLine(absl::ToDoubleSeconds(now - start),
                            absl::ToDoubleSeconds(now - previous_report),
                            now_totals.Minus(previous), expected, rss_kib)
                   .c_str(),
               stdout);
    std::fflush(stdout);
    previous = now_totals;
    previous_report = now;
  };
  while (!control.Done()) {
    const absl::Time now = absl::Now();
    if (server.pid > 0 && now >= next_sample) {
      absl::StatusOr<int64_t> kib = ReadRssKib(server.pid);
      if (kib.ok()) seen.rss.push_back({absl::ToDoubleSeconds(now - start), rss_kib = *kib});
      if (kib.status().code() == absl::StatusCode::kNotFound && server.process == nullptr) {
        seen.server_died = absl::StrCat("pid ", server.pid, " gone");
        break;
      }
      next_sample += absl::GetFlag(FLAGS_rss_every);
    }
    if (now >= next_report) {
      report(now);
      next_report += report_every;
    }
    if (server.process != nullptr && (seen.server_died = server.process->Exited())) break;
    if ((seen.interrupted = g_interrupted.load())) break;
    absl::SleepFor(kTick);
  }
  control.Stop();
  const absl::Time end = absl::Now();
  seen.seconds = absl::ToDoubleSeconds(end - start);
  if (end - previous_report > absl::Seconds(1)) report(end);  // the partial last interval
  return seen;
}

// Stops the server we started, or describes the one we did not.
std::string FinishServer(Server& server, const Observed& seen, bool* ok) {
  if (seen.server_died.has_value()) {
    *ok = false;
    return absl::StrCat("DIED during the load: ", *seen.server_died);
  }
  if (server.process == nullptr) {
    *ok = true;
    return server.pid > 0 ? absl::StrCat("not started here (pid ", server.pid, "), left running")
                          : "not started here, left running";
  }
  const absl::Time start = absl::Now();
  const std::string how = server.process->Stop(absl::Seconds(15), ok);
  return absl::StrFormat("%s after SIGTERM in %.2f s%s", how,
                         absl::ToDoubleSeconds(absl::Now() - start), *ok ? " (clean)" : "");
}

void WriteRssCsv(const std::vector<RssSample>& samples) {
  const std::string path = absl::GetFlag(FLAGS_rss_csv);
  if (path.empty()) return;
  std::ofstream out(path);
  out << "seconds,rss_kib\n";
  for (const RssSample& s : samples) out << absl::StrFormat("%.1f,%d\n", s.seconds, s.kib);
}

// PASS, or FAIL with every reason; sets *exit_code.
std::string Verdict(const Totals& totals, const ExpectedCodes& expected, const RssSummary& rss,
                    bool server_ok, int* exit_code) {
  std::string reasons;
  const uint64_t errors = totals.UnexpectedErrors(expected);
  if (errors > 0) absl::StrAppend(&reasons, " ", errors, " unexpected errors;");
  if (!server_ok) absl::StrAppend(&reasons, " server did not stop cleanly;");
  *exit_code = reasons.empty() ? kExitPass : kExitErrors;
  if (rss.within_band.has_value() && !*rss.within_band) {
    absl::StrAppend(&reasons, " RSS after warm-up outside +/-", rss.criterion_pct, "%;");
    if (*exit_code == kExitPass) *exit_code = kExitRss;
  }
  return reasons.empty() ? "PASS" : absl::StrCat("FAIL:", reasons);
}

// Runs the load against `server` and prints everything; returns the exit code.
int Run(Server& server, const deltaserve::v1::ModelInfo& info) {
  const WorkloadOptions options = MakeWorkload(server.target, info);
  const ExpectedCodes expected{absl::GetFlag(FLAGS_allow_resource_exhausted)};
  const bool request_ids =
      deltaserve::v1::SubmitDeltaRequest::descriptor()->FindFieldByName("request_id") != nullptr;
  absl::PrintF(
      "# deltaserve_load: target %s (pid %d, %s), model \"%s\" (input %d, output %d, "
      "%d parameters), %d clients, %d watchers, rows %d, submit_every %d, "
      "duration %s; load average %s\n",
      server.target, server.pid, server.process ? "started here" : "given", info.spec().name(),
      options.input_dim, options.output_dim, options.parameter_count, absl::GetFlag(FLAGS_clients),
      absl::GetFlag(FLAGS_watchers), options.rows, options.submit_every,
      absl::FormatDuration(absl::GetFlag(FLAGS_duration)), LoadAverage());
  std::fflush(stdout);
  RunControl control(options.end);
  VersionClock clock;
  LoadStats stats;
  std::vector<std::thread> threads;
  for (int i = 0; i < absl::GetFlag(FLAGS_watchers); ++i) {
    threads.emplace_back(RunWatcher, std::cref(options), &control, &clock, &stats);
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_clients); ++i) {
    threads.emplace_back(RunSimulator, i, std::cref(options), &control, &clock, &stats);
  }
  const Observed seen = Monitor(server, control, stats, expected);
  for (std::thread& thread : threads) thread.join();
  const Totals totals = TakeTotals(stats);

  RunInfo run;
  run.target = server.target;
  run.model = info.spec().name();
  run.clients = absl::GetFlag(FLAGS_clients);
  run.watchers = absl::GetFlag(FLAGS_watchers);
  run.rows = options.rows;
  run.submit_every = options.submit_every;
  run.seconds = seen.seconds;
  run.request_ids = request_ids;
  run.interrupted = seen.interrupted;
  run.server = FinishServer(server, seen, &run.server_ok);
  const RssSummary rss = SummarizeRss(seen.rss, absl::ToDoubleSeconds(absl::GetFlag(FLAGS_warmup)),
                                      absl::GetFlag(FLAGS_rss_band_pct));
  WriteRssCsv(seen.rss);
  int exit_code = kExitPass;
  const std::string result = Verdict(totals, expected, rss, run.server_ok, &exit_code);
  std::fputs(SummaryText(run, totals, expected, rss, result).c_str(), stdout);
  absl::PrintF("# load average after: %s\n", LoadAverage());
  std::fputs(SummaryJson(run, totals, expected, rss, result).c_str(), stdout);
  return exit_code;
}

}  // namespace
}  // namespace deltaserve::load

int main(int argc, char** argv) {
  namespace load = ::deltaserve::load;
  if (std::optional<int> exit_code =
          deltaserve::base::CheckCommandLine(load::Program(), argc, argv)) {
    return *exit_code;
  }
  absl::ParseCommandLine(argc, argv);
  if (const std::string bad = load::CheckFlags(); !bad.empty()) {
    std::fprintf(stderr, "deltaserve_load: %s\n", bad.c_str());
    return load::kExitSetup;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, load::OnSignal);  // ends the load early; the summary still prints
  signal(SIGTERM, load::OnSignal);
  absl::StatusOr<load::Server> server = load::StartOrAttach();  // forks before any thread
  if (!server.ok()) {
    std::fprintf(stderr, "deltaserve_load: %s\n", server.status().ToString().c_str());
    return load::kExitSetup;
  }
  absl::StatusOr<deltaserve::v1::ModelInfo> info = load::AwaitModelInfo(server->target);
  if (!info.ok()) {
    std::fprintf(stderr, "deltaserve_load: GetModelInfo: %s\n", info.status().ToString().c_str());
    return load::kExitSetup;
  }
  return load::Run(*server, *info);
}
