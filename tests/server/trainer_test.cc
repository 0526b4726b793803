#include "deltaserve/server/core/trainer.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using testing::CoreMatrix;
using ::testing::HasSubstr;
using testing::Sample;
using testing::SubmitAndWait;

constexpr absl::Duration kWait = absl::Seconds(30);

// y = W·x + b with W [2 × 2]: parameters are W00 W01 W10 W11 b0 b1.
TrainerOptions LinearOptions() {
  return testing::TrainerOptionsBuilder("lin", /*input_dim=*/2)
      .Layers({{2, model::Activation::kIdentity}})
      .Seed(7)
      .Sgd(0.1f)
      .Surrogate(model::SurrogateConfig::Mode::kCurrent)
      .MaxStaleness(100)
      .Build();
}

Submission OneRow(std::vector<float> x, std::vector<float> delta, uint64_t version = 0) {
  Submission s;
  s.inputs = CoreMatrix(1, 2, x);
  s.deltas = CoreMatrix(1, 2, delta);
  s.version = version;
  return s;
}

TrainerOptions WithGate(TrainerOptions options, std::shared_ptr<LearnerGate> gate) {
  options.gate = std::move(gate);
  return options;
}

std::unique_ptr<Trainer> MakeTrainer(TrainerOptions options,
                                     Trainer::PublishCallback on_publish = nullptr) {
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(std::move(options), std::move(on_publish));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return *std::move(trainer);
}

TEST(Trainer, StartsAtVersionZeroWithInitialParameters) {
  auto trainer = MakeTrainer(LinearOptions());
  EXPECT_EQ(trainer->snapshot()->version, 0u);
  EXPECT_EQ(trainer->snapshot()->parameters, trainer->mlp().InitialParameters());
}

