// PPO's pure parts (sim/algorithms/ppo.h) against hand-computed values: GAE
// on 3-step trajectories, the signs of δ_μ, ∂L/∂log σ and δ_V, the clip mask
// on both sides, and δ_μ and ∂L/∂log σ against finite differences of the
// loss they claim to be the gradient of. No server involved.
#include "deltaserve/sim/algorithms/ppo.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

constexpr double kTol = 1e-5;

// r = [1, 2, 3], V = [0.5, 1, 1.5], V(s') = [1, 1.5, 2], γ = 0.9, λ = 0.8:
//   d = r + γ·V(s') − V = [1.4, 2.35, 3.3]
//   A2 = 3.3, A1 = 2.35 + 0.72·3.3 = 4.726, A0 = 1.4 + 0.72·4.726 = 4.80272
TEST(PpoGae, ThreeStepsTruncatedAtTheEndBootstrapFromTheFinalValue) {
  const std::vector<float> rewards = {1, 2, 3}, values = {0.5, 1, 1.5}, next = {1, 1.5, 2};
  const std::vector<uint8_t> terminated = {0, 0, 0}, ends = {0, 0, 1};
  const GaeResult g = Gae(rewards, values, next, terminated, ends, 1, 0.9, 0.8);
  EXPECT_NEAR(g.advantages[2], 3.3, kTol);
  EXPECT_NEAR(g.advantages[1], 4.726, kTol);
  EXPECT_NEAR(g.advantages[0], 4.80272, kTol);
  EXPECT_NEAR(g.returns[0], 5.30272, kTol);
  EXPECT_NEAR(g.returns[1], 5.726, kTol);
  EXPECT_NEAR(g.returns[2], 4.8, kTol);
}

// Terminated at step 2: d2 = 3 − 1.5 = 1.5 (no bootstrap), A1 = 2.35 + 0.72·1.5
// = 3.43, A0 = 1.4 + 0.72·3.43 = 3.8696.
TEST(PpoGae, TerminationCutsTheBootstrap) {
  const std::vector<float> rewards = {1, 2, 3}, values = {0.5, 1, 1.5}, next = {1, 1.5, 2};
  const std::vector<uint8_t> terminated = {0, 0, 1}, ends = {0, 0, 1};
  const GaeResult g = Gae(rewards, values, next, terminated, ends, 1, 0.9, 0.8);
  EXPECT_NEAR(g.advantages[2], 1.5, kTol);
  EXPECT_NEAR(g.advantages[1], 3.43, kTol);
  EXPECT_NEAR(g.advantages[0], 3.8696, kTol);
}

// An episode ending at step 1: A1 = d1 = 2.35 (A2 does not flow back), A0 =
// 1.4 + 0.72·2.35 = 3.092.
TEST(PpoGae, AnEpisodeEndStopsTheAdvantageFlowingBack) {
  const std::vector<float> rewards = {1, 2, 3}, values = {0.5, 1, 1.5}, next = {1, 1.5, 2};
  const std::vector<uint8_t> terminated = {0, 0, 0}, ends = {0, 1, 0};
  const GaeResult g = Gae(rewards, values, next, terminated, ends, 1, 0.9, 0.8);
  EXPECT_NEAR(g.advantages[2], 3.3, kTol);
  EXPECT_NEAR(g.advantages[1], 2.35, kTol);
  EXPECT_NEAR(g.advantages[0], 3.092, kTol);
}

// Two environments, time-major (row t·2 + e): env 0 is the first test's
// trajectory, env 1 the same with rewards 0 (d = [−0.5 + 0.9, −1 + 1.35,
// −1.5 + 1.8] = [0.4, 0.35, 0.3]); each runs on its own.
TEST(PpoGae, EnvironmentsAreInterleavedTimeMajorAndIndependent) {
  const std::vector<float> rewards = {1, 0, 2, 0, 3, 0};
  const std::vector<float> values = {0.5, 0.5, 1, 1, 1.5, 1.5};
  const std::vector<float> next = {1, 1, 1.5, 1.5, 2, 2};
  const std::vector<uint8_t> terminated(6, 0), ends = {0, 0, 0, 0, 1, 1};
  const GaeResult g = Gae(rewards, values, next, terminated, ends, 2, 0.9, 0.8);
  EXPECT_NEAR(g.advantages[0], 4.80272, kTol);
  EXPECT_NEAR(g.advantages[2], 4.726, kTol);
  EXPECT_NEAR(g.advantages[4], 3.3, kTol);
  EXPECT_NEAR(g.advantages[5], 0.3, kTol);
  EXPECT_NEAR(g.advantages[3], 0.35 + 0.72 * 0.3, kTol);
  EXPECT_NEAR(g.advantages[1], 0.4 + 0.72 * (0.35 + 0.72 * 0.3), kTol);
}

