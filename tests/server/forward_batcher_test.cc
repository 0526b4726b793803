// ForwardBatcher: several callers' rows in one product, each caller getting
// exactly its rows, bit-identical to an unbatched Forward, all from one
// version; bad requests refused alone; Stop fails what waits. Long
// InputGradient requests run on the batcher's gradient threads, in parallel.
//
// Batches are made deterministic without timing: with a long max_queue_delay
// the batcher holds the oldest request until max_batch_rows rows wait, so
// enqueueing exactly max_batch_rows rows forms exactly one batch.
#include "deltaserve/server/core/forward_batcher.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/base/cpus.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "deltaserve/tests/support/one_cpu.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using ::testing::HasSubstr;
using testing::Sample;

constexpr absl::Duration kWait = absl::Seconds(30);
constexpr absl::Duration kHoldForFullBatch = absl::Seconds(60);

// input 3 → 16 tanh → 2 identity, SGD: one δ per step.
TrainerOptions SmallOptions() {
  return testing::TrainerOptionsBuilder("b", /*input_dim=*/3)
      .Layers({{16, model::Activation::kTanh}, {2, model::Activation::kIdentity}})
      .Seed(5)
      .Sgd(0.05f)
      .Build();
}

// SmallOptions with another network: `input_dim` → `layers`.
TrainerOptions Network(int input_dim, std::vector<model::LayerSpec> layers) {
  TrainerOptions options = SmallOptions();
  options.mlp.input_dim = input_dim;
  options.mlp.layers = std::move(layers);
  return options;
}

std::unique_ptr<Trainer> MakeTrainer(TrainerOptions options = SmallOptions(),
                                     Trainer::PublishCallback on_publish = nullptr) {
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(std::move(options), std::move(on_publish));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return *std::move(trainer);
}

// min_batch_macs 0: every request goes to the batcher, however cheap, so that
// these small models' requests are batched.
std::unique_ptr<ForwardBatcher> MakeBatcher(const Trainer* trainer, uint32_t max_batch_rows,
                                            absl::Duration delay, ModelMetrics* metrics = nullptr,
                                            uint64_t min_batch_macs = 0,
                                            uint32_t gradient_threads = 0) {
  absl::StatusOr<std::unique_ptr<ForwardBatcher>> batcher = ForwardBatcher::Create(
      trainer, {max_batch_rows, delay, min_batch_macs, gradient_threads}, metrics);
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  return *std::move(batcher);
}

// One caller's request and, once answered, its result.
struct Call {
  model::Matrix inputs;
  absl::StatusOr<ForwardResult> result = absl::UnknownError("not answered");
  absl::Notification done;
};

absl::Status Enqueue(ForwardBatcher& batcher, Call& call) {
  return batcher.Enqueue(call.inputs, [&call](absl::StatusOr<ForwardResult> result) {
    call.result = std::move(result);
    call.done.Notify();
  });
}

model::Matrix Inputs(int rows, float seed, int cols = 3) {
  model::Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = std::sin(seed + 0.37f * i);
  return m;
}

// One InputGradient caller: its request, its answer and the thread that gave it.
struct GradientCall {
  GradientCall(int rows, float seed) : inputs(Inputs(rows, seed)), deltas(Inputs(rows, -seed, 2)) {}
  model::Matrix inputs;
  model::Matrix deltas;
  absl::StatusOr<InputGradientResult> result = absl::UnknownError("not answered");
  std::thread::id answered_on;
  absl::Notification done;
};

absl::Status EnqueueGradient(ForwardBatcher& batcher, GradientCall& call) {
  return batcher.EnqueueInputGradient(call.inputs, call.deltas,
                                      [&call](absl::StatusOr<InputGradientResult> result) {
                                        call.result = std::move(result);
                                        call.answered_on = std::this_thread::get_id();
                                        call.done.Notify();
                                      });
}

// The answer has the bits of Trainer::InputGradient at the same version.
void ExpectSameAsTrainer(const Trainer& trainer, const GradientCall& call) {
  ASSERT_TRUE(call.result.ok()) << call.result.status();
  absl::StatusOr<InputGradientResult> alone = trainer.InputGradient(call.inputs, call.deltas);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(call.result->input_gradient, alone->input_gradient);
  EXPECT_EQ(call.result->outputs, alone->outputs);
  EXPECT_EQ(call.result->version, alone->version);
}

