// GradientNoiseScale (server/core/noise_scale.h) on synthetic gradients with
// a known covariance, and the Trainer's per-step series (trainer.h,
// TrainerOptions::history) against values computed independently.
#include "deltaserve/server/core/noise_scale.h"

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "Eigen/Dense"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using testing::CoreMatrix;
using testing::TrainerOptionsBuilder;

// With norms equal to their expectations the estimates are exact:
// |g_u|² = w_u²(|G|² + T·v_u/w_u²), |g|² = W²(|G|² + T·V/W²).
TEST(GradientNoiseScale, RecoversTraceAndNormFromExpectedNorms) {
  const double g2 = 3.0;
  const double trace = 12.0;
  GradientNoiseScale estimator(/*decay=*/0.5);
  const double w[] = {2.0, 5.0, 0.5};
  const double v[] = {2.0, 3.0, 0.1};
  double big_w = 0.0;
  double big_v = 0.0;
  for (int u = 0; u < 3; ++u) {
    estimator.AddUnit(w[u] * w[u] * (g2 + trace * v[u] / (w[u] * w[u])), w[u], v[u]);
    big_w += w[u];
    big_v += v[u];
  }
  EXPECT_EQ(estimator.units(), 3u);
  ASSERT_TRUE(estimator.EndStep(big_w * big_w * (g2 + trace * big_v / (big_w * big_w))));
  EXPECT_NEAR(estimator.trace_sigma(), trace, 1e-9);
  EXPECT_NEAR(estimator.gradient_sq(), g2, 1e-9);
  EXPECT_NEAR(estimator.noise_scale(), 4.0, 1e-9);
  EXPECT_EQ(estimator.units(), 0u);
}

TEST(GradientNoiseScale, OneUnitGivesNoEstimate) {
  GradientNoiseScale estimator;
  estimator.AddUnit(4.0, 2.0, 2.0);
  EXPECT_FALSE(estimator.EndStep(4.0));
  EXPECT_FALSE(estimator.has_estimate());
  EXPECT_TRUE(std::isnan(estimator.noise_scale()));
}

// Per-row gradients x ~ N(mu, diag(sigma²)) in 40 dimensions: mu_i = 1,
// sigma_i = 2, so |G|² = 40, tr(Σ) = 160 and B_simple = 4. Each step sums
// 4 units of 8 rows (SUM reduction: w = v = rows). Averaged over many
// steps the estimate converges to 4.
TEST(GradientNoiseScale, ConvergesToTheAnalyticNoiseScale) {
  constexpr int kDim = 40;
  constexpr int kUnits = 4;
  constexpr int kRows = 8;
  std::mt19937_64 rng(1234);
  std::normal_distribution<double> normal(0.0, 1.0);
  GradientNoiseScale estimator(/*decay=*/0.999);
  for (int step = 0; step < 6000; ++step) {
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(kDim);
    for (int u = 0; u < kUnits; ++u) {
      Eigen::VectorXd g = Eigen::VectorXd::Zero(kDim);
      for (int r = 0; r < kRows; ++r) {
        for (int i = 0; i < kDim; ++i) g(i) += 1.0 + 2.0 * normal(rng);
      }
      estimator.AddUnit(g.squaredNorm(), kRows, kRows);
      sum += g;
    }
    ASSERT_TRUE(estimator.EndStep(sum.squaredNorm()));
  }
  EXPECT_NEAR(estimator.trace_sigma(), 160.0, 16.0);
  EXPECT_NEAR(estimator.gradient_sq(), 40.0, 4.0);
  EXPECT_NEAR(estimator.noise_scale(), 4.0, 0.4);
}

// Unequal units with weights (as MEAN reduction and staleness scales make
// them): unit u of n_u rows enters with per-row weight c_u, w = c·n,
// v = c²·n. The estimate is still B_simple = 4.
TEST(GradientNoiseScale, ConvergesWithUnequalWeightedUnits) {
  constexpr int kDim = 40;
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int rows[] = {2, 5, 11};
  const double weight[] = {1.0, 0.25, 0.5};
  GradientNoiseScale estimator(/*decay=*/0.999);
  for (int step = 0; step < 6000; ++step) {
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(kDim);
    for (int u = 0; u < 3; ++u) {
      Eigen::VectorXd g = Eigen::VectorXd::Zero(kDim);
      for (int r = 0; r < rows[u]; ++r) {
        for (int i = 0; i < kDim; ++i) g(i) += weight[u] * (1.0 + 2.0 * normal(rng));
      }
      estimator.AddUnit(g.squaredNorm(), weight[u] * rows[u], weight[u] * weight[u] * rows[u]);
      sum += g;
    }
    ASSERT_TRUE(estimator.EndStep(sum.squaredNorm()));
  }
  EXPECT_NEAR(estimator.noise_scale(), 4.0, 0.5);
}

// A linear model y = W x + b (identity activation), CURRENT surrogate, SUM:
// ∂l_s/∂y = δ, so a submission's gradient is (δᵀX, Σ_r δ_r) and
// l_s = ½‖δ‖². Two submissions of 2 rows each make one step of 4 rows.
struct LinearGradient {
  Eigen::MatrixXd w;
  Eigen::VectorXd b;
  double SquaredNorm() const { return w.squaredNorm() + b.squaredNorm(); }
};

LinearGradient GradientOf(const model::Matrix& x, const model::Matrix& delta) {
  const Eigen::MatrixXd xd = x.cast<double>();
  const Eigen::MatrixXd dd = delta.cast<double>();
  return {dd.transpose() * xd, dd.colwise().sum().transpose()};
}