TEST(Trainer, InvalidOptionsAreRejected) {
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 0;
  EXPECT_EQ(Trainer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = LinearOptions();
  options.mlp.layers.clear();
  EXPECT_EQ(Trainer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = LinearOptions();
  options.optimizer.learning_rate = -1;
  EXPECT_EQ(Trainer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = LinearOptions();
  options.request_id_window = size_t{1} << 32;  // Its slots are numbered in 32 bits.
  EXPECT_EQ(Trainer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Trainer, ForwardMatchesMlpOnTheSnapshot) {
  TrainerOptions options = LinearOptions();
  options.mlp.layers = {{5, model::Activation::kTanh}, {2, model::Activation::kIdentity}};
  auto trainer = MakeTrainer(options);
  const model::Matrix x = CoreMatrix(2, 2, {0.5f, -1.0f, 2.0f, 0.25f});
  absl::StatusOr<ForwardResult> result = trainer->Forward(x);
  ASSERT_TRUE(result.ok()) << result.status();
  absl::StatusOr<model::Matrix> expected =
      trainer->mlp().Forward(trainer->snapshot()->parameters, x);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(result->version, 0u);
  EXPECT_TRUE(result->outputs.isApprox(*expected));
}

// A batch many times longer than the chunks of rows ForwardRowInvariant
// computes at once (at most 256); every row is still y = f(x) of its own input.
TEST(Trainer, ForwardOfManyRowsIsComputedInChunksWithTheSameResult) {
  TrainerOptions options = LinearOptions();
  options.mlp.layers = {{16, model::Activation::kTanh}, {2, model::Activation::kIdentity}};
  auto trainer = MakeTrainer(options);
  const Eigen::Index rows = 2 * 4096 + 3;
  const model::Matrix x = model::Matrix::Random(rows, 2);
  absl::StatusOr<ForwardResult> result = trainer->Forward(x);
  ASSERT_TRUE(result.ok()) << result.status();
  absl::StatusOr<model::Matrix> expected =
      trainer->mlp().Forward(trainer->snapshot()->parameters, x);
  ASSERT_TRUE(expected.ok());
  ASSERT_EQ(result->outputs.rows(), rows);
  EXPECT_TRUE(result->outputs.isApprox(*expected, 1e-6f));
  for (Eigen::Index r : {Eigen::Index{0}, Eigen::Index{4096}, rows - 1}) {
    EXPECT_TRUE(result->outputs.row(r).isApprox(expected->row(r), 1e-6f)) << "row " << r;
  }
}

TEST(Trainer, RequestsBeyondMaxRequestRowsAreResourceExhaustedAndChangeNothing) {
  TrainerOptions options = LinearOptions();
  options.max_request_rows = 8;
  auto trainer = MakeTrainer(options);
  const std::vector<float> before = trainer->snapshot()->parameters;
  absl::StatusOr<ForwardResult> forward = trainer->Forward(model::Matrix::Zero(9, 2));
  EXPECT_EQ(forward.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(forward.status().message().find("at most 8 rows"), absl::string_view::npos);
  EXPECT_TRUE(trainer->Forward(model::Matrix::Zero(8, 2)).ok());
  Submission big;
  big.inputs = model::Matrix::Zero(9, 2);
  big.deltas = model::Matrix::Zero(9, 2);
  EXPECT_EQ(trainer->Submit(std::move(big), [](auto) {}).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(trainer->snapshot()->parameters, before);
}

TEST(Trainer, ForwardWhoseOutputsOverflowIsInvalidArgument) {
  TrainerOptions options = LinearOptions();
  options.mlp.seed = 1;
  auto trainer = MakeTrainer(options);
  absl::StatusOr<ForwardResult> result = trainer->Forward(CoreMatrix(1, 2, {3e38f, 3e38f}));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("overflow"), absl::string_view::npos) << result.status();
}

TEST(Trainer, CurrentModeSgdStepIsExact) {
  auto trainer = MakeTrainer(LinearOptions());
  const std::vector<float> p0 = trainer->snapshot()->parameters;
  absl::StatusOr<SubmitResult> result = SubmitAndWait(*trainer, OneRow({1, 2}, {0.5f, -1}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->stepped);
  EXPECT_EQ(result->version, 1u);
  // ∂l_s/∂y = δ, ∇W = δ·xᵀ, ∇b = δ, p1 = p0 − 0.1·∇.
  const std::vector<float> grad = {0.5f, 1.0f, -1.0f, -2.0f, 0.5f, -1.0f};
  const std::vector<float>& p1 = trainer->snapshot()->parameters;
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(p1[i], p0[i] - 0.1f * grad[i]) << i;
}

TEST(Trainer, StepsOnlyAfterSamplesPerStepRows) {
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 3;
  auto trainer = MakeTrainer(options);
  Submission two_rows;
  two_rows.inputs = CoreMatrix(2, 2, {1, 2, 3, 4});
  two_rows.deltas = CoreMatrix(2, 2, {1, 1, 1, 1});
  absl::StatusOr<SubmitResult> first = SubmitAndWait(*trainer, two_rows);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->stepped);
  EXPECT_EQ(first->version, 0u);
  EXPECT_EQ(trainer->snapshot()->version, 0u);
  absl::StatusOr<SubmitResult> second = SubmitAndWait(*trainer, two_rows);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->stepped);
  EXPECT_EQ(second->version, 1u);
  EXPECT_EQ(trainer->snapshot()->version, 1u);
}

// G is the sum over the submissions of one step only: each step starts from
// G = 0, and so does the accumulation after an import (the learner skips the
// sum while it knows G is zero, and must not skip it otherwise).
TEST(Trainer, EachStepAppliesTheSumOfItsOwnSubmissionsOnly) {
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 2;
  auto trainer = MakeTrainer(options);
  // ∇ of one row: ∇W = δ·xᵀ, ∇b = δ (W00 W01 W10 W11 b0 b1).
  auto grad = [](std::vector<float> x, std::vector<float> d) {
    return std::vector<float>{d[0] * x[0], d[0] * x[1], d[1] * x[0], d[1] * x[1], d[0], d[1]};
  };
  auto expect_step = [&](const std::vector<float>& before, const std::vector<float>& g1,
                         const std::vector<float>& g2) {
    const std::vector<float>& after = trainer->snapshot()->parameters;
    for (int i = 0; i < 6; ++i) {
      EXPECT_NEAR(after[i], before[i] - 0.1f * (g1[i] + g2[i]), 1e-5) << i;  // Rounding only.
    }
  };
  const std::vector<float> p0 = trainer->snapshot()->parameters;
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 2}, {0.5f, -1})).ok());
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({3, -1}, {2, 0.25f})).ok());
  expect_step(p0, grad({1, 2}, {0.5f, -1}), grad({3, -1}, {2, 0.25f}));
  const std::vector<float> p1 = trainer->snapshot()->parameters;
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({-2, 1}, {1, 1}, 1)).ok());
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({0.5f, 4}, {-1, 3}, 1)).ok());
  ASSERT_EQ(trainer->snapshot()->version, 2u);
  expect_step(p1, grad({-2, 1}, {1, 1}), grad({0.5f, 4}, {-1, 3}));

  // Half a step, then an import: the half step is dropped with G.
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({7, 7}, {5, 5}, 2)).ok());
  const std::vector<float> imported = {1, 2, 3, 4, 5, 6};
  absl::Notification done;
  ASSERT_TRUE(trainer
                  ->ImportParameters(imported,
                                     [&](absl::StatusOr<SubmitResult> r) {
                                       EXPECT_TRUE(r.ok()) << r.status();
                                       done.Notify();
                                     })
                  .ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 0}, {1, 0}, 3)).ok());
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({0, 1}, {0, 1}, 3)).ok());
  ASSERT_EQ(trainer->snapshot()->version, 4u);
  expect_step(imported, grad({1, 0}, {1, 0}), grad({0, 1}, {0, 1}));
}