// 1 + 2 + ... + 8 = 36 rows from 8 callers, held until they form one batch;
// each caller gets the bits its request gets alone.
void ExpectOneBatchGivesEachCallerItsOwnBits(TrainerOptions options) {
  const int input_dim = options.mlp.input_dim;
  auto trainer = MakeTrainer(std::move(options));
  auto metrics = ServerMetrics::Create({});
  ASSERT_TRUE(metrics.ok());
  ModelMetrics* m = (*metrics)->ForModel("b");
  // The batch forms when the last one arrives.
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/36, kHoldForFullBatch, m);
  std::vector<std::unique_ptr<Call>> calls;
  for (int rows = 1; rows <= 8; ++rows) {
    calls.push_back(std::make_unique<Call>());
    calls.back()->inputs = Inputs(rows, static_cast<float>(rows), input_dim);
    ASSERT_TRUE(Enqueue(*batcher, *calls.back()).ok());
  }
  for (auto& call : calls) {
    ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(kWait));
    ASSERT_TRUE(call->result.ok()) << call->result.status();
    absl::StatusOr<ForwardResult> alone = trainer->Forward(call->inputs);
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ(call->result->outputs, alone->outputs) << call->inputs.rows() << " rows";
    EXPECT_EQ(call->result->version, alone->version);
  }
  // One product of all 36 rows, not eight.
  const std::string text = (*metrics)->Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_forward_batch_rows_count", {{"model", "b"}}), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_forward_batch_rows_sum", {{"model", "b"}}), 36.0);
}

TEST(ForwardBatcher, CallersInOneBatchGetTheirOwnRowsBitIdenticalToUnbatched) {
  ExpectOneBatchGivesEachCallerItsOwnBits(SmallOptions());
}

// Widths that take every path of the tiled product (model/dense_rows.h):
// whole lane groups and a remainder (20 inputs), tiles of units and single
// units (41, 9), tiles of rows and single rows (36 stacked vs 1–8 alone).
TEST(ForwardBatcher, CallersInOneBatchOfAWideModelGetTheirOwnRowsBitIdenticalToUnbatched) {
  ExpectOneBatchGivesEachCallerItsOwnBits(
      Network(20, {{41, model::Activation::kTanh}, {9, model::Activation::kIdentity}}));
}

TEST(ForwardBatcher, BatchesHoldAtMostMaxBatchRowsAndARequestNeverSplits) {
  auto trainer = MakeTrainer();
  auto metrics = ServerMetrics::Create({});
  ASSERT_TRUE(metrics.ok());
  ModelMetrics* m = (*metrics)->ForModel("b");
  // 3 + 3 rows fill the first batch of 6; the 4-row request would not fit
  // beside them and waits for the next; 10 rows (> max) run alone.
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/6, kHoldForFullBatch, m);
  std::vector<std::unique_ptr<Call>> calls;
  for (int rows : {3, 3, 4, 10}) {
    calls.push_back(std::make_unique<Call>());
    calls.back()->inputs = Inputs(rows, static_cast<float>(rows) + 0.5f);
    ASSERT_TRUE(Enqueue(*batcher, *calls.back()).ok());
  }
  for (auto& call : calls) {
    ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(kWait));
    ASSERT_TRUE(call->result.ok()) << call->result.status();
    EXPECT_EQ(call->result->outputs, trainer->Forward(call->inputs)->outputs);
  }
  const std::string text = (*metrics)->Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_forward_batch_rows_count", {{"model", "b"}}), 3.0);
  EXPECT_EQ(Sample(text, "deltaserve_forward_batch_rows_sum", {{"model", "b"}}), 20.0);
}