Submission Make(model::Matrix x, model::Matrix delta, uint64_t version) {
  Submission s;
  s.inputs = std::move(x);
  s.deltas = std::move(delta);
  s.version = version;
  return s;
}

double Distance(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::pow(double{a[i]} - double{b[i]}, 2);
  return std::sqrt(sum);
}

TEST(TrainerSeries, OneStepsSeriesMatchIndependentValues) {
  History history;
  TrainerOptions options = TrainerOptionsBuilder("lin", 3)
                               .Layers({{2, model::Activation::kIdentity}})
                               .Seed(5)
                               .Sgd(0.1f)
                               .ClipNorm(1.0f)
                               .SamplesPerStep(4)
                               .Build();
  options.history = &history;
  absl::StatusOr<std::unique_ptr<Trainer>> created = Trainer::Create(std::move(options));
  ASSERT_TRUE(created.ok()) << created.status();
  Trainer& trainer = **created;
  const std::vector<float> before = trainer.snapshot()->parameters;

  const model::Matrix x1 = CoreMatrix(2, 3, {1, 2, 3, -1, 0.5f, 2});
  const model::Matrix d1 = CoreMatrix(2, 2, {0.5f, -1, 2, 0.25f});
  const model::Matrix x2 = CoreMatrix(2, 3, {0, 1, -2, 3, 1, 1});
  const model::Matrix d2 = CoreMatrix(2, 2, {-1, 1, 0.5f, 0.5f});
  absl::StatusOr<SubmitResult> r1 = testing::SubmitAndWait(trainer, Make(x1, d1, 0));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_FALSE(r1->stepped);
  EXPECT_TRUE(history.Read("lin", 0).empty()) << "no step yet, no point";
  absl::StatusOr<SubmitResult> r2 = testing::SubmitAndWait(trainer, Make(x2, d2, 0));
  ASSERT_TRUE(r2.ok()) << r2.status();
  ASSERT_TRUE(r2->stepped);
  const std::vector<float> after = trainer.snapshot()->parameters;

  const LinearGradient g1 = GradientOf(x1, d1);
  const LinearGradient g2 = GradientOf(x2, d2);
  const LinearGradient g{g1.w + g2.w, g1.b + g2.b};
  const double norm = std::sqrt(g.SquaredNorm());
  const double clipped = norm * std::min(1.0, 1.0 / (norm + 1e-6));
  ASSERT_GT(norm, 1.0) << "the example must clip";

  auto series = history.Read("lin", 0);
  auto value = [&](const std::string& name) {
    EXPECT_EQ(series[name].size(), 1u) << name;
    return series[name].empty() ? std::nan("") : series[name].back().value;
  };
  EXPECT_NEAR(value("loss"), (0.5 * d1.squaredNorm() + 0.5 * d2.squaredNorm()) / 2, 1e-5);
  EXPECT_NEAR(value("loss"), (r1->surrogate_loss + r2->surrogate_loss) / 2, 1e-9);
  EXPECT_NEAR(value("grad_norm"), norm, 1e-4 * norm);
  EXPECT_NEAR(value("grad_norm_clipped"), clipped, 1e-5);
  EXPECT_NEAR(value("update_norm"), Distance(after, before), 1e-6);
  EXPECT_NEAR(value("update_norm"), 0.1 * clipped, 1e-5);
  EXPECT_EQ(value("learning_rate"), double{0.1f});
  EXPECT_EQ(value("rows"), 4.0);
  EXPECT_EQ(value("staleness_mean"), 0.0);
  EXPECT_EQ(value("staleness_max"), 0.0);
  // Two units of 2 rows: a = mean |g_u/2|², x_s = 1/2; b = |g/4|², x_b = 1/4.
  const double a = (g1.SquaredNorm() + g2.SquaredNorm()) / 2 / 4;
  const double b = g.SquaredNorm() / 16;
  const double trace = (a - b) / 0.25;
  const double grad_sq = (b * 0.5 - a * 0.25) / 0.25;
  ASSERT_GT(grad_sq, 0.0);
  EXPECT_NEAR(value("noise_scale"), trace / grad_sq, 1e-3 * std::abs(trace / grad_sq));
}

// Steps of one submission each: the noise scale pairs consecutive steps,
// so the first step has none and the second has one; staleness is the
// submissions' (version 0 applied at version 1: 1).
TEST(TrainerSeries, OneSubmissionStepsPairForTheNoiseScale) {
  History history;
  TrainerOptions options = TrainerOptionsBuilder("lin", 3)
                               .Layers({{2, model::Activation::kIdentity}})
                               .Sgd(0.01f)
                               .SamplesPerStep(2)
                               .Build();
  options.history = &history;
  absl::StatusOr<std::unique_ptr<Trainer>> created = Trainer::Create(std::move(options));
  ASSERT_TRUE(created.ok()) << created.status();
  Trainer& trainer = **created;
  const model::Matrix x = CoreMatrix(2, 3, {1, 2, 3, -1, 0.5f, 2});
  const model::Matrix d = CoreMatrix(2, 2, {0.5f, -1, 2, 0.25f});
  ASSERT_TRUE(testing::SubmitAndWait(trainer, Make(x, d, 0)).ok());
  EXPECT_EQ(history.Read("lin", 0).count("noise_scale"), 0u);
  ASSERT_TRUE(testing::SubmitAndWait(trainer, Make(x, 0.5f * d, 0)).ok());
  auto series = history.Read("lin", 0);
  EXPECT_EQ(series["noise_scale"].size(), 1u);
  ASSERT_EQ(series["staleness_max"].size(), 2u);
  EXPECT_EQ(series["staleness_max"][1].value, 1.0);
  EXPECT_EQ(series["rows"][1].value, 2.0);
}

}  // namespace
}  // namespace deltaserve::server