TEST(Trainer, StaleVersionIsAbortedAndChangesNothing) {
  TrainerOptions options = LinearOptions();
  options.max_staleness = 1;
  auto trainer = MakeTrainer(options);
  for (uint64_t v = 0; v < 3; ++v)
    ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 1}, {1, 1}, v)).ok());
  const std::vector<float> before = trainer->snapshot()->parameters;
  absl::StatusOr<SubmitResult> stale = SubmitAndWait(*trainer, OneRow({1, 1}, {1, 1}, 1));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale.status().message(), HasSubstr("2 versions behind current version 3"));
  EXPECT_EQ(trainer->snapshot()->version, 3u);
  EXPECT_EQ(trainer->snapshot()->parameters, before);
  absl::StatusOr<SubmitResult> ok = SubmitAndWait(*trainer, OneRow({1, 1}, {1, 1}, 2));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->staleness, 1u);
}

TEST(Trainer, StalenessScaledLrDividesTheGradientByOnePlusStaleness) {
  TrainerOptions options = LinearOptions();
  options.staleness_scaled_lr = true;
  auto trainer = MakeTrainer(options);
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 1}, {1, 1}, 0)).ok());
  const std::vector<float> p1 = trainer->snapshot()->parameters;
  absl::StatusOr<SubmitResult> stale = SubmitAndWait(*trainer, OneRow({1, 2}, {0.5f, -1}, 0));
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_EQ(stale->staleness, 1u);
  const std::vector<float> grad = {0.5f, 1.0f, -1.0f, -2.0f, 0.5f, -1.0f};
  const std::vector<float>& p2 = trainer->snapshot()->parameters;
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(p2[i], p1[i] - 0.1f * grad[i] / 2) << i;
}

TEST(Trainer, QueuedSubmissionsAreAppliedInOrder) {
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 2;
  auto gate = std::make_shared<testing::HeldGate>();
  gate->Close();  // Before the learner starts: it takes nothing until Open().
  auto trainer = MakeTrainer(WithGate(options, gate));
  absl::Mutex mu;
  std::vector<std::pair<uint64_t, bool>> answers;  // (version, stepped) in callback order
  absl::Notification all_done;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(trainer
                    ->Submit(OneRow({1, 1}, {1, 1}),
                             [&](absl::StatusOr<SubmitResult> r) {
                               absl::MutexLock lock(&mu);
                               answers.emplace_back(r->version, r->stepped);
                               if (answers.size() == 3) all_done.Notify();
                             })
                    .ok());
  }
  EXPECT_EQ(trainer->queued(), 3u);
  gate->Open();
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(kWait));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(answers, (std::vector<std::pair<uint64_t, bool>>{{0, false}, {1, true}, {1, false}}));
}

TEST(Trainer, FullQueueIsResourceExhausted) {
  TrainerOptions options = LinearOptions();
  options.queue_capacity = 2;
  auto gate = std::make_shared<testing::HeldGate>();
  gate->Close();  // Before the learner starts: it takes nothing until Open().
  auto trainer = MakeTrainer(WithGate(options, gate));
  int answered = 0;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(trainer->Submit(OneRow({1, 1}, {1, 1}), [&](auto) { ++answered; }).ok());
  }
  absl::Status full = trainer->Submit(OneRow({1, 1}, {1, 1}), [](auto) { FAIL(); });
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("queue is full"));
  trainer->Stop();
  EXPECT_EQ(answered, 2);  // Stop answers the queued ones.
}