// While the learner steps, every answer's rows are f(X) at the parameters of
// the version it reports — one snapshot per batch, never a mix.
TEST(ForwardBatcher, ConcurrentCallersSeeOutputsOfExactlyTheVersionReported) {
  // Abseil's deadlock detector keeps a graph of every mutex waited on, under
  // a lock of its own that TSan cannot see (Abseil is not instrumented): with
  // hundreds of Notifications waited on from many threads, the TSan build
  // (tests/sanitizers) reports that graph, not this code. The detector is a
  // debugging aid; this test does not need it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::Mutex mu;
  std::map<uint64_t, std::shared_ptr<const Snapshot>> published;
  auto trainer = MakeTrainer(SmallOptions(), [&](std::shared_ptr<const Snapshot> s) {
    absl::MutexLock lock(&mu);
    published[s->version] = std::move(s);
  });
  {
    absl::MutexLock lock(&mu);
    published[0] = trainer->snapshot();
  }
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration());

  std::atomic<bool> stop{false};
  // The callers start once the learner has stepped, so that it steps under
  // them (started together, 480 calls could end before its first step).
  absl::Notification stepping;
  std::thread learner_load([&] {
    for (int i = 0; i < 200 && !stop; ++i) {
      Submission s;
      s.inputs = Inputs(2, static_cast<float>(i));
      s.deltas = model::Matrix::Constant(2, 2, 0.5f);
      s.version = trainer->snapshot()->version;
      absl::Notification applied;
      if (trainer->Submit(std::move(s), [&](absl::StatusOr<SubmitResult>) { applied.Notify(); })
              .ok()) {
        applied.WaitForNotificationWithTimeout(kWait);
      }
      if (!stepping.HasBeenNotified()) stepping.Notify();
    }
  });
  if (!stepping.WaitForNotificationWithTimeout(kWait)) {
    stop = true;
    learner_load.join();
    FAIL() << "the learner did not step in " << kWait;
  }
  constexpr int kCallers = 8;
  constexpr int kCallsEach = 60;
  std::vector<std::vector<std::unique_ptr<Call>>> calls(kCallers);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < kCallsEach; ++i) {
        calls[c].push_back(std::make_unique<Call>());
        Call& call = *calls[c].back();
        call.inputs = Inputs(1 + (i + c) % 4, static_cast<float>(c * 1000 + i));
        if (!Enqueue(*batcher, call).ok()) return;
        call.done.WaitForNotificationWithTimeout(kWait);
      }
    });
  }
  for (std::thread& t : callers) t.join();
  stop = true;
  learner_load.join();

  std::set<uint64_t> versions_seen;
  Trainer::ForwardScratch scratch;
  for (auto& per_caller : calls) {
    ASSERT_EQ(per_caller.size(), static_cast<size_t>(kCallsEach));
    for (auto& call : per_caller) {
      ASSERT_TRUE(call->done.HasBeenNotified());
      ASSERT_TRUE(call->result.ok()) << call->result.status();
      std::shared_ptr<const Snapshot> at;
      {
        absl::MutexLock lock(&mu);
        at = published.at(call->result->version);
      }
      model::Matrix expected;
      ASSERT_TRUE(trainer->ForwardAt(*at, call->inputs, &expected, scratch).ok());
      EXPECT_EQ(call->result->outputs, expected) << "version " << call->result->version;
      versions_seen.insert(call->result->version);
    }
  }
  // The learner did step underneath the callers.
  EXPECT_GT(trainer->snapshot()->version, 0u);
}

TEST(ForwardBatcher, BadRequestsAreRefusedAloneAndNeverJoinABatch) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/4, kHoldForFullBatch);
  Call good1, wrong_width, good2, not_finite, empty;
  good1.inputs = Inputs(2, 1.0f);
  wrong_width.inputs = model::Matrix::Ones(1, 4);
  not_finite.inputs = Inputs(1, 2.0f);
  not_finite.inputs(0, 1) = std::numeric_limits<float>::quiet_NaN();
  empty.inputs = model::Matrix(0, 3);
  good2.inputs = Inputs(2, 3.0f);
  ASSERT_TRUE(Enqueue(*batcher, good1).ok());
  const absl::Status width = Enqueue(*batcher, wrong_width);
  EXPECT_EQ(width.code(), absl::StatusCode::kInvalidArgument);
  // The same message the unbatched Forward gives.
  EXPECT_EQ(width, trainer->Forward(wrong_width.inputs).status());
  EXPECT_EQ(Enqueue(*batcher, not_finite).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Enqueue(*batcher, empty).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(Enqueue(*batcher, good2).ok());
  for (Call* call : {&good1, &good2}) {
    ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(kWait));
    ASSERT_TRUE(call->result.ok()) << call->result.status();
    EXPECT_EQ(call->result->outputs, trainer->Forward(call->inputs)->outputs);
  }
  for (Call* call : {&wrong_width, &not_finite, &empty}) EXPECT_FALSE(call->done.HasBeenNotified());
}

