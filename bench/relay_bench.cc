// deltaserve_relay_bench: what relays save the trainer (docs/benchmarks.md,
// "Relays"). Not a test: it prints numbers and asserts nothing about them.
//
//   deltaserve_relay_bench --server_binary=build/server/deltaserve
//       [--watchers=256] [--relays=4] [--versions=20] [--rounds=5] [--hidden=256]
//
// One trainer process (128 -> H -> H -> 8, H = --hidden, one row a step) and, per
// round, the same --watchers WatchParameters streams two ways, interleaved
// (the order alternates round by round):
//   direct  every watcher on the trainer;
//   relays  --relays relay processes (deltaserve --upstream=TRAINER), the
//           watchers spread evenly over them (64 each by default).
// Each measured version: one SubmitDelta to the trainer, then wait until every
// watcher holds the new version (so every version reaches every watcher, none
// skipped). Per version, over the round's --versions: the trainer's CPU
// (/proc/PID/stat utime + stime) and the bytes its TCP sockets sent (`ss -ti`
// bytes_sent, summed over its sockets; both modes' submit answers included
// alike).
// Printed per round and as medians over the rounds.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/bench/load/server_process.h"
#include "deltaserve/client/trainer_client.h"

ABSL_FLAG(std::string, server_binary, "", "the deltaserve binary (trainer and relays)");
ABSL_FLAG(int, watchers, 256, "WatchParameters streams");
ABSL_FLAG(int, relays, 4, "relay processes in the relayed mode");
ABSL_FLAG(int, versions, 20, "measured versions per round and mode");
ABSL_FLAG(int, rounds, 5, "rounds; each runs both modes, in alternating order");
ABSL_FLAG(int, hidden, 256, "units of the model's two hidden layers (256: 100,872 parameters)");

