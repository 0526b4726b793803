// Specifications of the example simulators' pure parts: CartPole physics,
// the REINFORCE δ, SPSA and the black-box task. No server involved.
#include <cmath>
#include <random>
#include <vector>

#include "deltaserve/sim/algorithms/episode_buffer.h"
#include "deltaserve/sim/algorithms/gaussian_policy.h"
#include "deltaserve/sim/algorithms/policy_gradient.h"
#include "deltaserve/sim/algorithms/reinforce.h"
#include "deltaserve/sim/algorithms/spsa.h"
#include "deltaserve/sim/envs/cartpole_env.h"
#include "deltaserve/sim/envs/linear_target_task.h"
#include "deltaserve/sim/envs/point_mass_env.h"
#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

TEST(CartPole, ResetDrawsEveryComponentWithinFiveHundredths) {
  CartPole env(/*seed=*/3);
  for (int i = 0; i < 100; ++i) {
    for (float v : env.Reset()) {
      EXPECT_GE(v, -0.05f);
      EXPECT_LE(v, 0.05f);
    }
  }
}

TEST(CartPole, PushingRightAcceleratesTheCartRightAndTipsThePoleLeft) {
  CartPole env(/*seed=*/1);
  const CartPole::Observation before = env.observation();
  const CartPole::StepResult step = env.Step(1);
  const CartPole::Observation after = env.observation();
  EXPECT_EQ(step.reward, 1.0f);
  EXPECT_GT(after[1], before[1]);                            // ẋ grows
  EXPECT_LT(after[3], before[3]);                            // θ̇ falls
  EXPECT_FLOAT_EQ(after[0], before[0] + 0.02f * before[1]);  // Euler on x
}

TEST(CartPole, AlwaysPushingOneWayTerminatesLongBeforeTheCap) {
  CartPole env(/*seed=*/2);
  int steps = 0;
  for (bool done = false; !done; ++steps) done = env.Step(1).done();
  EXPECT_LT(steps, 100);
  EXPECT_EQ(env.steps(), steps);
}

TEST(CartPole, EpisodesAreTruncatedAtFiveHundredSteps) {
  // A PD controller on the pole angle balances it for the whole episode.
  CartPole env(/*seed=*/4);
  CartPole::StepResult step;
  int steps = 0;
  do {
    const CartPole::Observation o = env.observation();
    step = env.Step(o[2] + 0.5f * o[3] + 0.01f * o[0] + 0.1f * o[1] > 0 ? 1 : 0);
    ++steps;
  } while (!step.done());
  EXPECT_TRUE(step.truncated);
  EXPECT_FALSE(step.terminated);
  EXPECT_EQ(steps, CartPole::kMaxSteps);
}

TEST(PolicyGradient, SoftmaxIsStableAndNormalised) {
  std::vector<float> probs(3);
  Softmax(std::vector<float>{1000.0f, 1000.0f, -1000.0f}, absl::MakeSpan(probs));
  EXPECT_FLOAT_EQ(probs[0], 0.5f);
  EXPECT_FLOAT_EQ(probs[1], 0.5f);
  EXPECT_FLOAT_EQ(probs[2], 0.0f);
}

TEST(PolicyGradient, SampleCategoricalFollowsTheSoftmax) {
  std::mt19937_64 rng(5);
  const std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = (0.25, 0.75)
  int ones = 0;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) ones += SampleCategorical(logits, rng);
  EXPECT_NEAR(ones / static_cast<double>(kDraws), 0.75, 0.015);
}

TEST(PolicyGradient, ReturnsToGoAreDiscountedPerEpisode) {
  ReinforceOptions options;
  options.gamma = 0.5f;
  options.baseline = Baseline::kNone;
  const std::vector<float> rewards = {1, 1, 1, 2, 4};
  const std::vector<int> ends = {3, 5};
  const std::vector<float> g = ComputeAdvantages(rewards, ends, options);
  EXPECT_EQ(g, (std::vector<float>{1.75f, 1.5f, 1.0f, 4.0f, 4.0f}));
}