TEST(Trainer, StopFailsQueuedSubmissionsWithUnavailable) {
  auto gate = std::make_shared<testing::HeldGate>();
  gate->Close();  // Before the learner starts: it takes nothing until Open().
  auto trainer = MakeTrainer(WithGate(LinearOptions(), gate));
  absl::Status answer;
  ASSERT_TRUE(trainer
                  ->Submit(OneRow({1, 1}, {1, 1}),
                           [&](absl::StatusOr<SubmitResult> r) { answer = r.status(); })
                  .ok());
  trainer->Stop();
  EXPECT_EQ(answer.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(trainer->snapshot()->version, 0u);
  EXPECT_EQ(trainer->Submit(OneRow({1, 1}, {1, 1}), [](auto) {}).code(),
            absl::StatusCode::kUnavailable);
}

TEST(Trainer, BadSubmissionsAreInvalidArgumentAndNeverQueued) {
  auto trainer = MakeTrainer(LinearOptions());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    Submission submission;
    std::string reason;
  };
  Submission wrong_cols = OneRow({1, 1}, {1, 1});
  wrong_cols.inputs = CoreMatrix(1, 3, {1, 2, 3});
  Submission empty = OneRow({1, 1}, {1, 1});
  empty.inputs = model::Matrix(0, 2);
  empty.deltas = model::Matrix(0, 2);
  Submission delta_rows = OneRow({1, 1}, {1, 1});
  delta_rows.deltas = CoreMatrix(2, 2, {1, 1, 1, 1});
  Submission acted_cols = OneRow({1, 1}, {1, 1});
  acted_cols.acted = CoreMatrix(1, 3, {1, 1, 1});
  Submission acted_inf = OneRow({1, 1}, {1, 1});
  acted_inf.acted = CoreMatrix(1, 2, {1, std::numeric_limits<float>::infinity()});
  const Case cases[] = {
      {wrong_cols, "inputs: expected 2 columns (input_dim of model \"lin\"), got 3"},
      {empty, "inputs: expected at least 1 row, got 0"},
      {delta_rows, "deltas: expected 1 rows (one per input row), got 2"},
      {acted_cols, "outputs: expected 2 columns (output_dim of model \"lin\"), got 3"},
      {OneRow({nan, 1}, {1, 1}), "inputs"},
      {OneRow({1, 1}, {1, nan}), "deltas"},
      {acted_inf, "outputs"},
      {OneRow({1, 1}, {1, 1}, /*version=*/5), "version: expected at most 0"},
  };
  for (const Case& c : cases) {
    absl::Status status = trainer->Submit(c.submission, [](auto) { FAIL(); });
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.reason;
    EXPECT_THAT(status.message(), HasSubstr(c.reason));
  }
  EXPECT_EQ(trainer->queued(), 0u);
}

TEST(Trainer, OverflowingGradientIsRejectedAndChangesNothing) {
  auto trainer = MakeTrainer(LinearOptions());
  const std::vector<float> before = trainer->snapshot()->parameters;
  absl::StatusOr<SubmitResult> result =
      SubmitAndWait(*trainer, OneRow({1e30f, 1e30f}, {3e38f, 3e38f}));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(trainer->snapshot()->parameters, before);
  EXPECT_EQ(trainer->snapshot()->version, 0u);
}

// A submission whose own gradient is finite but whose step the optimizer
// refuses (‖G + g‖ overflows) used to leave G and the row count poisoned, so
// every later step failed too. Now the trainer is as it was before it.
TEST(Trainer, ARefusedStepLeavesTheTrainerExactlyAsItWasAndTraining) {
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 2;
  auto trainer = MakeTrainer(options);
  auto reference = MakeTrainer(options);
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 2}, {0.5f, -1})).ok());
  ASSERT_TRUE(SubmitAndWait(*reference, OneRow({1, 2}, {0.5f, -1})).ok());

  absl::StatusOr<SubmitResult> refused = SubmitAndWait(*trainer, OneRow({1, 1}, {1e20f, 1e20f}));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_EQ(trainer->snapshot()->version, 0u);

  for (Trainer* t : {trainer.get(), reference.get()}) {
    absl::StatusOr<SubmitResult> step = SubmitAndWait(*t, OneRow({-1, 3}, {0.25f, 2}));
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_TRUE(step->stepped);
  }
  EXPECT_EQ(trainer->snapshot()->version, 1u);
  EXPECT_EQ(trainer->snapshot()->parameters, reference->snapshot()->parameters);
  ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 1}, {1, 1}, 1)).ok());
}