// Finite inputs whose outputs overflow fail in the batch, for that caller
// only; the others in the same product are answered normally.
TEST(ForwardBatcher, AnOverflowingCallerFailsAloneInsideItsBatch) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/3, kHoldForFullBatch);
  Call before, overflow, after;
  before.inputs = Inputs(1, 1.0f);
  overflow.inputs = model::Matrix::Constant(1, 3, 3e38f);
  after.inputs = Inputs(1, 2.0f);
  for (Call* call : {&before, &overflow, &after}) ASSERT_TRUE(Enqueue(*batcher, *call).ok());
  for (Call* call : {&before, &overflow, &after}) {
    ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(kWait));
  }
  absl::StatusOr<ForwardResult> unbatched = trainer->Forward(overflow.inputs);
  if (unbatched.ok()) {
    // tanh saturates: then the batch must agree that there is no error.
    ASSERT_TRUE(overflow.result.ok());
  } else {
    EXPECT_EQ(overflow.result.status(), unbatched.status());
  }
  for (Call* call : {&before, &after}) {
    ASSERT_TRUE(call->result.ok()) << call->result.status();
    EXPECT_EQ(call->result->outputs, trainer->Forward(call->inputs)->outputs);
  }
}

TEST(ForwardBatcher, OverflowIsReportedLikeTheUnbatchedForward) {
  TrainerOptions options = SmallOptions();
  options.mlp.layers = {{2, model::Activation::kIdentity}};  // No saturation.
  auto trainer = MakeTrainer(options);
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/2, kHoldForFullBatch);
  Call ok, overflow;
  ok.inputs = Inputs(1, 1.0f);
  overflow.inputs = model::Matrix::Constant(1, 3, 3e38f);
  ASSERT_TRUE(Enqueue(*batcher, overflow).ok());
  ASSERT_TRUE(Enqueue(*batcher, ok).ok());
  ASSERT_TRUE(overflow.done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(ok.done.WaitForNotificationWithTimeout(kWait));
  ASSERT_FALSE(overflow.result.ok());
  EXPECT_EQ(overflow.result.status(), trainer->Forward(overflow.inputs).status());
  EXPECT_THAT(overflow.result.status().message(), HasSubstr("overflow"));
  ASSERT_TRUE(ok.result.ok()) << ok.result.status();
  EXPECT_EQ(ok.result->outputs, trainer->Forward(ok.inputs)->outputs);
}

TEST(ForwardBatcher, StopFailsWaitingRequestsWithUnavailableAndRefusesNewOnes) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/100, kHoldForFullBatch);
  Call waiting, late;
  waiting.inputs = Inputs(1, 1.0f);
  late.inputs = Inputs(1, 2.0f);
  ASSERT_TRUE(Enqueue(*batcher, waiting).ok());
  batcher->Stop();
  ASSERT_TRUE(waiting.done.HasBeenNotified());  // Stop returns after the callbacks.
  EXPECT_EQ(waiting.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Enqueue(*batcher, late).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(late.done.HasBeenNotified());
  batcher->Stop();  // Idempotent.
}

TEST(ForwardBatcher, AFullQueueIsResourceExhausted) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/1 << 20, kHoldForFullBatch);
  std::atomic<int> unavailable{0};
  for (size_t i = 0; i < ForwardBatcher::kMaxQueuedRequests; ++i) {
    ASSERT_TRUE(batcher
                    ->Enqueue(Inputs(1, 0.0f),
                              [&](absl::StatusOr<ForwardResult> r) {
                                if (absl::IsUnavailable(r.status())) ++unavailable;
                              })
                    .ok());
  }
  EXPECT_EQ(batcher->Enqueue(Inputs(1, 0.0f), [](absl::StatusOr<ForwardResult>) {}).code(),
            absl::StatusCode::kResourceExhausted);
  batcher->Stop();
  EXPECT_EQ(unavailable.load(), static_cast<int>(ForwardBatcher::kMaxQueuedRequests));
}

TEST(ForwardBatcher, MaxBatchRowsOneComputesInTheCallersThread) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/1, absl::ZeroDuration());
  Call call;
  call.inputs = Inputs(5, 1.0f);
  ASSERT_TRUE(Enqueue(*batcher, call).ok());
  ASSERT_TRUE(call.done.HasBeenNotified());  // Before Enqueue returned.
  ASSERT_TRUE(call.result.ok());
  EXPECT_EQ(call.result->outputs, trainer->Forward(call.inputs)->outputs);
  batcher->Stop();
  Call late;
  late.inputs = Inputs(1, 1.0f);
  EXPECT_EQ(Enqueue(*batcher, late).code(), absl::StatusCode::kUnavailable);
}