TEST(PolicyGradient, NormalisedAdvantagesHaveZeroMeanAndUnitVariance) {
  const std::vector<float> rewards = {1, 1, 1, 1, 1, 1, 1};
  const std::vector<int> ends = {4, 7};
  for (Baseline baseline : {Baseline::kBatchNormalised, Baseline::kTimestepMean}) {
    ReinforceOptions options;
    options.baseline = baseline;
    const std::vector<float> a = ComputeAdvantages(rewards, ends, options);
    double mean = 0, var = 0;
    for (float x : a) mean += x / a.size();
    for (float x : a) var += (x - mean) * (x - mean) / a.size();
    EXPECT_NEAR(mean, 0.0, 1e-5);
    EXPECT_NEAR(var, 1.0, 1e-3);
  }
}

// l(z) = −(1/N)·Σ_t A_t·log softmax(z_t)[a_t], the loss whose gradient δ is.
double ReinforceLoss(const model::Matrix& logits, const std::vector<int>& actions,
                     const std::vector<float>& advantages) {
  double loss = 0.0;
  for (int t = 0; t < logits.rows(); ++t) {
    std::vector<float> p(logits.cols());
    Softmax(absl::MakeConstSpan(logits.row(t).data(), logits.cols()), absl::MakeSpan(p));
    loss -= advantages[t] * std::log(p[actions[t]]);
  }
  return loss / logits.rows();
}

TEST(PolicyGradient, DeltaIsTheGradientOfTheReinforceLossWrtLogits) {
  std::mt19937_64 rng(9);
  std::normal_distribution<float> normal;
  EpisodeBuffer buffer(/*observation_dim=*/2, /*num_actions=*/3);
  std::vector<int> actions;
  std::vector<float> rewards;
  for (int t = 0; t < 7; ++t) {
    const std::vector<float> obs = {normal(rng), normal(rng)};
    const std::vector<float> z = {normal(rng), normal(rng), normal(rng)};
    actions.push_back(t % 3);
    rewards.push_back(1.0f + t % 2);
    buffer.Add(obs, z, actions.back(), rewards.back(), /*version=*/10 - t % 2);
    if (t == 3) buffer.EndEpisode();
  }
  buffer.EndEpisode();
  ReinforceOptions options;
  const PolicyGradientBatch batch = BuildReinforce(buffer, options);
  ASSERT_EQ(batch.deltas.rows(), 7);
  EXPECT_EQ(batch.version, 9u);  // the oldest version used
  const std::vector<float> advantages = ComputeAdvantages(rewards, {4, 7}, options);

  model::Matrix z = batch.acted;
  constexpr double kH = 1e-3;
  for (int t = 0; t < z.rows(); ++t) {
    for (int a = 0; a < z.cols(); ++a) {
      const float saved = z(t, a);
      z(t, a) = saved + kH;
      const double up = ReinforceLoss(z, actions, advantages);
      z(t, a) = saved - kH;
      const double down = ReinforceLoss(z, actions, advantages);
      z(t, a) = saved;
      EXPECT_NEAR(batch.deltas(t, a), (up - down) / (2 * kH), 2e-4) << "t=" << t << " a=" << a;
    }
  }
}

TEST(PolicyGradient, AppendKeepsEpisodeBoundaries) {
  EpisodeBuffer a(1, 2), b(1, 2);
  const std::vector<float> obs = {0}, z = {0, 0};
  a.Add(obs, z, 0, 1, 3);
  a.EndEpisode();
  b.Add(obs, z, 1, 1, 2);
  b.Add(obs, z, 1, 1, 2);
  b.EndEpisode();
  b.Add(obs, z, 1, 1, 2);  // unclosed: not appended
  a.Append(b);
  EXPECT_EQ(a.episodes(), 2);
  EXPECT_EQ(a.rows(), 3);
  EXPECT_EQ(BuildReinforce(a, {}).version, 2u);
}

TEST(PolicyGradient, ContinuousActionsAreKeptPerStep) {
  EpisodeBuffer buffer(/*observation_dim=*/1, /*output_dim=*/1, /*action_dim=*/2);
  const std::vector<float> obs = {0}, mu = {0}, first = {1, 2}, second = {3, 4};
  buffer.Add(obs, mu, first, 1, 5);
  buffer.Add(obs, mu, second, 1, 4);
  buffer.EndEpisode();
  const model::Matrix actions = buffer.actions();
  ASSERT_EQ(actions.rows(), 2);
  ASSERT_EQ(actions.cols(), 2);
  EXPECT_EQ(actions(1, 0), 3.0f);
  EXPECT_EQ(actions(1, 1), 4.0f);
  EXPECT_EQ(buffer.min_version(), 4u);
}