TEST(PpoAdvantages, NormalisedWithBesselsCorrection) {
  const std::vector<float> a = NormalizeAdvantages(std::vector<float>{1, 2, 3});
  EXPECT_NEAR(a[0], -1.0, kTol);  // mean 2, std 1 with divisor n − 1
  EXPECT_NEAR(a[1], 0.0, kTol);
  EXPECT_NEAR(a[2], 1.0, kTol);
}

TEST(PpoLogProb, MatchesTheGaussianDensity) {
  model::Matrix mu(1, 1), a(1, 1);
  mu << 0.5f;
  a << 1.5f;
  const float log_std = std::log(2.0f);
  // log N(1.5; 0.5, 4) = −½·(1/2)² − log 2 − ½·log 2π
  EXPECT_NEAR(GaussianLogProb(mu, {&log_std, 1}, a)[0],
              -0.125 - std::log(2.0) - 0.5 * std::log(2 * M_PI), kTol);
}

// One row, μ = 0, σ = 1, a = 0.5, π_old = π (r = 1), N = 1:
//   δ_μ = −Â·(a − μ)/σ² = −0.5·Â
//   ∂L/∂ℓ = −Â·((a − μ)²/σ² − 1) = 0.75·Â
struct OneRow {
  model::Matrix mu = model::Matrix::Zero(1, 1);
  model::Matrix a = model::Matrix::Constant(1, 1, 0.5f);
  float log_std = 0.0f;
  std::vector<double> old() const { return GaussianLogProb(mu, {&log_std, 1}, a); }
};

TEST(PpoPolicyDeltas, PositiveAdvantagePullsTheMeanTowardsTheAction) {
  OneRow row;
  const PpoPolicyGradient g =
      PpoPolicyDeltas(row.mu, {&row.log_std, 1}, row.a, row.old(), std::vector<float>{1}, {});
  // δ < 0: gradient descent on the output raises μ towards a = 0.5.
  EXPECT_NEAR(g.delta_mu(0, 0), -0.5, kTol);
  // |a − μ| < σ with Â > 0: the loss falls as σ shrinks, so ∂L/∂ℓ > 0.
  EXPECT_NEAR(g.grad_log_std[0], 0.75, kTol);
  EXPECT_NEAR(g.ratio[0], 1.0, kTol);
  EXPECT_EQ(g.clipped[0], 0);
}

TEST(PpoPolicyDeltas, NegativeAdvantagePushesTheMeanAway) {
  OneRow row;
  const PpoPolicyGradient g =
      PpoPolicyDeltas(row.mu, {&row.log_std, 1}, row.a, row.old(), std::vector<float>{-1}, {});
  EXPECT_NEAR(g.delta_mu(0, 0), 0.5, kTol);
  EXPECT_NEAR(g.grad_log_std[0], -0.75, kTol);
}

TEST(PpoPolicyDeltas, EntropyBonusLowersTheLogStdGradientByItsCoefficient) {
  OneRow row;
  PpoPolicyOptions options;
  options.ent_coef = 0.01;
  const PpoPolicyGradient g =
      PpoPolicyDeltas(row.mu, {&row.log_std, 1}, row.a, row.old(), std::vector<float>{1}, options);
  EXPECT_NEAR(g.grad_log_std[0], 0.74, kTol);
  EXPECT_NEAR(g.delta_mu(0, 0), -0.5, kTol);  // the entropy does not depend on μ
}

