// deltaserve_durability_bench: what --state_dir costs (docs/benchmarks.md).
//
//   1. SubmitDelta throughput and latency, `--clients` closed-loop clients
//      (one call in flight each) over loopback gRPC against an in-process
//      server, for each durability level side by side: no --state_dir,
//      NONE, INTERVAL (100 ms), COMMIT (the default) — on a CartPole-sized
//      model and a 100k-parameter one.
//   2. Checkpoints of 100k- and 10M-parameter Adam models: time until
//      durable, file size, and the learner's stall — the longest gap between
//      two consecutive submission answers while a checkpoint is taken, next
//      to the median gap (one step) — measured with a submitter running flat
//      out against an in-process Trainer, and the pause the learner itself
//      takes to capture the state (CheckpointInfo::learner_pause). On a busy
//      machine the gap also holds CPU the writer thread took from the
//      learner; the pause is what the design costs.
//
//   deltaserve_durability_bench [--duration=3s] [--clients=8] [--dir=/tmp]
//                               [--big_checkpoint=true]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "deltaserve/bench/load/latency_histogram.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/server.h"

ABSL_FLAG(absl::Duration, duration, absl::Seconds(2), "measuring time per configuration and round");
ABSL_FLAG(int, rounds, 3,
          "rounds over all configurations (interleaved, so that a burst of load elsewhere hits "
          "them alike); submits/s is the median round, latencies are over all rounds");
ABSL_FLAG(int, clients, 8, "concurrent SubmitDelta clients");
ABSL_FLAG(std::string, dir, "/tmp", "where the state directories go (removed afterwards)");
ABSL_FLAG(bool, big_checkpoint, true, "also checkpoint a 10M-parameter model (~170 MB)");

