// Optimizer: hand-computed steps, clipping, and errors that leave state alone.
// (Agreement with torch over many steps is in golden_test.cc.)
#include "deltaserve/model/optimizer.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::model {
namespace {

using ::testing::HasSubstr;
using Kind = OptimizerConfig::Kind;

std::unique_ptr<Optimizer> Make(const OptimizerConfig& config, size_t n) {
  auto optimizer = Optimizer::Create(config, n);
  EXPECT_TRUE(optimizer.ok()) << optimizer.status();
  return *std::move(optimizer);
}

TEST(Optimizer, SgdWithWeightDecayIsGradientPlusL2) {
  OptimizerConfig config;
  config.learning_rate = 0.5f;
  config.weight_decay = 0.1f;
  auto sgd = Make(config, 2);
  std::vector<float> p = {1.0f, -2.0f};
  std::vector<float> g = {0.2f, 0.4f};
  auto norm = sgd->Step(absl::MakeSpan(p), absl::MakeSpan(g));
  ASSERT_TRUE(norm.ok());
  EXPECT_NEAR(*norm, std::sqrt(0.2 * 0.2 + 0.4 * 0.4), 1e-6);
  EXPECT_FLOAT_EQ(p[0], 1.0f - 0.5f * (0.2f + 0.1f * 1.0f));
  EXPECT_FLOAT_EQ(p[1], -2.0f - 0.5f * (0.4f - 0.1f * 2.0f));
  EXPECT_EQ(sgd->step_count(), 1);
}

TEST(Optimizer, MomentumBufferStartsAtFirstGradient) {
  OptimizerConfig config;
  config.kind = Kind::kMomentum;
  config.learning_rate = 1.0f;
  config.momentum = 0.5f;
  auto momentum = Make(config, 1);
  std::vector<float> p = {0.0f};
  std::vector<float> g = {1.0f};
  ASSERT_TRUE(momentum->Step(absl::MakeSpan(p), absl::MakeSpan(g)).ok());
  EXPECT_FLOAT_EQ(p[0], -1.0f);  // b = g
  g = {1.0f};
  ASSERT_TRUE(momentum->Step(absl::MakeSpan(p), absl::MakeSpan(g)).ok());
  EXPECT_FLOAT_EQ(p[0], -2.5f);  // b = 0.5·1 + 1
}

TEST(Optimizer, AdamFirstStepMovesByLearningRateTimesSign) {
  OptimizerConfig config;
  config.kind = Kind::kAdam;
  config.learning_rate = 0.01f;
  auto adam = Make(config, 2);
  std::vector<float> p = {1.0f, 1.0f};
  std::vector<float> g = {3.0f, -0.001f};
  ASSERT_TRUE(adam->Step(absl::MakeSpan(p), absl::MakeSpan(g)).ok());
  EXPECT_NEAR(p[0], 0.99f, 1e-6);
  EXPECT_NEAR(p[1], 1.01f, 1e-5);
}

TEST(Optimizer, ClippingScalesLikeTorchAndReturnsPreClipNorm) {
  OptimizerConfig config;
  config.learning_rate = 1.0f;
  config.clip_norm = 1.0f;
  auto sgd = Make(config, 2);
  std::vector<float> p = {0.0f, 0.0f};
  std::vector<float> g = {3.0f, 4.0f};
  auto norm = sgd->Step(absl::MakeSpan(p), absl::MakeSpan(g));
  ASSERT_TRUE(norm.ok());
  EXPECT_DOUBLE_EQ(*norm, 5.0);
  const float coef = static_cast<float>(1.0 / (5.0 + 1e-6));
  EXPECT_FLOAT_EQ(g[0], 3.0f * coef);
  EXPECT_FLOAT_EQ(p[1], -4.0f * coef);
  // A gradient already inside the ball is left alone.
  std::vector<float> small = {0.3f, 0.4f};
  ASSERT_TRUE(sgd->Step(absl::MakeSpan(p), absl::MakeSpan(small)).ok());
  EXPECT_FLOAT_EQ(small[0], 0.3f);
}

// Step with the caller's GlobalNorm is the same step, bit for bit, for every
// kind, with clipping on and used (norm ≈ 3.9 > 0.5) — over several steps, so the
// optimizer state follows the same path too.
TEST(Optimizer, StepWithKnownNormIsTheSameStep) {
  for (Kind kind : {Kind::kSgd, Kind::kMomentum, Kind::kAdam, Kind::kAdamW}) {
    OptimizerConfig config;
    config.kind = kind;
    config.learning_rate = 0.1f;
    config.weight_decay = 0.01f;
    config.clip_norm = 0.5f;
    if (kind == Kind::kMomentum) config.momentum = 0.9f;
    auto plain = Make(config, 3000);
    auto known = Make(config, 3000);
    std::vector<float> p(3000), q(3000);
    for (size_t i = 0; i < p.size(); ++i) p[i] = q[i] = std::sin(static_cast<float>(i));
    for (int step = 1; step <= 3; ++step) {
      std::vector<float> g(p.size()), h;
      for (size_t i = 0; i < g.size(); ++i) g[i] = std::cos(static_cast<float>(i * step)) * 0.1f;
      h = g;
      const double norm = GlobalNorm(h);
      auto a = plain->Step(absl::MakeSpan(p), absl::MakeSpan(g));
      auto b = known->Step(absl::MakeSpan(q), absl::MakeSpan(h), norm);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(*a, *b);
      ASSERT_EQ(p, q) << "kind " << static_cast<int>(kind) << ", step " << step;
      EXPECT_EQ(g, h);
    }
  }
  // The known norm is checked like a computed one, and sizes still are.
  auto sgd = Make(OptimizerConfig{}, 2);
  std::vector<float> p = {1.0f, 2.0f}, g = {1.0f, 1.0f}, short_grad = {1.0f};
  EXPECT_EQ(sgd->Step(absl::MakeSpan(p), absl::MakeSpan(g), std::nan("")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sgd->Step(absl::MakeSpan(p), absl::MakeSpan(short_grad), 1.0).status().message(),
              HasSubstr("expected 2 parameters"));
  EXPECT_EQ(p, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(sgd->step_count(), 0);
}

TEST(OptimizerErrors, CreateRejectsBadConfigAndEmptyModel) {
  OptimizerConfig config;
  config.learning_rate = -1;
  EXPECT_EQ(Optimizer::Create(config, 4).status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = Optimizer::Create(OptimizerConfig{}, 0);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("parameter_count: expected > 0"));
}

TEST(OptimizerErrors, BadStepLeavesParametersAndStateUnchanged) {
  OptimizerConfig config;
  config.kind = Kind::kAdam;
  auto adam = Make(config, 3);
  std::vector<float> p = {1.0f, 2.0f, 3.0f};
  std::vector<float> short_grad = {1.0f, 1.0f};
  auto wrong_size = adam->Step(absl::MakeSpan(p), absl::MakeSpan(short_grad));
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_size.status().message(), HasSubstr("expected 3 parameters"));
  std::vector<float> nan_grad = {1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  auto non_finite = adam->Step(absl::MakeSpan(p), absl::MakeSpan(nan_grad));
  EXPECT_EQ(non_finite.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p, (std::vector<float>{1.0f, 2.0f, 3.0f}));
  EXPECT_EQ(adam->step_count(), 0);
}

// Each step k uses the schedule's lr(k): plain SGD moves by exactly
// float(lr(k))·g, and learning_rate() reports the rate of the next step,
// continuing after Restore.
TEST(OptimizerSchedule, SgdStepUsesTheScheduledRateOfItsStep) {
  OptimizerConfig config;
  config.learning_rate = 1.0f;
  config.schedule.kind = LearningRateScheduleConfig::Kind::kLinear;
  config.schedule.warmup_steps = 2;
  config.schedule.total_steps = 4;
  config.schedule.final_learning_rate = 0.5f;
  auto sgd = Make(config, 1);
  const float expected_rates[] = {0.5f, 1.0f, 1.0f, 0.875f, 0.75f, 0.625f, 0.5f, 0.5f};
  std::vector<float> p = {0.0f};
  float expected_p = 0.0f;
  for (float rate : expected_rates) {
    EXPECT_EQ(sgd->learning_rate(), rate) << "step " << sgd->step_count();
    std::vector<float> g = {1.0f};
    ASSERT_TRUE(sgd->Step(absl::MakeSpan(p), absl::MakeSpan(g)).ok());
    expected_p -= rate;
    EXPECT_EQ(p[0], expected_p);
  }
  ASSERT_TRUE(sgd->Restore(3, 3, {}).ok());
  EXPECT_EQ(sgd->learning_rate(), 0.875);
}

// torch's AdamW multiplies p by (1 − lr·λ) with the scheduler's lr; the
// first step of a scheduled AdamW thus equals the first step of a constant
// AdamW at that rate, bit for bit, and differs from one at the base rate.
TEST(OptimizerSchedule, AdamWDecoupledDecayUsesTheScheduledRate) {
  OptimizerConfig scheduled;
  scheduled.kind = Kind::kAdamW;
  scheduled.learning_rate = 0.1f;
  scheduled.weight_decay = 0.5f;
  scheduled.schedule.warmup_steps = 4;  // lr(0) = 0.025
  OptimizerConfig constant = scheduled;
  constant.schedule = {};
  constant.learning_rate = 0.025f;
  auto a = Make(scheduled, 3);
  auto b = Make(constant, 3);
  std::vector<float> pa = {1.0f, -2.0f, 0.5f}, pb = pa;
  std::vector<float> ga = {0.3f, 0.0f, -0.1f}, gb = ga;
  ASSERT_TRUE(a->Step(absl::MakeSpan(pa), absl::MakeSpan(ga)).ok());
  ASSERT_TRUE(b->Step(absl::MakeSpan(pb), absl::MakeSpan(gb)).ok());
  EXPECT_EQ(pa, pb);
  // The zero-gradient element moves by the decay alone: p·(1 − lr(0)·λ).
  EXPECT_FLOAT_EQ(pa[1], -2.0f * (1.0f - 0.025f * 0.5f));
}

TEST(OptimizerSchedule, ConstantScheduleReportsTheConfiguredRate) {
  OptimizerConfig config;
  config.kind = Kind::kAdam;
  config.learning_rate = 0.003f;
  auto adam = Make(config, 2);
  EXPECT_EQ(adam->learning_rate(), static_cast<double>(0.003f));
}

TEST(OptimizerSchedule, InvalidScheduleIsRejectedAtCreate) {
  OptimizerConfig config;
  config.schedule.kind = LearningRateScheduleConfig::Kind::kCosine;
  auto optimizer = Optimizer::Create(config, 4);
  EXPECT_EQ(optimizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(optimizer.status().message(), HasSubstr("optimizer.schedule.total_steps"));
}

// A schedule whose rate has overflowed (gamma > 1) refuses the step and
// changes nothing.
TEST(OptimizerSchedule, NonFiniteRateLeavesEverythingUnchanged) {
  OptimizerConfig config;
  config.kind = Kind::kMomentum;
  config.momentum = 0.9f;
  config.schedule.kind = LearningRateScheduleConfig::Kind::kExponential;
  config.schedule.gamma = 1e30f;
  auto momentum = Make(config, 2);
  ASSERT_TRUE(momentum->Restore(20, 20, {{0.5f, 0.5f}}).ok());
  std::vector<float> p = {1.0f, 2.0f};
  std::vector<float> g = {0.1f, 0.2f};
  auto status = momentum->Step(absl::MakeSpan(p), absl::MakeSpan(g)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not finite"));
  EXPECT_EQ(p, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(momentum->step_count(), 20);
  EXPECT_EQ(momentum->state()[0][0], 0.5f);
}

// ResetState gives what a new Adam would do (t restarts at 1, moments 0)
// while the schedule goes on at step_count().
TEST(OptimizerSchedule, ResetStateKeepsTheScheduleStep) {
  OptimizerConfig config;
  config.kind = Kind::kAdam;
  config.learning_rate = 0.1f;
  config.schedule.kind = LearningRateScheduleConfig::Kind::kExponential;
  config.schedule.gamma = 0.5f;
  auto adam = Make(config, 2);
  std::vector<float> p = {1.0f, 2.0f};
  for (int i = 0; i < 3; ++i) {
    std::vector<float> g = {0.1f, -0.2f};
    ASSERT_TRUE(adam->Step(absl::MakeSpan(p), absl::MakeSpan(g)).ok());
  }
  adam->ResetState();
  EXPECT_EQ(adam->step_count(), 3);
  EXPECT_EQ(adam->state_step_count(), 0);
  EXPECT_EQ(adam->state()[0][0], 0.0f);
  EXPECT_EQ(adam->state()[1][1], 0.0f);
  EXPECT_EQ(adam->learning_rate(), static_cast<double>(0.1f * 0.125f));
  // The next step equals the first step of a fresh constant Adam at lr(3).
  OptimizerConfig fresh_config = config;
  fresh_config.schedule = {};
  fresh_config.learning_rate = 0.1f * 0.125f;
  auto fresh = Make(fresh_config, 2);
  std::vector<float> q = p;
  std::vector<float> g = {0.3f, 0.4f}, h = g;
  ASSERT_TRUE(adam->Step(absl::MakeSpan(p), absl::MakeSpan(g)).ok());
  ASSERT_TRUE(fresh->Step(absl::MakeSpan(q), absl::MakeSpan(h)).ok());
  EXPECT_EQ(p, q);
  EXPECT_EQ(adam->step_count(), 4);
  EXPECT_EQ(adam->state_step_count(), 1);
}

TEST(OptimizerSchedule, RestoreRefusesAStateStepCountAboveTheStepCount) {
  auto sgd = Make(OptimizerConfig{}, 1);
  EXPECT_EQ(sgd->Restore(2, 3, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sgd->step_count(), 0);
}

}  // namespace
}  // namespace deltaserve::model