// Four rows, μ = 0, σ = 1, a = 0.5, ratios set through π_old, ε = 0.2, N = 4:
//   Â = +1, r = 1.3: clipped (m = 0)       Â = +1, r = 0.7: δ = −¼·0.7·0.5 = −0.0875
//   Â = −1, r = 0.7: clipped (m = 0)       Â = −1, r = 1.3: δ = +¼·1.3·0.5 = +0.1625
//   ∂L/∂ℓ = −¼·0.7·(0.25 − 1) + ¼·1.3·(0.25 − 1) = 0.13125 − 0.24375 = −0.1125
TEST(PpoPolicyDeltas, TheClipMasksExactlyTheRowsWhereItBinds) {
  const model::Matrix mu = model::Matrix::Zero(4, 1);
  const model::Matrix a = model::Matrix::Constant(4, 1, 0.5f);
  const float log_std = 0.0f;
  const std::vector<double> log_prob = GaussianLogProb(mu, {&log_std, 1}, a);
  const std::vector<double> ratios = {1.3, 0.7, 0.7, 1.3};
  std::vector<double> old(4);
  for (int i = 0; i < 4; ++i) old[i] = log_prob[i] - std::log(ratios[i]);
  const std::vector<float> advantages = {1, 1, -1, -1};
  const PpoPolicyGradient g = PpoPolicyDeltas(mu, {&log_std, 1}, a, old, advantages, {});
  EXPECT_EQ(g.clipped, (std::vector<uint8_t>{1, 0, 1, 0}));
  EXPECT_EQ(g.delta_mu(0, 0), 0.0f);
  EXPECT_NEAR(g.delta_mu(1, 0), -0.0875, kTol);
  EXPECT_EQ(g.delta_mu(2, 0), 0.0f);
  EXPECT_NEAR(g.delta_mu(3, 0), 0.1625, kTol);
  EXPECT_NEAR(g.grad_log_std[0], -0.1125, kTol);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(g.ratio[i], ratios[i], kTol);
}

// L(μ, ℓ) = −mean min(r·Â, clip(r)·Â) − c_ent·(ℓ + ½·log 2πe), in double.
double PolicyLoss(const std::vector<double>& mu, double log_std, const std::vector<double>& a,
                  const std::vector<double>& old, const std::vector<double>& adv, double clip,
                  double ent_coef) {
  double loss = 0;
  const double n = static_cast<double>(mu.size());
  for (size_t i = 0; i < mu.size(); ++i) {
    const double z = (a[i] - mu[i]) * std::exp(-log_std);
    const double log_prob = -0.5 * z * z - log_std - 0.5 * std::log(2 * M_PI);
    const double r = std::exp(log_prob - old[i]);
    loss -= std::min(r * adv[i], std::clamp(r, 1 - clip, 1 + clip) * adv[i]) / n;
  }
  return loss - ent_coef * (log_std + 0.5 * std::log(2 * M_PI * M_E));
}

TEST(PpoPolicyDeltas, AreTheLossGradientByFiniteDifferences) {
  const std::vector<double> mu = {0.1, -0.4, 0.7, 0.0, 1.2};
  const std::vector<double> a = {0.5, -1.0, 0.2, 0.3, 0.9};
  const std::vector<double> adv = {1.2, -0.7, 0.4, -1.5, 0.9};
  const std::vector<double> old = {-1.1, -0.8, -1.6, -0.6, -1.3};  // ratios around 0.6 to 1.7
  const double log_std = -0.3, clip = 0.2, ent = 0.01;
  model::Matrix mu_m(5, 1), a_m(5, 1);
  for (int i = 0; i < 5; ++i) {
    mu_m(i, 0) = static_cast<float>(mu[i]);
    a_m(i, 0) = static_cast<float>(a[i]);
  }
  const float ls = static_cast<float>(log_std);
  PpoPolicyOptions options;
  options.clip = clip;
  options.ent_coef = ent;
  const std::vector<float> adv_f(adv.begin(), adv.end());
  const PpoPolicyGradient g = PpoPolicyDeltas(mu_m, {&ls, 1}, a_m, old, adv_f, options);
  int clipped = 0;
  for (uint8_t c : g.clipped) clipped += c;
  EXPECT_GT(clipped, 0) << "the batch should exercise the clip";
  EXPECT_LT(clipped, 5);
  // The float inputs as the function saw them.
  std::vector<double> mu_d(5), a_d(5);
  for (int i = 0; i < 5; ++i) {
    mu_d[i] = mu_m(i, 0);
    a_d[i] = a_m(i, 0);
  }
  const double h = 1e-6;
  for (int i = 0; i < 5; ++i) {
    std::vector<double> up = mu_d, down = mu_d;
    up[i] += h;
    down[i] -= h;
    const double numeric = (PolicyLoss(up, ls, a_d, old, adv, clip, ent) -
                            PolicyLoss(down, ls, a_d, old, adv, clip, ent)) /
                           (2 * h);
    EXPECT_NEAR(g.delta_mu(i, 0), numeric, 1e-5) << "row " << i;
  }
  const double numeric = (PolicyLoss(mu_d, ls + h, a_d, old, adv, clip, ent) -
                          PolicyLoss(mu_d, ls - h, a_d, old, adv, clip, ent)) /
                         (2 * h);
  EXPECT_NEAR(g.grad_log_std[0], numeric, 1e-5);
}