// l(μ) = −(1/N)·Σ_t A_t·log N(a_t; μ_t, σ²), up to a constant.
double GaussianLoss(const model::Matrix& means, const model::Matrix& actions,
                    const std::vector<float>& advantages, double sigma) {
  double loss = 0.0;
  for (int t = 0; t < means.rows(); ++t) {
    const double z = (actions(t, 0) - means(t, 0)) / sigma;
    loss += advantages[t] * 0.5 * z * z;
  }
  return loss / means.rows();
}

TEST(GaussianPolicy, DeltaIsTheGradientOfTheReinforceLossWrtTheMean) {
  std::mt19937_64 rng(13);
  std::normal_distribution<float> normal;
  EpisodeBuffer buffer(/*observation_dim=*/2, /*output_dim=*/1);
  for (int t = 0; t < 6; ++t) {
    const std::vector<float> obs = {normal(rng), normal(rng)};
    const float mu = normal(rng), action = mu + 0.5f * normal(rng);
    buffer.Add(obs, {&mu, 1}, {&action, 1}, /*reward=*/-static_cast<float>(t % 3), 1);
    if (t == 2) buffer.EndEpisode();
  }
  buffer.EndEpisode();
  const ReinforceBatch batch = MakeReinforceBatch(buffer, {});
  constexpr float kSigma = 0.5f;
  const model::Matrix deltas = GaussianDeltas(batch, batch.acted, kSigma);
  model::Matrix mu = batch.acted;
  constexpr double kH = 1e-3;
  for (int t = 0; t < mu.rows(); ++t) {
    const float saved = mu(t, 0);
    mu(t, 0) = saved + kH;
    const double up = GaussianLoss(mu, batch.actions, batch.advantages, kSigma);
    mu(t, 0) = saved - kH;
    const double down = GaussianLoss(mu, batch.actions, batch.advantages, kSigma);
    mu(t, 0) = saved;
    EXPECT_NEAR(deltas(t, 0), (up - down) / (2 * kH), 2e-3) << "t=" << t;
  }
}

TEST(Spsa, EstimatesTheGradientOfAQuadratic) {
  std::mt19937_64 rng(11);
  const std::vector<float> target = {0.5f, -1.0f, 2.0f};
  auto cost = [&](absl::Span<const float> y) {
    double c = 0;
    for (size_t i = 0; i < y.size(); ++i) c += (y[i] - target[i]) * (y[i] - target[i]);
    return c;
  };
  const std::vector<float> y = {0.0f, 0.0f, 0.0f};
  std::vector<float> grad(3);
  SpsaGradient(cost, y, /*h=*/0.1f, /*draws=*/4000, rng, absl::MakeSpan(grad));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(grad[i], -2.0f * target[i], 0.25f) << i;
}

TEST(LinearTargetTask, OptimumHasZeroLossAndZeroDistance) {
  const LinearTargetTask task(/*input_dim=*/3, /*output_dim=*/2, /*seed=*/5, /*noise=*/0.0);
  std::vector<float> params(task.a().data(), task.a().data() + task.a().size());
  params.insert(params.end(), {0.0f, 0.0f});
  EXPECT_DOUBLE_EQ(*task.DistanceToOptimum(params), 0.0);
  EXPECT_FALSE(task.DistanceToOptimum(std::vector<float>(3)).has_value());
  std::mt19937_64 rng(1);
  const model::Matrix x = task.SampleInputs(16, rng);
  const model::Matrix y = x * task.a().transpose();
  EXPECT_NEAR(task.TrueLoss(x, y), 0.0, 1e-10);
  // Quantised to 0.01 without noise: a tiny error costs exactly 0.
  model::Matrix off = y;
  off(0, 0) += 0.05f;  // squared error 0.0025 → rounds to 0
  EXPECT_EQ(task.NoisyCost(absl::MakeConstSpan(x.row(0).data(), 3),
                           absl::MakeConstSpan(off.row(0).data(), 2), rng),
            0.0);
}

TEST(PointMass, EpisodesLastTheHorizonAndForcesAreClipped) {
  PointMass a(1), b(1);
  for (int t = 0; t < PointMass::kHorizon; ++t) {
    EXPECT_FALSE(a.done());
    EXPECT_EQ(a.Step(100.0f), b.Step(2.0f));  // the cost sees the clipped force too
  }
  EXPECT_TRUE(a.done());
}

}  // namespace
}  // namespace deltaserve::sim
