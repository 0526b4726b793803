// deltaserve_learner_bench: does the Trainer's learner apply rows as fast as
// the math core it runs? (issue 12: "learner rows/s ≥ 0.8× the in-process
// math core at the same batch size"; docs/benchmarks.md "Learner".)
//
// For each model and each step size B, side by side in one run, in rounds
// (so a burst of load elsewhere hits every configuration alike):
//
//   core      one thread, no queue: what the learner computes per optimizer
//             step of B rows — Forward(B rows), Surrogate, Backward, then
//             Optimizer::Step — in a loop (model/ only).
//   1-row     a Trainer (server/core/, no gRPC, no persistence) with
//             samples_per_step = B, fed by --producers threads calling
//             Trainer::Submit with 1-row submissions; the learner batches the
//             B submissions of a step into one backprop (trainer_batch.cc).
//   B-row     the same Trainer fed with B-row submissions: one per step.
//   queued    1-row and B-row again, but the producers queue all the
//   ahead     submissions while the learner is held (LearnerGate), and the
//             learner is timed from its release until it has answered them
//             all: what the learner alone sustains, with no producer
//             competing for the 2 cores and no wait for one.
//
// Rows/s is rows applied (answered OK) per second of wall time, and per
// second of CPU time of the thread that applied them (the learner's own
// clock, read through pthread_getcpuclockid), which the machine's other load
// disturbs much less. The ratio that the goal speaks of is learner ÷ core.
//
// Producers keep up to max(--in_flight_steps steps, --min_in_flight_rows)
// rows submitted and not yet answered (credits returned by the learner's
// callbacks), so the learner is not starved by a closed loop; the callbacks
// only count (and wake a waiting producer once half the window is free).
// The submissions carry a unique request_id each (32 hex digits), as the
// clients send (--request_ids=false: none), and a version from the live
// snapshot; max_staleness is lifted (the queue holds several steps).
//
//   deltaserve_learner_bench [--batches=1,8,32,256] [--seconds=1] [--rounds=3]
//                            [--producers=3] [--models=cartpole,100k]
//                            [--cartpole_config=configs/cartpole.textproto]
//                            [--feeds=live,queued]
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/model/optimizer.h"
#include "deltaserve/model/surrogate.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/trainer.h"

ABSL_FLAG(std::string, batches, "1,8,32,256", "rows per optimizer step (B), comma-separated");
ABSL_FLAG(double, seconds, 1.0, "measuring time per configuration and round");
ABSL_FLAG(double, warmup_seconds, 0.2, "time before each measurement starts");
ABSL_FLAG(int, rounds, 3, "rounds over all configurations; each value is the median round");
ABSL_FLAG(int, producers, 3, "threads calling Trainer::Submit");
ABSL_FLAG(int, in_flight_steps, 4, "steps of rows submitted and not yet answered, at most");
ABSL_FLAG(int, min_in_flight_rows, 256, "rows submitted and not yet answered may be at least this");
ABSL_FLAG(double, queued_seconds, 0.3,
          "queued-ahead runs: queue about this many seconds of the core's work");
ABSL_FLAG(bool, request_ids, true,
          "give each submission a unique request_id, as the clients do (false: none, so the "
          "learner's deduplication window is never touched)");
ABSL_FLAG(std::string, models, "cartpole,100k", "which models to run (cartpole, 100k)");
ABSL_FLAG(std::string, feeds, "live,queued",
          "which learner feeds to run beside the core: live (producers), queued (queued ahead)");
ABSL_FLAG(std::string, cartpole_config, "configs/cartpole.textproto",
          "the CartPole ServerConfig (its first model is benchmarked)");