namespace deltaserve::bench {
namespace {

namespace v1 = ::deltaserve::v1;

struct Model {
  std::string label;
  int input_dim;
  std::vector<int> hidden;  // tanh layers
  int output_dim;
};

std::string ModelText(const Model& m) {
  std::string layers;
  for (int units : m.hidden) {
    absl::StrAppend(&layers, "layers { units: ", units, " activation: ACTIVATION_TANH } ");
  }
  return absl::StrCat("models { name: \"bench\" input_dim: ", m.input_dim, " ", layers,
                      "layers { units: ", m.output_dim,
                      " activation: ACTIVATION_IDENTITY } optimizer { kind: ADAM "
                      "learning_rate: 0.001 } }");
}

struct Level {
  std::string label;
  bool state_dir;
  std::string persistence;  // PersistenceConfig text.
};

model::Matrix Ones(int rows, int cols, float value) {
  return model::Matrix::Constant(rows, cols, value);
}

// One configuration's measurements over the rounds.
struct Measured {
  std::vector<double> per_second;  // One per round.
  load::LatencyHistogram::Snapshot latency;
  int64_t failed = 0;
};

void SubmitThroughput(const Model& m, const Level& level, const std::string& root, Measured* out) {
  auto config = server::ParseServerConfig(
      absl::StrCat(ModelText(m), " persistence { ", level.persistence, " }"));
  if (!config.ok()) {
    std::fprintf(stderr, "config: %s\n", std::string(config.status().message()).c_str());
    return;
  }
  const std::string dir = absl::StrCat(root, "/deltaserve-durability-bench");
  std::filesystem::remove_all(dir);
  server::ServerOptions options;
  if (level.state_dir) options.state_dir = dir;
  auto server = server::DeltaServer::Start(*config, options);
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", std::string(server.status().message()).c_str());
    return;
  }
  const int clients = absl::GetFlag(FLAGS_clients);
  load::LatencyHistogram latency;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> done{0}, failed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      client::ClientOptions o;
      o.submit_retries = 0;
      auto trainer = client::TrainerClient::Connect((*server)->address(), o);
      client::DeltaSubmission s;
      s.inputs = Ones(1, m.input_dim, 0.01f * static_cast<float>(c + 1));
      s.deltas = Ones(1, m.output_dim, 0.001f);
      while (!stop) {
        const absl::Time start = absl::Now();
        auto r = (*trainer)->SubmitDelta(s, "");
        latency.Record(absl::Now() - start);
        (r.ok() ? done : failed).fetch_add(1);
      }
    });
  }
  // Warm up, then measure.
  absl::SleepFor(absl::Milliseconds(300));
  const load::LatencyHistogram::Snapshot before = latency.Take();
  const int64_t done_before = done;
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::GetFlag(FLAGS_duration));
  const load::LatencyHistogram::Snapshot window = latency.Take().Minus(before);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t count = done - done_before;
  stop = true;
  for (std::thread& t : threads) t.join();
  (*server)->Shutdown();
  std::filesystem::remove_all(dir);
  out->per_second.push_back(static_cast<double>(count) / seconds);
  for (int i = 0; i < load::LatencyHistogram::kBuckets; ++i) {
    out->latency.counts[i] += window.counts[i];
  }
  out->latency.total += window.total;
  out->failed += failed;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void CheckpointCost(const Model& m, const std::string& root) {
  auto config = server::PrepareServerConfig(*server::ParseServerConfig(ModelText(m)));
  auto options = server::TrainerOptionsFromProto(config->models(0));
  const std::string dir = absl::StrCat(root, "/deltaserve-checkpoint-bench");
  std::filesystem::remove_all(dir);
  auto persistence = server::PersistenceOptionsFromProto(*config, config->models(0), dir);
  options->persistence = *persistence;
  options->persistence.checkpoint_every_steps = 1ull << 60;  // Only the ones asked for.
  options->persistence.checkpoint_every = absl::InfiniteDuration();
  auto trainer = server::Trainer::Create(*std::move(options));
  if (!trainer.ok()) {
    std::fprintf(stderr, "trainer: %s\n", std::string(trainer.status().message()).c_str());
    return;
  }
  server::Trainer& t = **trainer;
  // A submitter flat out: answer times, to find the learner's longest pause.
  absl::Mutex mu;
  std::vector<absl::Time> answers;
  std::atomic<bool> stop{false};
  std::thread submitter([&] {
    while (!stop) {
      server::Submission s;
      s.inputs = Ones(1, m.input_dim, 0.1f);
      s.deltas = Ones(1, m.output_dim, 0.001f);
      absl::Notification applied;
      if (!t.Submit(std::move(s), [&](absl::StatusOr<server::SubmitResult>) {
              applied.Notify();
            }).ok()) {
        return;
      }
      applied.WaitForNotification();
      absl::MutexLock lock(&mu);
      answers.push_back(absl::Now());
    }
  });
  absl::SleepFor(absl::Milliseconds(500));
  const int kCheckpoints = 3;
  double total_ms = 0, max_gap_ms = 0, max_pause_ms = 0;
  uint64_t bytes = 0;
  for (int i = 0; i < kCheckpoints; ++i) {
    absl::Notification written;
    const absl::Time start = absl::Now();
    absl::Time end;
    (void)t.Checkpoint([&](absl::StatusOr<server::CheckpointInfo> info) {
      if (info.ok()) {
        bytes = info->bytes;
        max_pause_ms = std::max(max_pause_ms, absl::ToDoubleMilliseconds(info->learner_pause));
      }
      end = absl::Now();
      written.Notify();
    });
    written.WaitForNotification();
    absl::SleepFor(absl::Milliseconds(200));  // Answers after it, to close the window.
    total_ms += absl::ToDoubleMilliseconds(end - start);
    absl::MutexLock lock(&mu);
    for (size_t a = 1; a < answers.size(); ++a) {
      if (answers[a] >= start && answers[a - 1] <= end) {
        max_gap_ms = std::max(max_gap_ms, absl::ToDoubleMilliseconds(answers[a] - answers[a - 1]));
      }
    }
  }
  stop = true;
  submitter.join();
  std::vector<double> gaps;
  {
    absl::MutexLock lock(&mu);
    for (size_t a = 1; a < answers.size(); ++a) {
      gaps.push_back(absl::ToDoubleMilliseconds(answers[a] - answers[a - 1]));
    }
  }
  std::sort(gaps.begin(), gaps.end());
  const double median_gap = gaps.empty() ? 0 : gaps[gaps.size() / 2];
  const size_t parameters = t.mlp().parameter_count();
  trainer->reset();
  std::filesystem::remove_all(dir);
  std::printf("| %s | %zu | %.1f | %.1f | %.3f | %.3f | %.3f |\n", m.label.c_str(), parameters,
              static_cast<double>(bytes) / 1e6, total_ms / kCheckpoints, max_pause_ms, median_gap,
              max_gap_ms);
  std::fflush(stdout);
}

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using deltaserve::bench::Level;
  using deltaserve::bench::Model;
  deltaserve::server::SetLogLevel(deltaserve::server::LogLevel::kWarning);
  const std::string root = absl::GetFlag(FLAGS_dir);
  const std::vector<Model> submit_models = {{"CartPole 4->64->2 (450 params)", 4, {64}, 2},
                                            {"100k params 64->256->256->64", 64, {256, 256}, 64}};
  const std::vector<Level> levels = {{"no --state_dir", false, ""},
                                     {"NONE", true, "durability: NONE"},
                                     {"INTERVAL 100 ms", true, "durability: INTERVAL"},
                                     {"COMMIT (default)", true, "durability: COMMIT"}};
  const int rounds = absl::GetFlag(FLAGS_rounds);
  std::printf(
      "SubmitDelta, %d closed-loop clients, %d interleaved rounds of %s per configuration\n\n",
      absl::GetFlag(FLAGS_clients), rounds,
      absl::FormatDuration(absl::GetFlag(FLAGS_duration)).c_str());
  std::vector<deltaserve::bench::Measured> measured(submit_models.size() * levels.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t m = 0; m < submit_models.size(); ++m) {
      for (size_t l = 0; l < levels.size(); ++l) {
        deltaserve::bench::SubmitThroughput(submit_models[m], levels[l], root,
                                            &measured[m * levels.size() + l]);
      }
    }
  }
  std::printf(
      "| model | durability | submits/s (median round) | vs no --state_dir | p50 ms | p99 ms | "
      "failed |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|\n");
  for (size_t m = 0; m < submit_models.size(); ++m) {
    const double base = deltaserve::bench::Median(measured[m * levels.size()].per_second);
    for (size_t l = 0; l < levels.size(); ++l) {
      const deltaserve::bench::Measured& r = measured[m * levels.size() + l];
      const double rate = deltaserve::bench::Median(r.per_second);
      std::printf("| %s | %s | %.0f | %.2fx | %.3f | %.3f | %lld |\n",
                  submit_models[m].label.c_str(), levels[l].label.c_str(), rate,
                  base > 0 ? rate / base : 0.0, r.latency.QuantileMs(0.5),
                  r.latency.QuantileMs(0.99), static_cast<long long>(r.failed));
    }
  }
  std::fflush(stdout);
  std::printf("\nCheckpoints (Adam; 3 each, with a submitter running flat out)\n\n");
  std::printf(
      "| model | parameters | file MB | to durable ms | learner pause ms (max) | "
      "median answer gap ms (one step) | longest answer gap during a checkpoint ms |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  deltaserve::bench::CheckpointCost({"100k", 64, {256, 256}, 64}, root);
  if (absl::GetFlag(FLAGS_big_checkpoint)) {
    deltaserve::bench::CheckpointCost({"10M", 512, {2048, 2048, 2048}, 512}, root);
  }
  return 0;
}