// Found by submit_delta_fuzzer: a huge but finite δ that does not complete a
// step was accumulated into G, whose norm then overflowed at every later
// step. It is refused before it reaches G.
TEST(Trainer, AGradientThatWouldPoisonTheAccumulatorIsRefusedBeforeTheStep) {
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 3;
  auto trainer = MakeTrainer(options);
  auto reference = MakeTrainer(options);
  absl::StatusOr<SubmitResult> refused = SubmitAndWait(*trainer, OneRow({1, 1}, {1e20f, 1e20f}));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  for (Trainer* t : {trainer.get(), reference.get()}) {
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(SubmitAndWait(*t, OneRow({1, 2}, {0.5f, -1})).ok());
  }
  EXPECT_EQ(trainer->snapshot()->version, 1u);
  EXPECT_EQ(trainer->snapshot()->parameters, reference->snapshot()->parameters);
}

TEST(Trainer, ARepeatedRequestIdGetsTheOriginalResultAndAppliesNothing) {
  auto trainer = MakeTrainer(LinearOptions());
  Submission first = OneRow({1, 2}, {0.5f, -1});
  first.request_id = "id-1";
  absl::StatusOr<SubmitResult> original = SubmitAndWait(*trainer, first);
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_FALSE(original->duplicate);
  const std::vector<float> after_first = trainer->snapshot()->parameters;

  // The retry of a call whose answer was lost: same id, even though it is
  // now a version behind.
  absl::StatusOr<SubmitResult> retry = SubmitAndWait(*trainer, first);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->version, original->version);
  EXPECT_EQ(retry->surrogate_loss, original->surrogate_loss);
  EXPECT_EQ(trainer->snapshot()->parameters, after_first);
  EXPECT_EQ(trainer->snapshot()->version, 1u);

  Submission other = OneRow({1, 2}, {0.5f, -1}, 1);
  other.request_id = "id-2";
  absl::StatusOr<SubmitResult> applied = SubmitAndWait(*trainer, other);
  ASSERT_TRUE(applied.ok());
  EXPECT_FALSE(applied->duplicate);
  EXPECT_EQ(trainer->snapshot()->version, 2u);
}

TEST(Trainer, TheRequestIdWindowForgetsTheOldestIds) {
  TrainerOptions options = LinearOptions();
  options.request_id_window = 2;
  auto trainer = MakeTrainer(options);
  for (int i = 0; i < 3; ++i) {
    Submission s = OneRow({1, 1}, {1, 1}, static_cast<uint64_t>(i));
    s.request_id = absl::StrCat("id-", i);
    ASSERT_TRUE(SubmitAndWait(*trainer, s).ok());
  }
  Submission newest = OneRow({1, 1}, {1, 1}, 3);
  newest.request_id = "id-2";
  EXPECT_TRUE(SubmitAndWait(*trainer, newest)->duplicate);
  Submission forgotten = OneRow({1, 1}, {1, 1}, 3);
  forgotten.request_id = "id-0";  // Beyond the window: applied again.
  EXPECT_FALSE(SubmitAndWait(*trainer, forgotten)->duplicate);
  EXPECT_EQ(trainer->snapshot()->version, 4u);
}

// The window keeps one copy of each id, which its index views: short ids
// (stored inside the string) and long ones (on the heap), through many
// evictions, are still found with their own results, and the evicted ones
// are not.
TEST(Trainer, TheRequestIdWindowFindsShortAndLongIdsThroughManyEvictions) {
  TrainerOptions options = LinearOptions();
  options.request_id_window = 64;
  auto trainer = MakeTrainer(options);
  auto id = [](int i) {
    return i % 2 == 0 ? absl::StrCat("s", i) : absl::StrCat(std::string(40, 'L'), "-", i);
  };
  std::vector<uint64_t> versions;
  for (int i = 0; i < 300; ++i) {
    Submission s = OneRow({1, 1}, {0.01f, 0.01f}, trainer->snapshot()->version);
    s.request_id = id(i);
    absl::StatusOr<SubmitResult> r = SubmitAndWait(*trainer, s);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(r->duplicate) << i;
    versions.push_back(r->version);
  }
  for (int i = 300 - 64; i < 300; ++i) {
    Submission again = OneRow({1, 1}, {0.01f, 0.01f}, trainer->snapshot()->version);
    again.request_id = id(i);
    absl::StatusOr<SubmitResult> r = SubmitAndWait(*trainer, again);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->duplicate) << i;
    EXPECT_EQ(r->version, versions[static_cast<size_t>(i)]) << i;
  }
  EXPECT_EQ(trainer->snapshot()->version, 300u);
  for (int i : {0, 1, 300 - 65}) {
    Submission forgotten = OneRow({1, 1}, {0.01f, 0.01f}, trainer->snapshot()->version);
    forgotten.request_id = id(i);
    absl::StatusOr<SubmitResult> r = SubmitAndWait(*trainer, forgotten);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->duplicate) << i;
  }
  EXPECT_EQ(trainer->snapshot()->version, 303u);
}