// SmallOptions' model costs 3·16 + 16·2 = 80 multiply-adds a row.
TEST(ForwardBatcher, RequestsBelowMinBatchMacsAreComputedInTheCallersThread) {
  auto trainer = MakeTrainer();
  // 2 rows (160) are computed inline; 3 rows (240) wait in the batcher's
  // queue, held there for a fuller batch.
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, kHoldForFullBatch,
                             /*metrics=*/nullptr, /*min_batch_macs=*/161);
  EXPECT_TRUE(batcher->ComputesInline(2));
  EXPECT_FALSE(batcher->ComputesInline(3));
  Call cheap;
  cheap.inputs = Inputs(2, 1.0f);
  ASSERT_TRUE(Enqueue(*batcher, cheap).ok());
  ASSERT_TRUE(cheap.done.HasBeenNotified());  // Before Enqueue returned.
  ASSERT_TRUE(cheap.result.ok()) << cheap.result.status();
  absl::StatusOr<ForwardResult> alone = trainer->Forward(cheap.inputs);
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ(cheap.result->outputs, alone->outputs);
  EXPECT_EQ(cheap.result->version, alone->version);
  EXPECT_EQ(batcher->queued(), 0u);
  Call costly;
  costly.inputs = Inputs(3, 2.0f);
  ASSERT_TRUE(Enqueue(*batcher, costly).ok());
  EXPECT_FALSE(costly.done.HasBeenNotified());
  EXPECT_EQ(batcher->queued(), 1u);
  batcher->Stop();
  ASSERT_TRUE(costly.done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(costly.result.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ForwardBatcher, ByDefaultSmallModelsComputeInlineAndLargeOnesBatch) {
  auto small = MakeTrainer();
  auto small_batcher = ForwardBatcher::Create(small.get(), ForwardBatchingOptions{});
  ASSERT_TRUE(small_batcher.ok());
  EXPECT_EQ((*small_batcher)->options().min_batch_macs, wire::kDefaultMinBatchMacs);
  EXPECT_TRUE((*small_batcher)->ComputesInline(1));
  EXPECT_TRUE((*small_batcher)->ComputesInline(819));   // 65,520 multiply-adds.
  EXPECT_FALSE((*small_batcher)->ComputesInline(820));  // 65,600.
  // 64 → 256 → 256 → 64: 98,304 a row.
  auto large = MakeTrainer(Network(64, {{256, model::Activation::kTanh},
                                        {256, model::Activation::kTanh},
                                        {64, model::Activation::kIdentity}}));
  auto large_batcher = ForwardBatcher::Create(large.get(), ForwardBatchingOptions{});
  ASSERT_TRUE(large_batcher.ok());
  EXPECT_FALSE((*large_batcher)->ComputesInline(1));
  // max_batch_rows 1 computes every request inline, whatever it costs.
  auto unbatched = ForwardBatcher::Create(large.get(), {1, absl::ZeroDuration(), 0});
  ASSERT_TRUE(unbatched.ok());
  EXPECT_TRUE((*unbatched)->ComputesInline(4096));
}

TEST(ForwardBatcher, CreateRejectsZeroRowsAndBadDelays) {
  auto trainer = MakeTrainer();
  EXPECT_EQ(ForwardBatcher::Create(trainer.get(), {0, absl::ZeroDuration()}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ForwardBatcher::Create(trainer.get(), {8, -absl::Seconds(1)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ForwardBatcher::Create(trainer.get(), {8, absl::InfiniteDuration()}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::server

namespace deltaserve::server {
namespace {

// SmallOptions' model: 80 multiply-adds a row forward, 160 with the backward.
TEST(ForwardBatcherInputGradient, CheapOnesRunInTheCallersThreadLongOnesOnAGradientThread) {
  auto trainer = MakeTrainer();
  // A gradient is inline below 64 × 3 = 192 multiply-adds, a Forward below 3.
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration(),
                             /*metrics=*/nullptr, /*min_batch_macs=*/3);
  static_assert(ForwardBatcher::kGradientInlineFactor == 64);
  EXPECT_TRUE(batcher->ComputesGradientInline(1));   // 160.
  EXPECT_FALSE(batcher->ComputesGradientInline(2));  // 320.
  EXPECT_FALSE(batcher->ComputesInline(1));          // A Forward of 80 is stacked.
  GradientCall cheap(1, 1.0f);
  ASSERT_TRUE(EnqueueGradient(*batcher, cheap).ok());
  ASSERT_TRUE(cheap.done.HasBeenNotified());  // Before EnqueueInputGradient returned.
  EXPECT_EQ(cheap.answered_on, std::this_thread::get_id());
  ExpectSameAsTrainer(*trainer, cheap);
  GradientCall costly(5, 2.0f);
  ASSERT_TRUE(EnqueueGradient(*batcher, costly).ok());
  ASSERT_TRUE(costly.done.WaitForNotificationWithTimeout(kWait));
  EXPECT_NE(costly.answered_on, std::this_thread::get_id());
  ExpectSameAsTrainer(*trainer, costly);
}

// Gradients have threads of their own: one is answered while a Forward
// waits (60 s) for its batch to fill, and the Forward still waits after it.
TEST(ForwardBatcherInputGradient, NeitherWaitsForTheOther) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, kHoldForFullBatch);
  Call held;
  held.inputs = Inputs(1, 1.0f);
  ASSERT_TRUE(Enqueue(*batcher, held).ok());
  GradientCall gradient(3, 3.0f);
  ASSERT_TRUE(EnqueueGradient(*batcher, gradient).ok());
  ASSERT_TRUE(gradient.done.WaitForNotificationWithTimeout(kWait))
      << "the gradient waited for the Forward batch to fill";
  ExpectSameAsTrainer(*trainer, gradient);
  EXPECT_FALSE(held.done.HasBeenNotified());
  EXPECT_EQ(batcher->queued(), 1u);
  batcher->Stop();
  EXPECT_EQ(held.result.status().code(), absl::StatusCode::kUnavailable);
}

// With 2 gradient threads two callers' gradients run at once: each answer
// waits for the other to begin, which one thread could never do.
TEST(ForwardBatcherInputGradient, ConcurrentCallersGradientsRunInParallel) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration(),
                             /*metrics=*/nullptr, /*min_batch_macs=*/0, /*gradient_threads=*/2);
  absl::Notification entered[2], answered[2];
  bool saw_the_other[2] = {false, false};
  for (int k = 0; k < 2; ++k) {
    ASSERT_TRUE(batcher
                    ->EnqueueInputGradient(
                        Inputs(3, 1.0f + k), Inputs(3, 2.0f, 2),
                        [&, k](absl::StatusOr<InputGradientResult> result) {
                          EXPECT_TRUE(result.ok()) << result.status();
                          entered[k].Notify();
                          saw_the_other[k] = entered[1 - k].WaitForNotificationWithTimeout(kWait);
                          answered[k].Notify();
                        })
                    .ok());
  }
  for (absl::Notification& done : answered) {
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(2 * kWait));
  }
  EXPECT_TRUE(saw_the_other[0] && saw_the_other[1]) << "the two gradients ran one after the other";
}

TEST(ForwardBatcherInputGradient, BadRequestsAreRefusedAtOnceAndNeverQueued) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration());
  GradientCall wrong_deltas(3, 1.0f);
  wrong_deltas.deltas = Inputs(2, 1.0f, 2);  // 2 rows for 3 inputs.
  absl::Status refused = EnqueueGradient(*batcher, wrong_deltas);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.message(), HasSubstr("deltas"));
  GradientCall wrong_inputs(3, 1.0f);
  wrong_inputs.inputs = Inputs(3, 1.0f, 4);  // input_dim is 3.
  EXPECT_EQ(EnqueueGradient(*batcher, wrong_inputs).code(), absl::StatusCode::kInvalidArgument);
  GradientCall nan(3, 1.0f);
  nan.deltas(1, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(EnqueueGradient(*batcher, nan).code(), absl::StatusCode::kInvalidArgument);
  for (GradientCall* call : {&wrong_deltas, &wrong_inputs, &nan}) {
    EXPECT_FALSE(call->done.HasBeenNotified());
  }
  EXPECT_EQ(batcher->queued_gradients(), 0u);
}

// A batcher with one gradient thread, held by the answer to a first gradient
// until `release`: what is enqueued after it waits in the queue.
struct HeldGradientThread {
  explicit HeldGradientThread(const Trainer* trainer)
      : batcher(MakeBatcher(trainer, /*max_batch_rows=*/64, absl::ZeroDuration(),
                            /*metrics=*/nullptr, /*min_batch_macs=*/0, /*gradient_threads=*/1)) {
    const absl::Status queued = batcher->EnqueueInputGradient(
        Inputs(3, 9.0f), Inputs(3, 9.0f, 2), [this](absl::StatusOr<InputGradientResult>) {
          entered.Notify();
          release.WaitForNotification();
        });
    EXPECT_TRUE(queued.ok()) << queued;
    EXPECT_TRUE(entered.WaitForNotificationWithTimeout(kWait));
  }
  ~HeldGradientThread() {
    if (!release.HasBeenNotified()) release.Notify();
  }
  absl::Notification entered, release;
  std::unique_ptr<ForwardBatcher> batcher;
};

// The test learns that Stop has begun when Enqueue is refused.
TEST(ForwardBatcherInputGradient, StopFailsAWaitingOneWithUnavailableAndRefusesNewOnes) {
  auto trainer = MakeTrainer();
  HeldGradientThread held(trainer.get());
  ForwardBatcher& batcher = *held.batcher;
  GradientCall waiting(3, 1.0f);
  ASSERT_TRUE(EnqueueGradient(batcher, waiting).ok());
  EXPECT_EQ(batcher.queued_gradients(), 1u);
  std::thread stopper([&] { batcher.Stop(); });
  GradientCall late(3, 2.0f);
  std::atomic<int> probes_unanswered{0};
  for (;;) {  // Until Stop has marked the batcher stopping.
    const absl::Status probe = batcher.EnqueueInputGradient(
        Inputs(3, 0.0f), Inputs(3, 0.0f, 2), [&](absl::StatusOr<InputGradientResult> r) {
          if (absl::IsUnavailable(r.status())) --probes_unanswered;
        });
    if (probe.ok()) {
      ++probes_unanswered;
    } else if (!absl::IsResourceExhausted(probe)) {
      EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable) << probe;
      break;
    }
    std::this_thread::yield();
  }
  EXPECT_EQ(EnqueueGradient(batcher, late).code(), absl::StatusCode::kUnavailable);
  held.release.Notify();
  stopper.join();
  ASSERT_TRUE(waiting.done.HasBeenNotified());  // Stop returns after the callbacks.
  EXPECT_EQ(waiting.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(late.done.HasBeenNotified());
  EXPECT_EQ(probes_unanswered.load(), 0);
}

TEST(ForwardBatcherInputGradient, AFullQueueIsResourceExhausted) {
  auto trainer = MakeTrainer();
  HeldGradientThread held(trainer.get());
  for (size_t i = 0; i < ForwardBatcher::kMaxQueuedRequests; ++i) {
    ASSERT_TRUE(held.batcher
                    ->EnqueueInputGradient(Inputs(1, 0.0f), Inputs(1, 0.0f, 2),
                                           [](absl::StatusOr<InputGradientResult>) {})
                    .ok());
  }
  GradientCall refused(1, 1.0f);
  const absl::Status full = EnqueueGradient(*held.batcher, refused);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("InputGradient requests already waiting"));
  // Forwards have a queue of their own.
  Call forward;
  forward.inputs = Inputs(1, 1.0f);
  EXPECT_TRUE(Enqueue(*held.batcher, forward).ok());
  ASSERT_TRUE(forward.done.WaitForNotificationWithTimeout(kWait));
  held.release.Notify();
  held.batcher->Stop();
  EXPECT_FALSE(refused.done.HasBeenNotified());
}