// V = [1, 2], R = [0, 4], c_v = 0.5, N = 2: δ = 0.5·(V − R)/2 = [0.25, −0.5].
TEST(PpoValueDeltas, PointFromTheReturnTowardsTheValue) {
  model::Matrix v(2, 1);
  v << 1, 2;
  const model::Matrix d = ValueDeltas(v, std::vector<float>{0, 4}, 0.5);
  ASSERT_EQ(d.rows(), 2);
  ASSERT_EQ(d.cols(), 1);
  EXPECT_NEAR(d(0, 0), 0.25, kTol);
  EXPECT_NEAR(d(1, 0), -0.5, kTol);
}

// The first reward has return 2 and the statistics (mean 0, var 1, count
// 1e-4) merge it: var ≈ 5e-4, so 2/sqrt(var) ≈ 89 is clipped to 10.
TEST(PpoRewardScaler, FirstRewardIsClipped) {
  RewardScaler scaler(1, 0.9);
  const std::vector<uint8_t> ends = {0};
  EXPECT_FLOAT_EQ(scaler.Scale(std::vector<float>{2}, ends)[0], 10.0f);
}

// γ = 0: the returns are the rewards; batches [1, −1] have mean 0 and var 1,
// the statistics' starting moments, so var stays 1 and rewards pass as
// r/sqrt(1 + 1e-8).
TEST(PpoRewardScaler, DividesByTheReturnsStandardDeviation) {
  RewardScaler scaler(2, 0.0);
  const std::vector<uint8_t> ends = {0, 0};
  for (int i = 0; i < 5; ++i) {
    const std::vector<float> s = scaler.Scale(std::vector<float>{1, -1}, ends);
    EXPECT_NEAR(s[0], 1.0, 1e-6);
    EXPECT_NEAR(s[1], -1.0, 1e-6);
  }
  EXPECT_NEAR(scaler.var(), 1.0, 1e-12);
}

// With ends, the discounted return restarts: two environments get the same
// rewards 1, 1 but env 0's episode ends after the first, so its second return
// is 1 where env 1's is 1 + 0.5·1 = 1.5. The second batch [1, 1.5] has mean
// 1.25 and var 0.0625; merged into (mean 1, var 0, count 2.0001 after the
// first batch [1, 1] with the prior) it gives a variance the test recomputes.
TEST(PpoRewardScaler, ReturnsRestartAfterAnEpisodeEnds) {
  RewardScaler scaler(2, 0.5);
  scaler.Scale(std::vector<float>{1, 1}, std::vector<uint8_t>{1, 0});
  scaler.Scale(std::vector<float>{1, 1}, std::vector<uint8_t>{0, 0});
  // Prior (0, 1, 1e-4) + batch (mean 1, var 0, 2):
  double count = 1e-4, mean = 0, var = 1;
  auto merge = [&](double bm, double bv, double bc) {
    const double d = bm - mean, total = count + bc;
    const double m2 = var * count + bv * bc + d * d * count * bc / total;
    mean += d * bc / total;
    var = m2 / total;
    count = total;
  };
  merge(1.0, 0.0, 2);
  merge(1.25, 0.0625, 2);
  EXPECT_NEAR(scaler.var(), var, 1e-12);
}

}  // namespace
}  // namespace deltaserve::sim