TEST(Trainer, ATooLongRequestIdIsInvalidArgument) {
  auto trainer = MakeTrainer(LinearOptions());
  Submission s = OneRow({1, 1}, {1, 1});
  s.request_id = std::string(kMaxRequestIdBytes + 1, 'x');
  EXPECT_EQ(trainer->Submit(std::move(s), [](auto) {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Trainer, ForwardRejectsBadInputs) {
  auto trainer = MakeTrainer(LinearOptions());
  EXPECT_THAT(trainer->Forward(CoreMatrix(1, 3, {1, 2, 3})).status().message(),
              HasSubstr("inputs: expected 2 columns (input_dim of model \"lin\"), got 3"));
  EXPECT_EQ(trainer->Forward(model::Matrix(0, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(trainer->Forward(CoreMatrix(1, 2, {1, std::numeric_limits<float>::infinity()}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Trainer, PublishesEveryNewSnapshot) {
  absl::Mutex mu;
  std::vector<uint64_t> published;
  auto trainer = MakeTrainer(LinearOptions(), [&](std::shared_ptr<const Snapshot> s) {
    absl::MutexLock lock(&mu);
    published.push_back(s->version);
  });
  for (uint64_t v = 0; v < 3; ++v)
    ASSERT_TRUE(SubmitAndWait(*trainer, OneRow({1, 1}, {1, 1}, v)).ok());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(published, (std::vector<uint64_t>{1, 2, 3}));
}

TEST(Trainer, RecordsAppliedSubmissionsStepsAndQueueDepthInItsMetrics) {
  auto metrics = ServerMetrics::Create({/*listen_address=*/""});
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  TrainerOptions options = LinearOptions();
  options.samples_per_step = 2;
  options.metrics = (*metrics)->ForModel("lin");
  auto gate = std::make_shared<testing::HeldGate>();
  gate->Close();  // Before the learner starts: it takes nothing until Open().
  auto trainer = MakeTrainer(WithGate(options, gate));
  const std::map<std::string, std::string> lin = {{"model", "lin"}};
  EXPECT_EQ(Sample((*metrics)->Scrape(), "deltaserve_model_version", lin), 0.0);

  absl::Notification first, second;
  ASSERT_TRUE(trainer
                  ->Submit(OneRow({1, 2}, {0.5f, -1}),
                           [&](auto r) {
                             EXPECT_TRUE(r.ok());
                             first.Notify();
                           })
                  .ok());
  ASSERT_TRUE(trainer
                  ->Submit(OneRow({1, 2}, {0.5f, -1}),
                           [&](auto r) {
                             EXPECT_TRUE(r.ok());
                             second.Notify();
                           })
                  .ok());
  EXPECT_EQ(Sample((*metrics)->Scrape(), "deltaserve_queue_depth", lin), 2.0);
  gate->Open();
  ASSERT_TRUE(first.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(second.WaitForNotificationWithTimeout(kWait));

  const std::string text = (*metrics)->Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_queue_depth", lin), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_applied_total", lin), 2.0);
  EXPECT_EQ(Sample(text, "deltaserve_submitted_rows_total", lin), 2.0);
  EXPECT_EQ(Sample(text, "deltaserve_optimizer_steps_total", lin), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_model_version", lin), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_submission_staleness_sum", lin), 0.0);
  // CURRENT mode, ε = 1: l_s = ½‖δ‖² = 0.625 per submission.
  EXPECT_NEAR(Sample(text, "deltaserve_surrogate_loss_sum", lin).value_or(-1), 1.25, 1e-6);
  // G = 2·[δ·xᵀ, δ] = 2·[0.5, 1, −1, −2, 0.5, −1]: ‖G‖ = 2·√7.5.
  EXPECT_NEAR(Sample(text, "deltaserve_gradient_norm", lin).value_or(-1), 2 * std::sqrt(7.5), 1e-5);
}

}  // namespace
}  // namespace deltaserve::server
