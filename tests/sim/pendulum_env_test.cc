// Specification of the Pendulum environment (sim/envs/pendulum_env.h):
// gymnasium Pendulum-v1's dynamics and reward, checked against values worked
// out by hand from the update rule
//   r = −(angle_normalize(θ)² + 0.1·θ̇² + 0.001·u²),
//   θ̇' = clip(θ̇ + (15·sin θ + 3·u)·0.05, −8, 8),  θ' = θ + 0.05·θ̇'.
// tests/python/test_pendulum.py checks the numpy environment against the
// same numbers.
#include "deltaserve/sim/envs/pendulum_env.h"

#include <cmath>

#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

constexpr double kTolerance = 1e-12;

TEST(Pendulum, ThreeStepsFromAFixedStateMatchTheHandComputedValues) {
  Pendulum env(/*seed=*/1);
  env.SetState(/*theta=*/0.5, /*theta_dot=*/1.0);
  // Step 1: r = −(0.25 + 0.1 + 0.001·2.25) = −0.35225;
  // θ̇' = 1 + (15·0.479425538604203 + 4.5)·0.05 = 1.5845691539531521;
  // θ' = 0.5 + 0.05·θ̇' = 0.5792284576976576.
  Pendulum::StepResult step = env.Step(1.5);
  EXPECT_FLOAT_EQ(step.reward, -0.35225f);
  EXPECT_NEAR(env.theta_dot(), 1.5845691539531521, kTolerance);
  EXPECT_NEAR(env.theta(), 0.5792284576976576, kTolerance);
  const Pendulum::Observation obs = env.observation();
  EXPECT_FLOAT_EQ(obs[0], 0.8368852245594731f);  // cos θ'
  EXPECT_FLOAT_EQ(obs[1], 0.5473784074240052f);  // sin θ'
  EXPECT_FLOAT_EQ(obs[2], 1.5845691539531521f);
  // Step 2: r = −(0.57922846² + 0.1·1.58456915² + 0.00225) = −0.588841546572788.
  step = env.Step(1.5);
  EXPECT_FLOAT_EQ(step.reward, -0.588841546572788f);
  EXPECT_NEAR(env.theta_dot(), 2.220102959521156, kTolerance);
  EXPECT_NEAR(env.theta(), 0.6902336056737155, kTolerance);
  step = env.Step(1.5);
  EXPECT_FLOAT_EQ(step.reward, -0.9715581454887982f);
  EXPECT_NEAR(env.theta_dot(), 2.922640958743781, kTolerance);
  EXPECT_NEAR(env.theta(), 0.8363656536109045, kTolerance);
  EXPECT_EQ(env.steps(), 3);
}

TEST(Pendulum, TorqueIsClippedToTwoInTheDynamicsAndTheReward) {
  Pendulum env(/*seed=*/1);
  env.SetState(/*theta=*/0.0, /*theta_dot=*/0.0);
  // u = 5 acts as u = 2: θ̇' = 3·2·0.05 = 0.3, r = −0.001·4.
  Pendulum::StepResult step = env.Step(5.0);
  EXPECT_FLOAT_EQ(step.reward, -0.004f);
  EXPECT_NEAR(env.theta_dot(), 0.3, kTolerance);
  EXPECT_NEAR(env.theta(), 0.015, kTolerance);
  env.SetState(0.0, 0.0);
  step = env.Step(-100.0);
  EXPECT_FLOAT_EQ(step.reward, -0.004f);
  EXPECT_NEAR(env.theta_dot(), -0.3, kTolerance);
}

TEST(Pendulum, SpeedIsClippedToEightBeforeTheAngleMoves) {
  Pendulum env(/*seed=*/1);
  env.SetState(/*theta=*/M_PI / 2, /*theta_dot=*/7.9);
  // 7.9 + (15·1 + 6)·0.05 = 8.95 → 8; θ' = π/2 + 8·0.05.
  env.Step(2.0);
  EXPECT_EQ(env.theta_dot(), 8.0);
  EXPECT_NEAR(env.theta(), M_PI / 2 + 0.4, kTolerance);
  env.SetState(-M_PI / 2, -7.9);
  env.Step(-2.0);
  EXPECT_EQ(env.theta_dot(), -8.0);
}

TEST(Pendulum, RewardUsesTheAngleNormalisedToMinusPiPi) {
  EXPECT_NEAR(AngleNormalize(2 * M_PI + 0.1), 0.1, kTolerance);
  EXPECT_NEAR(AngleNormalize(-3.5), 2.7831853071795862, kTolerance);  // −3.5 + 2π
  EXPECT_NEAR(AngleNormalize(M_PI), -M_PI, kTolerance);               // [−π, π)
  EXPECT_NEAR(AngleNormalize(-7 * M_PI / 2), M_PI / 2, kTolerance);
  Pendulum env(/*seed=*/1);
  env.SetState(/*theta=*/-3.5, /*theta_dot=*/0.0);
  EXPECT_FLOAT_EQ(env.Step(0.0).reward,
                  static_cast<float>(-(2.7831853071795862 * 2.7831853071795862)));
  env.SetState(/*theta=*/4 * M_PI + 0.1, /*theta_dot=*/0.0);
  EXPECT_FLOAT_EQ(env.Step(0.0).reward, -0.01f);
}

TEST(Pendulum, EpisodeIsTruncatedAtTheTwoHundredthStepAndResetRestartsIt) {
  Pendulum env(/*seed=*/4);
  for (int i = 1; i < Pendulum::kMaxSteps; ++i) ASSERT_FALSE(env.Step(0.0).truncated) << i;
  EXPECT_TRUE(env.Step(0.0).truncated);
  EXPECT_EQ(env.steps(), 200);
  env.Reset();
  EXPECT_EQ(env.steps(), 0);
  EXPECT_FALSE(env.Step(0.0).truncated);
}

TEST(Pendulum, ResetDrawsAngleWithinPiAndSpeedWithinOne) {
  Pendulum env(/*seed=*/5);
  double min_theta = 0, max_theta = 0;
  for (int i = 0; i < 1000; ++i) {
    const Pendulum::Observation obs = env.Reset();
    ASSERT_GE(env.theta(), -M_PI);
    ASSERT_LE(env.theta(), M_PI);
    ASSERT_GE(env.theta_dot(), -1.0);
    ASSERT_LE(env.theta_dot(), 1.0);
    EXPECT_FLOAT_EQ(obs[0], static_cast<float>(std::cos(env.theta())));
    EXPECT_FLOAT_EQ(obs[1], static_cast<float>(std::sin(env.theta())));
    min_theta = std::min(min_theta, env.theta());
    max_theta = std::max(max_theta, env.theta());
  }
  // The whole circle is drawn, not a neighbourhood of the bottom or the top.
  EXPECT_LT(min_theta, -3.0);
  EXPECT_GT(max_theta, 3.0);
}

TEST(Pendulum, NanTorqueActsAsZero) {
  Pendulum env(/*seed=*/1);
  env.SetState(0.5, 1.0);
  const float reward = env.Step(std::nan("")).reward;
  EXPECT_FLOAT_EQ(reward, -0.35f);
  EXPECT_NEAR(env.theta_dot(), 1.0 + 15 * 0.479425538604203 * 0.05, kTolerance);
}

}  // namespace
}  // namespace deltaserve::sim
