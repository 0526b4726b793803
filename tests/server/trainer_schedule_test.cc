// A Trainer with a learning-rate schedule: each optimizer step uses lr(k),
// k the optimizer steps taken before it (docs/model.md, "Learning-rate
// schedules"); the published snapshot and the metrics report the next
// step's rate; ImportParameters resets the optimizer state but not k.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using Kind = model::LearningRateScheduleConfig::Kind;
using testing::CoreMatrix;
using testing::ImportAndWait;
using testing::Sample;
using testing::SubmitAndWait;

constexpr double kPi = 3.14159265358979323846;
constexpr float kBaseRate = 0.1f;

// y = W·x + b, W [2 × 2] identity activation: with CURRENT/SUM and one row,
// ∂l_s/∂W = δ·xᵀ and ∂l_s/∂b = δ, so SGD moves W_ij by −lr(k)·δ_i·x_j.
TrainerOptions LinearSgd(const model::LearningRateScheduleConfig& schedule) {
  return testing::TrainerOptionsBuilder("lin", /*input_dim=*/2)
      .Layers({{2, model::Activation::kIdentity}})
      .Seed(7)
      .Sgd(kBaseRate)
      .Schedule(schedule)
      .Build();
}

std::unique_ptr<Trainer> MakeTrainer(TrainerOptions options) {
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(std::move(options));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? *std::move(trainer) : nullptr;
}

// docs/model.md's closed forms, written out here independently of
// model/schedule.cc.
double LinearRate(uint64_t k, double final_rate, uint64_t total) {
  const double lr = kBaseRate;
  return lr + (final_rate - lr) * static_cast<double>(std::min(k, total)) / total;
}

double CosineWithWarmupRate(uint64_t k, uint64_t warmup, uint64_t total, double final_rate) {
  const double lr = kBaseRate;
  if (k < warmup) return lr * static_cast<double>(k + 1) / warmup;
  const uint64_t j = k - warmup;
  return final_rate + (lr - final_rate) *
                          (1 + std::cos(kPi * static_cast<double>(std::min(j, total)) / total)) / 2;
}

// Step k's submission: distinct inputs and deltas.
Submission StepInput(int k, uint64_t version) {
  Submission s;
  s.inputs = CoreMatrix(1, 2, {0.5f + 0.25f * k, -1.0f + 0.5f * k});
  s.deltas = CoreMatrix(1, 2, {1.0f - 0.125f * k, 0.75f});
  s.version = version;
  return s;
}

// Applies `steps` steps and checks each against hand-computed SGD at
// rate(k), and the snapshot's rate against rate(k + 1).
void ExpectScheduledSgd(Trainer& trainer, int steps, const std::function<double(uint64_t)>& rate) {
  std::vector<float> expected = trainer.snapshot()->parameters;
  EXPECT_NEAR(trainer.snapshot()->learning_rate, rate(0), 1e-12);
  for (int k = 0; k < steps; ++k) {
    const Submission s = StepInput(k, trainer.snapshot()->version);
    const float lr = static_cast<float>(rate(static_cast<uint64_t>(k)));
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 2; ++j) expected[2 * i + j] -= lr * (s.deltas(0, i) * s.inputs(0, j));
      expected[4 + i] -= lr * s.deltas(0, i);
    }
    absl::StatusOr<SubmitResult> result = SubmitAndWait(trainer, s);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->stepped);
    std::shared_ptr<const Snapshot> snapshot = trainer.snapshot();
    ASSERT_EQ(snapshot->parameters.size(), expected.size());
    for (size_t p = 0; p < expected.size(); ++p) {
      EXPECT_FLOAT_EQ(snapshot->parameters[p], expected[p]) << "step " << k << ", parameter " << p;
    }
    EXPECT_EQ(snapshot->optimizer_steps, static_cast<uint64_t>(k + 1));
    EXPECT_NEAR(snapshot->learning_rate, rate(static_cast<uint64_t>(k + 1)), 1e-12)
        << "after step " << k;
  }
}

TEST(TrainerSchedule, LinearScheduleStepsAtLrOfK) {
  model::LearningRateScheduleConfig schedule;
  schedule.kind = Kind::kLinear;
  schedule.total_steps = 4;
  schedule.final_learning_rate = 0.02f;
  auto trainer = MakeTrainer(LinearSgd(schedule));
  ASSERT_NE(trainer, nullptr);
  // Past T = 4 the rate holds at final.
  ExpectScheduledSgd(*trainer, 6,
                     [](uint64_t k) { return LinearRate(k, static_cast<double>(0.02f), 4); });
}

TEST(TrainerSchedule, CosineWithWarmupStepsAtLrOfK) {
  model::LearningRateScheduleConfig schedule;
  schedule.kind = Kind::kCosine;
  schedule.warmup_steps = 3;
  schedule.total_steps = 4;
  schedule.final_learning_rate = 0.01f;
  auto trainer = MakeTrainer(LinearSgd(schedule));
  ASSERT_NE(trainer, nullptr);
  ExpectScheduledSgd(*trainer, 9, [](uint64_t k) {
    return CosineWithWarmupRate(k, 3, 4, static_cast<double>(0.01f));
  });
}

TEST(TrainerSchedule, ConstantScheduleReportsTheConfiguredRate) {
  auto trainer = MakeTrainer(LinearSgd({}));
  ASSERT_NE(trainer, nullptr);
  ExpectScheduledSgd(*trainer, 2, [](uint64_t) { return static_cast<double>(kBaseRate); });
}