namespace deltaserve::bench {
namespace {

namespace v1 = ::deltaserve::v1;

constexpr int kPoolSize = 64;  // Distinct inputs, cycled.

struct Model {
  std::string label;
  server::TrainerOptions options;  // As the server would build them.
};

absl::StatusOr<Model> LoadModel(std::string label, absl::StatusOr<v1::ServerConfig> config) {
  if (!config.ok()) return config.status();
  absl::StatusOr<v1::ServerConfig> prepared = server::PrepareServerConfig(*std::move(config));
  if (!prepared.ok()) return prepared.status();
  absl::StatusOr<server::TrainerOptions> options =
      server::TrainerOptionsFromProto(prepared->models(0));
  if (!options.ok()) return options.status();
  options->max_staleness = 0;  // No limit: several steps are queued at once.
  return Model{std::move(label), *std::move(options)};
}

// The 100k-parameter model of the durability benchmark: 64→256→256→64 tanh.
absl::StatusOr<v1::ServerConfig> HundredKConfig() {
  return server::ParseServerConfig(
      "models { name: \"bench100k\" input_dim: 64 "
      "layers { units: 256 activation: ACTIVATION_TANH } "
      "layers { units: 256 activation: ACTIVATION_TANH } "
      "layers { units: 64 activation: ACTIVATION_IDENTITY } "
      "seed: 1 optimizer { kind: ADAM learning_rate: 0.001 } "
      "surrogate { mode: CURRENT delta_scale: 1 reduction: SUM } }");
}

// Fixed pseudo-random inputs and small deltas (parameters stay sane).
struct Pool {
  Pool(const model::Mlp& mlp, int rows) {
    std::srand(7);
    for (int i = 0; i < kPoolSize; ++i) {
      inputs.push_back(model::Matrix::Random(rows, mlp.input_dim()));
      deltas.push_back(model::Matrix::Random(rows, mlp.output_dim()) * 1e-3f);
    }
  }
  std::vector<model::Matrix> inputs, deltas;
};

double ThreadCpuSeconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Rate {
  double wall = 0;  // Rows per second of wall time.
  double cpu = 0;   // Rows per second of the applying thread's CPU time.
};

// (a) The math core alone, on this thread: B-row steps in a loop.
Rate CoreRate(const Model& m, int batch) {
  const server::TrainerOptions& o = m.options;
  model::Mlp mlp = *model::Mlp::Create(o.mlp);
  std::vector<float> params = mlp.InitialParameters();
  std::vector<float> grad(params.size(), 0.0f);
  std::unique_ptr<model::Optimizer> optimizer =
      *model::Optimizer::Create(o.optimizer, params.size());
  const Pool pool(mlp, batch);
  model::Mlp::Workspace ws;
  model::Matrix grad_y;
  const model::Matrix no_acted(0, mlp.output_dim());
  auto step = [&](int i) {
    const model::Matrix& x = pool.inputs[i % kPoolSize];
    std::fill(grad.begin(), grad.end(), 0.0f);
    bool ok = mlp.Forward(params, x, ws).ok();
    ok = ok && model::Surrogate(o.surrogate, model::Objective::kMinimize, ws.output(), no_acted,
                                pool.deltas[i % kPoolSize], &grad_y)
                   .ok();
    ok = ok && mlp.Backward(params, x, ws, grad_y, absl::MakeSpan(grad)).ok();
    ok = ok && optimizer->Step(absl::MakeSpan(params), absl::MakeSpan(grad)).ok();
    if (!ok) std::fprintf(stderr, "core step failed\n");
  };
  clockid_t self;
  pthread_getcpuclockid(pthread_self(), &self);
  int i = 0;
  const absl::Time warm_end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_warmup_seconds));
  while (absl::Now() < warm_end) step(i++);
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const double cpu_start = ThreadCpuSeconds(self);
  int64_t steps = 0;
  absl::Time now = start;
  for (; now < end; now = absl::Now(), ++steps) step(i++);
  const double rows = static_cast<double>(steps) * batch;
  return Rate{rows / absl::ToDoubleSeconds(now - start),
              rows / (ThreadCpuSeconds(self) - cpu_start)};
}

// A Trainer for `m` with one step per `batch` rows; null (reported) if it
// cannot start.
std::unique_ptr<server::Trainer> StartTrainer(const Model& m, int batch, size_t queue_capacity,
                                              std::shared_ptr<server::LearnerGate> gate) {
  server::TrainerOptions options = m.options;
  options.samples_per_step = static_cast<uint32_t>(batch);
  options.queue_capacity = queue_capacity;
  options.gate = std::move(gate);
  absl::StatusOr<std::unique_ptr<server::Trainer>> created =
      server::Trainer::Create(std::move(options));
  if (!created.ok()) {
    std::fprintf(stderr, "trainer: %s\n", std::string(created.status().message()).c_str());
    return nullptr;
  }
  return *std::move(created);
}

