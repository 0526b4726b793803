// deltaserve_series_bench: what the learner's per-step series
// (TrainerOptions::history: loss, norms, noise scale, ..., docs/operations.md
// "Metrics history") cost per optimizer step of a small model, where a
// step's fixed costs weigh most (docs/benchmarks.md "Per-step series").
//
// BM_LearnerStep/<model>/<series>: a Trainer (server/core, no gRPC, no
// persistence) with samples_per_step 1 is held by a LearnerGate while
// --steps_per_batch 1-row submissions (each with a request_id, as clients
// send them) are queued, then released for one batch: the reported time is
// the learner thread's CPU time per batch (ns_per_step: per step; its own clock, read through
// pthread_getcpuclockid; manual time), so the producer and the machine's
// other load disturb it little. <series> 0: no History (the series are off);
// 1: a History records the series every step. Models: 0 the transport
// benchmark's 4-16-2 tanh SGD model (114 parameters), 1 CartPole's 4-32-2
// tanh Adam (226 parameters).
//
//   build/bench/deltaserve_series_bench --benchmark_repetitions=15
//       --benchmark_enable_random_interleaving=true
//       --benchmark_report_aggregates_only=true
//
// (random interleaving runs the repetitions of every configuration mixed,
// so a burst of load elsewhere hits both alike; compare the medians.)
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/trainer.h"

namespace deltaserve::bench {
namespace {

constexpr int kStepsPerBatch = 512;
constexpr int kPoolSize = 64;

server::TrainerOptions Options(int model) {
  server::TrainerOptions o;
  o.name = "m";
  o.mlp.input_dim = 4;
  o.mlp.seed = 1;
  o.mlp.layers = {{model == 0 ? 16 : 32, model::Activation::kTanh},
                  {2, model::Activation::kIdentity}};
  o.optimizer.kind =
      model == 0 ? model::OptimizerConfig::Kind::kSgd : model::OptimizerConfig::Kind::kAdam;
  o.optimizer.learning_rate = model == 0 ? 0.001f : 0.01f;
  o.samples_per_step = 1;
  o.queue_capacity = kStepsPerBatch + 1;
  return o;
}

double ThreadCpuSeconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Lets the learner take one batch per Open(); notes its CPU clock and the
// clock's reading when it passes.
class BatchGate : public server::LearnerGate {
 public:
  void Pass() override {
    absl::MutexLock lock(&mu_);
    if (!have_clock_) {
      pthread_getcpuclockid(pthread_self(), &clock_);
      have_clock_ = true;
    }
    mu_.Await(absl::Condition(
        +[](BatchGate* g)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mu_) { return g->permits_ > 0 || g->abandoned_; },
        this));
    if (permits_ > 0) --permits_;
    passed_cpu_ = ThreadCpuSeconds(clock_);
  }
  void Abandon() override {
    absl::MutexLock lock(&mu_);
    abandoned_ = true;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    ++permits_;
  }
  clockid_t LearnerClock() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&have_clock_));
    return clock_;
  }
  double passed_cpu() {
    absl::MutexLock lock(&mu_);
    return passed_cpu_;
  }

 private:
  absl::Mutex mu_;
  int permits_ ABSL_GUARDED_BY(mu_) = 0;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  bool have_clock_ ABSL_GUARDED_BY(mu_) = false;
  clockid_t clock_ ABSL_GUARDED_BY(mu_){};
  double passed_cpu_ ABSL_GUARDED_BY(mu_) = 0;
};

void BM_LearnerStep(benchmark::State& state) {
  const int model = static_cast<int>(state.range(0));
  const bool series = state.range(1) != 0;
  server::History history;
  server::TrainerOptions options = Options(model);
  auto gate = std::make_shared<BatchGate>();
  options.gate = gate;
  if (series) options.history = &history;
  absl::StatusOr<std::unique_ptr<server::Trainer>> created =
      server::Trainer::Create(std::move(options));
  if (!created.ok()) {
    state.SkipWithError(std::string(created.status().message()).c_str());
    return;
  }
  server::Trainer& trainer = **created;
  const clockid_t learner_clock = gate->LearnerClock();
  std::srand(7);
  std::vector<model::Matrix> inputs, deltas;
  for (int i = 0; i < kPoolSize; ++i) {
    inputs.push_back(model::Matrix::Random(1, 4));
    deltas.push_back(model::Matrix::Random(1, 2) * 1e-3f);
  }
  absl::Mutex mu;
  int answered = 0;  // Guarded by mu.
  int failed = 0;    // Guarded by mu.
  double cpu_end = 0;
  auto done = [&](absl::StatusOr<server::SubmitResult> result) {
    absl::MutexLock lock(&mu);
    if (!result.ok()) ++failed;
    if (++answered == kStepsPerBatch) cpu_end = ThreadCpuSeconds(learner_clock);
  };
  int64_t n = 0;
  double total_cpu = 0;  // Seconds.
  for (auto _ : state) {
    {
      absl::MutexLock lock(&mu);
      answered = 0;
    }
    const uint64_t version = trainer.snapshot()->version;
    for (int i = 0; i < kStepsPerBatch; ++i, ++n) {
      server::Submission s;
      s.inputs = inputs[n % kPoolSize];
      s.deltas = deltas[n % kPoolSize];
      s.version = version;
      s.request_id = absl::StrFormat("%032x", n);
      if (!trainer.Submit(std::move(s), done).ok()) {
        state.SkipWithError("Submit refused");
        return;
      }
    }
    gate->Open();
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* a) { return *a >= kStepsPerBatch; }, &answered));
    if (failed > 0) {
      state.SkipWithError("a submission failed");
      break;
    }
    const double cpu = cpu_end - gate->passed_cpu();
    state.SetIterationTime(cpu);
    total_cpu += cpu;
  }
  gate->Open();
  trainer.Stop();
  // The learner's CPU time per step, averaged over the run's batches.
  state.counters["ns_per_step"] =
      benchmark::Counter(total_cpu * 1e9 / kStepsPerBatch, benchmark::Counter::kAvgIterations);
  state.counters["series"] = static_cast<double>(history.Series("m").size());
}
BENCHMARK(BM_LearnerStep)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"model", "series"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(0.5);

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) {
  deltaserve::base::DisableMutexDeadlockDetection();  // As the server's main does.
  deltaserve::server::SetLogLevel(deltaserve::server::LogLevel::kWarning);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