// An import makes a version, not an optimizer step: the schedule goes on
// from k (no second warmup), and the step after it uses lr(k).
TEST(TrainerSchedule, ImportDoesNotResetTheScheduleStep) {
  model::LearningRateScheduleConfig schedule;
  schedule.kind = Kind::kCosine;
  schedule.warmup_steps = 3;
  schedule.total_steps = 4;
  auto rate = [](uint64_t k) { return CosineWithWarmupRate(k, 3, 4, 0.0); };
  auto trainer = MakeTrainer(LinearSgd(schedule));
  ASSERT_NE(trainer, nullptr);
  for (int k = 0; k < 4; ++k) {
    ASSERT_TRUE(SubmitAndWait(*trainer, StepInput(k, trainer->snapshot()->version)).ok());
  }
  const std::vector<float> imported = {1.0f, 0.0f, 0.0f, 1.0f, 0.5f, -0.5f};
  absl::StatusOr<SubmitResult> result = ImportAndWait(*trainer, imported);
  ASSERT_TRUE(result.ok()) << result.status();
  std::shared_ptr<const Snapshot> snapshot = trainer->snapshot();
  EXPECT_EQ(snapshot->version, 5u);
  EXPECT_EQ(snapshot->optimizer_steps, 4u);
  EXPECT_EQ(snapshot->parameters, imported);
  EXPECT_NEAR(snapshot->learning_rate, rate(4), 1e-12);
  // The next step, from the imported parameters, at lr(4).
  const Submission s = StepInput(4, snapshot->version);
  const float lr = static_cast<float>(rate(4));
  std::vector<float> expected = imported;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) expected[2 * i + j] -= lr * (s.deltas(0, i) * s.inputs(0, j));
    expected[4 + i] -= lr * s.deltas(0, i);
  }
  ASSERT_TRUE(SubmitAndWait(*trainer, s).ok());
  for (size_t p = 0; p < expected.size(); ++p) {
    EXPECT_FLOAT_EQ(trainer->snapshot()->parameters[p], expected[p]) << "parameter " << p;
  }
  EXPECT_NEAR(trainer->snapshot()->learning_rate, rate(5), 1e-12);
}

// An import resets Adam's state as a new optimizer's (t = 1 again): the
// step after it equals the first step of a fresh Trainer started from the
// imported parameters at the same rate.
TEST(TrainerSchedule, ImportResetsAdamStateButNotTheScheduleStep) {
  model::LearningRateScheduleConfig exponential;
  exponential.kind = Kind::kExponential;
  exponential.gamma = 0.5f;
  auto scheduled = MakeTrainer(testing::TrainerOptionsBuilder("lin", 2)
                                   .Layers({{2, model::Activation::kIdentity}})
                                   .Adam(kBaseRate)
                                   .Schedule(exponential)
                                   .Build());
  ASSERT_NE(scheduled, nullptr);
  for (int k = 0; k < 2; ++k) {
    ASSERT_TRUE(SubmitAndWait(*scheduled, StepInput(k, scheduled->snapshot()->version)).ok());
  }
  auto fresh = MakeTrainer(testing::TrainerOptionsBuilder("lin", 2)
                               .Layers({{2, model::Activation::kIdentity}})
                               .Adam(kBaseRate * 0.25f)  // lr(2) = lr·0.5²
                               .Build());
  ASSERT_NE(fresh, nullptr);
  const std::vector<float> imported = {0.25f, -0.5f, 1.0f, 0.75f, 0.0f, 0.125f};
  ASSERT_TRUE(ImportAndWait(*scheduled, imported).ok());
  ASSERT_TRUE(ImportAndWait(*fresh, imported).ok());
  EXPECT_EQ(scheduled->snapshot()->learning_rate, fresh->snapshot()->learning_rate);
  ASSERT_TRUE(SubmitAndWait(*scheduled, StepInput(5, scheduled->snapshot()->version)).ok());
  ASSERT_TRUE(SubmitAndWait(*fresh, StepInput(5, fresh->snapshot()->version)).ok());
  EXPECT_EQ(scheduled->snapshot()->parameters, fresh->snapshot()->parameters);
  EXPECT_EQ(scheduled->snapshot()->optimizer_steps, 3u);
}

TEST(TrainerSchedule, LearningRateGaugeFollowsTheSchedule) {
  auto metrics = ServerMetrics::Create({/*listen_address=*/""});
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  model::LearningRateScheduleConfig schedule;
  schedule.kind = Kind::kLinear;
  schedule.total_steps = 4;
  TrainerOptions options = LinearSgd(schedule);
  options.metrics = (*metrics)->ForModel("lin");
  auto trainer = MakeTrainer(options);
  ASSERT_NE(trainer, nullptr);
  const std::map<std::string, std::string> lin = {{"model", "lin"}};
  EXPECT_NEAR(Sample((*metrics)->Scrape(), "deltaserve_learning_rate", lin).value_or(-1),
              LinearRate(0, 0.0, 4), 1e-9);
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(SubmitAndWait(*trainer, StepInput(k, trainer->snapshot()->version)).ok());
  }
  EXPECT_NEAR(Sample((*metrics)->Scrape(), "deltaserve_learning_rate", lin).value_or(-1),
              LinearRate(3, 0.0, 4), 1e-9);
}

}  // namespace
}  // namespace deltaserve::server