// Submission number `n` of producer `p`: pool entry i, and (--request_ids)
// an id of 32 hex digits, as client::NewRequestId makes them.
server::Submission MakeSubmission(const Pool& pool, int i, int p, int64_t n, bool request_ids) {
  server::Submission s;
  s.inputs = pool.inputs[i];
  s.deltas = pool.deltas[i];
  if (request_ids) s.request_id = absl::StrFormat("%016x%016x", p, n);
  return s;
}

// (b) The Trainer's learner, fed by producer threads with `rows`-row
// submissions; samples_per_step = batch.
Rate LearnerRate(const Model& m, int batch, int rows) {
  const int64_t in_flight_rows = std::max(int64_t{absl::GetFlag(FLAGS_in_flight_steps)} * batch,
                                          int64_t{absl::GetFlag(FLAGS_min_in_flight_rows)});
  const int64_t in_flight = std::max<int64_t>(1, in_flight_rows / rows);
  std::unique_ptr<server::Trainer> started =
      StartTrainer(m, batch, static_cast<size_t>(in_flight) + 1, /*gate=*/nullptr);
  if (!started) return {};
  server::Trainer& trainer = *started;
  const Pool pool(trainer.mlp(), rows);

  // Credits: submissions in flight, returned by the learner's callbacks. A
  // producer that finds none left waits until half the window is free, so
  // the learner wakes a producer once per half window, not per callback.
  absl::Mutex mu;
  absl::CondVar credit_returned;
  int64_t outstanding = 0;  // Guarded by mu.
  int waiting = 0;          // Producers waiting for credits; guarded by mu.
  bool stop = false;        // Guarded by mu.
  const int64_t refill_at = in_flight / 2;
  std::atomic<int64_t> applied_rows{0}, failed{0};
  std::atomic<bool> have_clock{false};
  clockid_t learner_clock{};

  auto done = [&](absl::StatusOr<server::SubmitResult> result) {
    if (!have_clock.load(std::memory_order_relaxed)) {  // The learner thread's clock, once.
      pthread_getcpuclockid(pthread_self(), &learner_clock);
      have_clock.store(true, std::memory_order_release);
    }
    if (result.ok()) {
      applied_rows.fetch_add(rows, std::memory_order_relaxed);
    } else {
      failed.fetch_add(1, std::memory_order_relaxed);
    }
    absl::MutexLock lock(&mu);
    if (--outstanding <= refill_at && waiting > 0) credit_returned.SignalAll();
  };

  const bool request_ids = absl::GetFlag(FLAGS_request_ids);
  std::vector<std::thread> producers;
  for (int p = 0; p < absl::GetFlag(FLAGS_producers); ++p) {
    producers.emplace_back([&, p] {
      for (int64_t n = 0;; ++n) {
        {
          absl::MutexLock lock(&mu);
          if (!stop && outstanding >= in_flight) {
            ++waiting;
            while (!stop && outstanding > refill_at) credit_returned.Wait(&mu);
            --waiting;
          }
          if (stop) return;
          ++outstanding;
        }
        server::Submission s =
            MakeSubmission(pool, static_cast<int>((n * 7 + p) % kPoolSize), p, n, request_ids);
        s.version = trainer.snapshot()->version;
        if (!trainer.Submit(std::move(s), done).ok()) {
          failed.fetch_add(1);
          absl::MutexLock lock(&mu);
          --outstanding;
        }
      }
    });
  }
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_warmup_seconds)));
  while (!have_clock.load(std::memory_order_acquire)) absl::SleepFor(absl::Milliseconds(1));
  const int64_t rows_start = applied_rows.load();
  const double cpu_start = ThreadCpuSeconds(learner_clock);
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  const int64_t rows_end = applied_rows.load();
  const double cpu_end = ThreadCpuSeconds(learner_clock);
  const absl::Time end = absl::Now();
  {
    absl::MutexLock lock(&mu);
    stop = true;
    credit_returned.SignalAll();
  }
  for (std::thread& t : producers) t.join();
  trainer.Stop();  // Queued ones get UNAVAILABLE: after the window, not counted.
  if (failed.load() > 0 && rows_end == rows_start) {
    std::fprintf(stderr, "learner: every submission failed\n");
  }
  const double applied = static_cast<double>(rows_end - rows_start);
  return Rate{applied / absl::ToDoubleSeconds(end - start), applied / (cpu_end - cpu_start)};
}

