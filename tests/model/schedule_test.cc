// LearningRateSchedule: hand-computed rates (warmup, every kind, holding at
// final after T) and the validation errors. Agreement with torch's schedulers
// is in golden_test.cc.
#include "deltaserve/model/schedule.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::model {
namespace {

using ::testing::HasSubstr;
using Kind = LearningRateScheduleConfig::Kind;

LearningRateSchedule Make(const LearningRateScheduleConfig& config, double lr) {
  auto schedule = LearningRateSchedule::Create(config, lr);
  EXPECT_TRUE(schedule.ok()) << schedule.status();
  return *std::move(schedule);
}

TEST(LearningRateSchedule, ConstantIsTheBaseRateBitForBit) {
  const double lr = static_cast<double>(0.01f);
  const LearningRateSchedule schedule = Make({}, lr);
  for (uint64_t k : {0ull, 1ull, 1000ull, ~0ull}) EXPECT_EQ(schedule.LearningRateAt(k), lr);
}

TEST(LearningRateSchedule, WarmupRisesLinearlyToTheBaseRate) {
  LearningRateScheduleConfig config;
  config.warmup_steps = 4;
  const LearningRateSchedule schedule = Make(config, 0.8);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(0), 0.2);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(1), 0.4);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(2), 0.6);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(3), 0.8);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(4), 0.8);
}

TEST(LearningRateSchedule, LinearAfterWarmupReachesFinalAtTAndHolds) {
  LearningRateScheduleConfig config;
  config.kind = Kind::kLinear;
  config.warmup_steps = 2;
  config.total_steps = 4;
  config.final_learning_rate = 0.25f;
  const LearningRateSchedule schedule = Make(config, 1.0);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(0), 0.5);     // warmup 1/2
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(1), 1.0);     // warmup 2/2
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(2), 1.0);     // j = 0
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(3), 0.8125);  // 1 − 0.75·1/4
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(4), 0.625);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(6), 0.25);  // j = T
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(7), 0.25);  // held
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(1000000), 0.25);
}

TEST(LearningRateSchedule, CosineHoldsAtFinalInsteadOfClimbingBack) {
  LearningRateScheduleConfig config;
  config.kind = Kind::kCosine;
  config.total_steps = 4;
  config.final_learning_rate = 0.5f;
  const LearningRateSchedule schedule = Make(config, 1.5);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(0), 1.5);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(2), 1.0);  // cos(π/2) = 0: the midpoint
  EXPECT_NEAR(schedule.LearningRateAt(1), 0.5 + (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(4), 0.5);
  // torch's CosineAnnealingLR would be back at 1.0 at j = 6 and 1.5 at 8.
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(6), 0.5);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(8), 0.5);
}

TEST(LearningRateSchedule, StepMultipliesByGammaEveryStepSize) {
  LearningRateScheduleConfig config;
  config.kind = Kind::kStep;
  config.warmup_steps = 1;
  config.step_size = 3;
  config.gamma = 0.5f;
  const LearningRateSchedule schedule = Make(config, 2.0);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(0), 2.0);  // warmup of one step
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(1), 2.0);  // j = 0
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(3), 2.0);  // j = 2
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(4), 1.0);  // j = 3
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(7), 0.5);  // j = 6
}

TEST(LearningRateSchedule, ExponentialIsGammaToTheJ) {
  LearningRateScheduleConfig config;
  config.kind = Kind::kExponential;
  config.gamma = 0.5f;
  const LearningRateSchedule schedule = Make(config, 3.0);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(0), 3.0);
  EXPECT_DOUBLE_EQ(schedule.LearningRateAt(3), 0.375);
  EXPECT_EQ(schedule.LearningRateAt(5000), 0.0);  // Underflows to 0, never NaN.
}

absl::Status Validate(Kind kind, uint64_t total_steps, uint64_t step_size, float gamma,
                      float final_lr) {
  LearningRateScheduleConfig config;
  config.kind = kind;
  config.total_steps = total_steps;
  config.step_size = step_size;
  config.gamma = gamma;
  config.final_learning_rate = final_lr;
  return LearningRateSchedule::Create(config, 0.1).status();
}

TEST(LearningRateScheduleErrors, EachInvalidFieldIsNamed) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    absl::Status status;
    const char* field;
  };
  const Case cases[] = {
      {Validate(Kind::kLinear, 0, 0, 0, 0), "optimizer.schedule.total_steps"},
      {Validate(Kind::kCosine, 0, 0, 0, 0), "optimizer.schedule.total_steps"},
      {Validate(Kind::kStep, 0, 0, 0.5f, 0), "optimizer.schedule.step_size"},
      {Validate(Kind::kStep, 0, 2, 0.0f, 0), "optimizer.schedule.gamma"},
      {Validate(Kind::kStep, 0, 2, -1.0f, 0), "optimizer.schedule.gamma"},
      {Validate(Kind::kExponential, 0, 0, 0.0f, 0), "optimizer.schedule.gamma"},
      {Validate(Kind::kExponential, 0, 0, nan, 0), "optimizer.schedule.gamma"},
      {Validate(Kind::kConstant, 0, 0, 0, -0.1f), "optimizer.schedule.final_learning_rate"},
      {Validate(Kind::kCosine, 5, 0, 0, nan), "optimizer.schedule.final_learning_rate"},
      {Validate(static_cast<Kind>(17), 0, 0, 0, 0), "optimizer.schedule.kind"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(c.status.message(), HasSubstr(c.field));
  }
  // Fields a kind does not read are not checked.
  EXPECT_TRUE(Validate(Kind::kConstant, 0, 0, 0, 0).ok());
  EXPECT_TRUE(Validate(Kind::kLinear, 3, 0, 0, 0).ok());
  EXPECT_TRUE(Validate(Kind::kExponential, 0, 0, 1.0f, 0).ok());
  EXPECT_EQ(LearningRateSchedule::Create({}, 0.0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::model