// Gradient threads start as long gradients come, one for each that finds
// none idle, and never more than the cap: five gradients held in their
// answers start exactly two threads of two, and the other three wait.
TEST(ForwardBatcherInputGradient, ThreadsStartAsGradientsComeAndNeverBeyondTheCap) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration(),
                             /*metrics=*/nullptr, /*min_batch_macs=*/0, /*gradient_threads=*/2);
  EXPECT_EQ(batcher->max_gradient_threads(), 2u);
  EXPECT_EQ(batcher->gradient_threads_started(), 0u) << "threads before any gradient came";
  constexpr int kGradients = 5;
  absl::Notification release;
  absl::Notification entered[kGradients], answered[kGradients];
  for (int k = 0; k < kGradients; ++k) {
    ASSERT_TRUE(batcher
                    ->EnqueueInputGradient(Inputs(3, 1.0f + k), Inputs(3, 2.0f, 2),
                                           [&, k](absl::StatusOr<InputGradientResult> result) {
                                             EXPECT_TRUE(result.ok()) << result.status();
                                             entered[k].Notify();
                                             release.WaitForNotification();
                                             answered[k].Notify();
                                           })
                    .ok());
  }
  // The first two are each held by a thread of their own.
  ASSERT_TRUE(entered[0].WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(entered[1].WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(batcher->gradient_threads_started(), 2u);
  EXPECT_EQ(batcher->queued_gradients(), 3u);
  release.Notify();
  for (absl::Notification& done : answered) {
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  }
  EXPECT_EQ(batcher->gradient_threads_started(), 2u);
}

TEST(ForwardBatcherInputGradient, ByDefaultTheCapIsTheCpusThisProcessMayUse) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration());
  EXPECT_EQ(batcher->max_gradient_threads(), static_cast<uint32_t>(base::UsableCpus()));
  EXPECT_EQ(batcher->gradient_threads_started(), 0u);
  // Pinned to one CPU (as taskset or a cpuset would), whatever the host has.
  std::unique_ptr<ForwardBatcher> pinned;
  {
    deltaserve::testing::PinnedToOneCpu one;
    pinned = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration());
  }
  EXPECT_EQ(pinned->max_gradient_threads(), 1u);
  // Cheap gradients, computed inline, start none.
  auto inline_only = MakeBatcher(trainer.get(), /*max_batch_rows=*/64, absl::ZeroDuration(),
                                 /*metrics=*/nullptr, /*min_batch_macs=*/1'000'000);
  GradientCall cheap(3, 1.0f);
  ASSERT_TRUE(EnqueueGradient(*inline_only, cheap).ok());
  ASSERT_TRUE(cheap.done.HasBeenNotified());
  EXPECT_EQ(inline_only->gradient_threads_started(), 0u);
}