// Holds the learner before its first batch until Release(); notes the
// learner thread's CPU clock.
class HoldGate : public server::LearnerGate {
 public:
  void Pass() override {
    absl::MutexLock lock(&mu_);
    if (!have_clock_) {
      pthread_getcpuclockid(pthread_self(), &clock_);
      have_clock_ = true;
    }
    mu_.Await(absl::Condition(&released_));
  }
  void Abandon() override { Release(); }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  // Blocks until the learner is waiting in Pass(); its CPU clock.
  clockid_t LearnerClock() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&have_clock_));
    return clock_;
  }

 private:
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool have_clock_ ABSL_GUARDED_BY(mu_) = false;
  clockid_t clock_ ABSL_GUARDED_BY(mu_){};
};

// (c) The learner alone: the producers queue `count` submissions of `rows`
// rows while the learner is held (LearnerGate), then it is released and
// timed until it has answered them all. It never waits for a producer, and
// no producer competes with it for a core.
Rate QueuedRate(const Model& m, int batch, int rows, int64_t count) {
  auto gate = std::make_shared<HoldGate>();
  std::unique_ptr<server::Trainer> started =
      StartTrainer(m, batch, static_cast<size_t>(count) + 1, gate);
  if (!started) return {};
  server::Trainer& trainer = *started;
  const Pool pool(trainer.mlp(), rows);
  const clockid_t learner_clock = gate->LearnerClock();

  absl::Mutex mu;
  int64_t answered = 0;          // Guarded by mu.
  int64_t failed = 0;            // Guarded by mu.
  absl::Time end = absl::Now();  // Of the last answer; guarded by mu.
  double cpu_end = 0;            // Guarded by mu.
  auto done = [&](absl::StatusOr<server::SubmitResult> result) {
    absl::MutexLock lock(&mu);
    if (!result.ok()) ++failed;
    if (++answered == count) {
      end = absl::Now();
      cpu_end = ThreadCpuSeconds(learner_clock);
    }
  };
  const bool request_ids = absl::GetFlag(FLAGS_request_ids);
  const int producers = absl::GetFlag(FLAGS_producers);
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int64_t n = p; n < count; n += producers) {
        server::Submission s =
            MakeSubmission(pool, static_cast<int>((n * 7) % kPoolSize), p, n, request_ids);
        if (!trainer.Submit(std::move(s), done).ok()) {
          absl::MutexLock lock(&mu);
          ++failed;
          ++answered;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double cpu_start = ThreadCpuSeconds(learner_clock);
  const absl::Time start = absl::Now();
  gate->Release();
  auto all_answered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return answered >= count; };
  Rate rate;
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&all_answered));
    if (failed > 0) std::fprintf(stderr, "queued: %lld submissions failed\n", (long long)failed);
    const double applied = static_cast<double>((count - failed) * rows);
    rate = Rate{applied / absl::ToDoubleSeconds(end - start), applied / (cpu_end - cpu_start)};
  }
  trainer.Stop();  // Before the state its callbacks use goes away.
  return rate;
}