namespace deltaserve {
namespace {

using load::ServerProcess;

// 128 -> H -> H -> 8 (H = --hidden; 256: 100,872 parameters, ~400 kB a version).
constexpr char kModel[] = R"pb(
  models {
    name: "big"
    input_dim: 128
    seed: 1
    layers { units: %d activation: ACTIVATION_TANH }
    layers { units: %d activation: ACTIVATION_TANH }
    layers { units: 8 activation: ACTIVATION_IDENTITY }
    optimizer { kind: SGD learning_rate: 0.0001 }
    samples_per_step: 1
    max_staleness: 0
  }
  max_watchers_per_model: 0)pb";

base::ProgramInfo Program() {
  return {"deltaserve_relay_bench",
          "usage: deltaserve_relay_bench --server_binary=PATH [--watchers=256] [--relays=4]\n"
          "       [--versions=20] [--rounds=5] [--hidden=256]\n\n"
          "Trainer CPU and bytes sent per version with the watchers on the trainer vs\n"
          "spread over relays (docs/benchmarks.md).",
          {"bench/relay_bench.cc"}};
}

double CpuSeconds(pid_t pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Bytes the TCP sockets of `pid` have sent (`ss -tinpH`: bytes_sent of each
// socket it holds, summed). Sockets do not close during a measurement.
double BytesSent(pid_t pid) {
  FILE* ss = popen("ss -tinpH 2>/dev/null", "r");
  if (ss == nullptr) {
    std::fprintf(stderr, "cannot run ss (iproute2)\n");
    std::exit(1);
  }
  const std::string owner = absl::StrCat("pid=", pid, ",");
  double total = 0;
  bool ours = false;
  char buffer[4096];
  std::string line;
  while (fgets(buffer, sizeof buffer, ss) != nullptr) {
    line += buffer;
    if (line.empty() || line.back() != '\n') continue;  // A long line: read on.
    if (line[0] != '\t' && line[0] != ' ') {
      ours = line.find(owner) != std::string::npos;  // A socket's first line.
    } else if (ours) {
      const size_t at = line.find("bytes_sent:");
      double value = 0;
      if (at != std::string::npos &&
          absl::SimpleAtod(line.substr(at + 11, line.find(' ', at) - at - 11), &value)) {
        total += value;
      }
    }
    line.clear();
  }
  pclose(ss);
  return total;
}

// The versions each watcher holds.
class Watchers {
 public:
  explicit Watchers(size_t n) : versions_(n, 0) {}
  void Set(size_t i, uint64_t version) {
    absl::MutexLock lock(&mu_);
    versions_[i] = version;
  }
  bool AwaitAll(uint64_t version) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::all_of(versions_.begin(), versions_.end(),
                         [version](uint64_t v) { return v >= version; });
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(120));
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> versions_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<client::TrainerClient> Connect(const std::string& address) {
  client::ClientOptions options;
  options.timeout = absl::Seconds(60);
  auto client = client::TrainerClient::Connect(address, options);
  if (!client.ok()) {
    std::fprintf(stderr, "connect %s: %s\n", address.c_str(), client.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(client);
}

struct Sample {
  double cpu_ms = 0;  // Trainer CPU per version.
  double kib = 0;     // Trainer bytes sent per version, KiB.
};

// One mode of one round: watchers on `targets` (round-robin), --versions
// versions submitted to the trainer.
Sample Measure(const ServerProcess& trainer, client::TrainerClient& submitter,
               const std::vector<std::string>& targets) {
  const int n = absl::GetFlag(FLAGS_watchers);
  Watchers held(static_cast<size_t>(n));
  std::vector<std::unique_ptr<client::TrainerClient>> clients;
  for (const std::string& target : targets) clients.push_back(Connect(target));
  std::vector<std::unique_ptr<client::WatchHandle>> watches;
  for (int i = 0; i < n; ++i) {
    auto watch = clients[static_cast<size_t>(i) % clients.size()]->Watch(
        "", [&held, i](client::Parameters p) { held.Set(static_cast<size_t>(i), p.version); });
    if (!watch.ok()) std::exit(1);
    watches.push_back(*std::move(watch));
  }
  const uint64_t start = submitter.GetModelInfo()->version();
  if (!held.AwaitAll(start)) {
    std::fprintf(stderr, "the watchers did not all get version %lu\n",
                 static_cast<unsigned long>(start));
    std::exit(1);
  }
  client::DeltaSubmission submission;
  submission.inputs = model::Matrix::Constant(1, 128, 0.25f);
  submission.deltas = model::Matrix::Constant(1, 8, 0.01f);
  const double cpu0 = CpuSeconds(trainer.pid());
  const double bytes0 = BytesSent(trainer.pid());
  const int versions = absl::GetFlag(FLAGS_versions);
  for (int v = 1; v <= versions; ++v) {
    submission.version = start + static_cast<uint64_t>(v) - 1;
    auto done = submitter.SubmitDelta(submission);
    if (!done.ok() || !held.AwaitAll(start + static_cast<uint64_t>(v))) {
      std::fprintf(stderr, "version %d: %s\n", v, done.status().ToString().c_str());
      std::exit(1);
    }
  }
  Sample sample;
  sample.cpu_ms = (CpuSeconds(trainer.pid()) - cpu0) * 1e3 / versions;
  sample.kib = (BytesSent(trainer.pid()) - bytes0) / 1024.0 / versions;
  for (auto& watch : watches) watch->Cancel();
  for (auto& watch : watches) (void)watch->Wait();
  return sample;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

std::string WriteConfig() {
  char path[] = "/tmp/deltaserve_relay_bench_XXXXXX";
  const int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  const int hidden = absl::GetFlag(FLAGS_hidden);
  std::ofstream(path) << absl::StrFormat(kModel, hidden, hidden);
  return path;
}

int Run() {
  const std::string binary = absl::GetFlag(FLAGS_server_binary);
  const std::string config = WriteConfig();
  auto trainer = ServerProcess::Start(binary, config, "warning", absl::Seconds(30));
  std::remove(config.c_str());
  if (!trainer.ok()) {
    std::fprintf(stderr, "trainer: %s\n", trainer.status().ToString().c_str());
    return 1;
  }
  auto submitter = Connect((*trainer)->address());
  std::vector<double> direct_cpu, direct_kib, relay_cpu, relay_kib;
  const int relays = absl::GetFlag(FLAGS_relays);
  std::printf("watchers %d, relays %d, versions per round %d, hidden %d\n",
              absl::GetFlag(FLAGS_watchers), relays, absl::GetFlag(FLAGS_versions),
              absl::GetFlag(FLAGS_hidden));
  std::fflush(stdout);
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (int k = 0; k < 2; ++k) {
      const bool relayed = (round + k) % 2 == 1;
      std::vector<std::unique_ptr<ServerProcess>> running;
      std::vector<std::string> targets;
      if (relayed) {
        for (int r = 0; r < relays; ++r) {
          auto relay = ServerProcess::Start(binary, "", "warning", absl::Seconds(30),
                                            {"--upstream=" + (*trainer)->address()});
          if (!relay.ok()) {
            std::fprintf(stderr, "relay: %s\n", relay.status().ToString().c_str());
            return 1;
          }
          targets.push_back((*relay)->address());
          running.push_back(*std::move(relay));
        }
      } else {
        targets.push_back((*trainer)->address());
      }
      const Sample sample = Measure(**trainer, *submitter, targets);
      (relayed ? relay_cpu : direct_cpu).push_back(sample.cpu_ms);
      (relayed ? relay_kib : direct_kib).push_back(sample.kib);
      std::printf("round %d %-7s trainer CPU %8.2f ms/version, sent %9.1f KiB/version\n", round,
                  relayed ? "relays" : "direct", sample.cpu_ms, sample.kib);
      std::fflush(stdout);
      for (auto& relay : running) {
        bool clean = false;
        relay->Stop(absl::Seconds(10), &clean);
      }
    }
  }
  std::printf("median  direct  trainer CPU %8.2f ms/version, sent %9.1f KiB/version\n",
              Median(direct_cpu), Median(direct_kib));
  std::printf("median  relays  trainer CPU %8.2f ms/version, sent %9.1f KiB/version\n",
              Median(relay_cpu), Median(relay_kib));
  bool clean = false;
  (*trainer)->Stop(absl::Seconds(10), &clean);
  return 0;
}

}  // namespace
}  // namespace deltaserve

int main(int argc, char** argv) {
  if (std::optional<int> exit_code =
          deltaserve::base::CheckCommandLine(deltaserve::Program(), argc, argv)) {
    return *exit_code;
  }
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_server_binary).empty() || absl::GetFlag(FLAGS_watchers) < 1 ||
      absl::GetFlag(FLAGS_relays) < 1 || absl::GetFlag(FLAGS_versions) < 1 ||
      absl::GetFlag(FLAGS_rounds) < 1 || absl::GetFlag(FLAGS_hidden) < 1) {
    std::fprintf(stderr,
                 "expected --server_binary and --watchers, --relays, --versions, --rounds >= 1\n");
    return 2;
  }
  return deltaserve::Run();
}