TEST(ForwardBatcherInputGradient, ByDefaultATd3CriticsBatchIsInlineAndLargerProductsAreNot) {
  // 4 → 64 → 64 → 1: 4,416 a row.
  auto small = MakeTrainer(Network(4, {{64, model::Activation::kRelu},
                                       {64, model::Activation::kRelu},
                                       {1, model::Activation::kIdentity}}));
  auto small_batcher = ForwardBatcher::Create(small.get(), ForwardBatchingOptions{});
  ASSERT_TRUE(small_batcher.ok());
  EXPECT_TRUE((*small_batcher)->ComputesGradientInline(256));  // 2.3M with the backward.
  EXPECT_FALSE((*small_batcher)->ComputesInline(256));         // A Forward of 1.1M is stacked.
  // 64 → 1024 → 1024 → 64: 1.18M a row.
  auto big = MakeTrainer(Network(64, {{1024, model::Activation::kTanh},
                                      {1024, model::Activation::kTanh},
                                      {64, model::Activation::kIdentity}}));
  auto big_batcher = ForwardBatcher::Create(big.get(), ForwardBatchingOptions{});
  ASSERT_TRUE(big_batcher.ok());
  EXPECT_TRUE((*big_batcher)->ComputesGradientInline(1));   // 2.4M.
  EXPECT_FALSE((*big_batcher)->ComputesGradientInline(2));  // 4.7M of 4.2M.
}

TEST(ForwardBatcherInputGradient, MaxBatchRowsOneComputesEveryOneInTheCallersThread) {
  auto trainer = MakeTrainer();
  auto batcher = MakeBatcher(trainer.get(), /*max_batch_rows=*/1, absl::ZeroDuration());
  EXPECT_TRUE(batcher->ComputesGradientInline(4096));
  GradientCall call(50, 1.0f);
  ASSERT_TRUE(EnqueueGradient(*batcher, call).ok());
  ASSERT_TRUE(call.done.HasBeenNotified());
  ExpectSameAsTrainer(*trainer, call);
}

}  // namespace
}  // namespace deltaserve::server