// Submissions for QueuedRate: about --queued_seconds of the core's work,
// within memory bounds (at most 200,000 submissions or ~256 MB of them).
int64_t QueuedCount(const Model& m, int rows, const Rate& core) {
  const double bytes = 4.0 * rows * (m.options.mlp.input_dim + m.options.mlp.layers.back().units);
  const double wanted = core.cpu * absl::GetFlag(FLAGS_queued_seconds) / rows;
  const double most = std::min(200000.0, 256e6 / (bytes + 256.0));
  return static_cast<int64_t>(std::max(16.0, std::min(wanted, most)));
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Series {
  std::vector<double> wall, cpu;
  void Add(const Rate& r) {
    wall.push_back(r.wall);
    cpu.push_back(r.cpu);
  }
};

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  deltaserve::base::DisableMutexDeadlockDetection();
  namespace b = deltaserve::bench;
  deltaserve::server::SetLogLevel(deltaserve::server::LogLevel::kWarning);
  std::vector<int> batches;
  for (absl::string_view piece : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int value = 0;
    if (!absl::SimpleAtoi(piece, &value) || value < 1) {
      std::fprintf(stderr, "--batches: expected positive integers, got \"%s\"\n",
                   std::string(piece).c_str());
      return 2;
    }
    batches.push_back(value);
  }
  std::vector<b::Model> models;
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_models), ',')) {
    absl::StatusOr<b::Model> loaded =
        name == "cartpole" ? b::LoadModel("CartPole", deltaserve::server::LoadServerConfig(
                                                          absl::GetFlag(FLAGS_cartpole_config)))
        : name == "100k"   ? b::LoadModel("100k", b::HundredKConfig())
                           : absl::InvalidArgumentError(absl::StrCat(
                                 "--models: expected cartpole or 100k, got \"", name, "\""));
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    models.push_back(*std::move(loaded));
  }
  // [model][batch][core, 1-row, B-row]
  constexpr int kKinds = 5;
  std::vector<b::Series> series(models.size() * batches.size() * kKinds);
  auto at = [&](size_t m, size_t bi, int kind) -> b::Series& {
    return series[(m * batches.size() + bi) * kKinds + static_cast<size_t>(kind)];
  };
  bool live = false, queued = false;
  for (absl::string_view feed : absl::StrSplit(absl::GetFlag(FLAGS_feeds), ',')) {
    if (feed == "live") {
      live = true;
    } else if (feed == "queued") {
      queued = true;
    } else {
      std::fprintf(stderr, "--feeds: expected live and/or queued, got \"%s\"\n",
                   std::string(feed).c_str());
      return 2;
    }
  }
  const int rounds = absl::GetFlag(FLAGS_rounds);
  for (int round = 0; round < rounds; ++round) {
    for (size_t m = 0; m < models.size(); ++m) {
      for (size_t bi = 0; bi < batches.size(); ++bi) {
        const int batch = batches[bi];
        const b::Rate core = b::CoreRate(models[m], batch);
        at(m, bi, 0).Add(core);
        if (live) at(m, bi, 1).Add(b::LearnerRate(models[m], batch, /*rows=*/1));
        if (live && batch > 1) {
          at(m, bi, 2).Add(b::LearnerRate(models[m], batch, /*rows=*/batch));
        }
        if (queued) {
          at(m, bi, 3).Add(b::QueuedRate(models[m], batch, /*rows=*/1,
                                         b::QueuedCount(models[m], /*rows=*/1, core)));
        }
        if (queued && batch > 1) {
          at(m, bi, 4).Add(b::QueuedRate(models[m], batch, /*rows=*/batch,
                                         b::QueuedCount(models[m], batch, core)));
        }
      }
    }
    std::fprintf(stderr, "round %d of %d done\n", round + 1, rounds);
  }
  std::printf(
      "Learner vs math core: %d rounds of %.1fs per configuration, %d producers, request_ids %s, "
      "median round\n\n",
      rounds, absl::GetFlag(FLAGS_seconds), absl::GetFlag(FLAGS_producers),
      absl::GetFlag(FLAGS_request_ids) ? "on" : "off");
  std::printf(
      "| model | params | B (rows/step) | fed with | rows/s wall | rows/s per CPU-s | "
      "/ core (wall) | / core (CPU) |\n");
  std::printf("|---|---:|---:|---|---:|---:|---:|---:|\n");
  const char* const kFed[kKinds] = {"core (no Trainer)", "1-row submissions", "B-row submissions",
                                    "1-row, queued ahead", "B-row, queued ahead"};
  for (size_t m = 0; m < models.size(); ++m) {
    const size_t params = deltaserve::model::Mlp::Create(models[m].options.mlp)->parameter_count();
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      const double core_wall = b::Median(at(m, bi, 0).wall);
      const double core_cpu = b::Median(at(m, bi, 0).cpu);
      for (int kind = 0; kind < kKinds; ++kind) {
        const b::Series& s = at(m, bi, kind);
        if (s.wall.empty()) continue;
        const double wall = b::Median(s.wall), cpu = b::Median(s.cpu);
        std::printf("| %s | %zu | %d | %s | %.0f | %.0f | %.2fx | %.2fx |\n",
                    models[m].label.c_str(), params, batches[bi], kFed[kind], wall, cpu,
                    core_wall > 0 ? wall / core_wall : 0.0, core_cpu > 0 ? cpu / core_cpu : 0.0);
      }
    }
  }
  return 0;
}
