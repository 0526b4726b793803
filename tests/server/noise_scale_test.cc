// GradientNoiseScale (server/core/noise_scale.h) on synthetic gradients with
// a known covariance, and the Trainer's per-step series (trainer.h,
// TrainerOptions::history) against values computed independently.
#include "deltaserve/server/core/noise_scale.h"

#include <algorithm>
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

// Feeds the estimator explicit unit gradients (grouped by step) the way the
// Trainer does: |g_u|², g_u·(the step's earlier units), and per step G·R
// with R = Σ decay·(R + G).
class Feeder {
 public:
  explicit Feeder(GradientNoiseScale& estimator, int dim)
      : estimator_(estimator), r_(Eigen::VectorXd::Zero(dim)) {}
  void Unit(const Eigen::VectorXd& g, double w, double v) {
    if (step_.size() == 0) step_ = Eigen::VectorXd::Zero(g.size());
    estimator_.AddUnit(g.squaredNorm(), g.dot(step_), w, v);
    step_ += g;
  }
  void EndStep() {
    estimator_.EndStep(step_.dot(r_));
    r_ = estimator_.decay() * (r_ + step_);
    step_ = Eigen::VectorXd();
  }

 private:
  GradientNoiseScale& estimator_;
  Eigen::VectorXd r_;
  Eigen::VectorXd step_;
};

// The incremental sums against the definitions, computed over every pair of
// explicit units with weights decay^age: N/D and (Q − W2·N/D)/V2, and the
// standard error √M/D (M: the squared cross terms as they were added).
TEST(GradientNoiseScale, MatchesTheDefinitionsOverAllPairs) {
  const double decay = 0.9;
  GradientNoiseScale estimator(decay, /*z=*/2.0);
  Feeder feeder(estimator, 3);
  struct Unit {
    Eigen::Vector3d g;
    double w, v;
    int step;
  };
  const std::vector<Unit> units = {
      {{1, 2, -1}, 2.0, 2.0, 0},     {{0.5, -1, 3}, 1.0, 1.0, 0}, {{2, 0, 1}, 3.0, 1.5, 1},
      {{-1, 1, 1}, 0.5, 0.25, 2},    {{1, 1, 0}, 4.0, 4.0, 2},    {{3, -2, 0.5}, 1.0, 1.0, 2},
      {{0.25, 0.5, 2}, 2.0, 2.0, 3},
  };
  const int steps = 4;
  for (int step = 0; step < steps; ++step) {
    for (const Unit& u : units) {
      if (u.step == step) feeder.Unit(u.g, u.w, u.v);
    }
    feeder.EndStep();
  }
  // Ages after the last step: steps − step (common factors cancel).
  double n = 0, d = 0, q = 0, w2 = 0, v2 = 0, m = 0;
  for (size_t i = 0; i < units.size(); ++i) {
    const double li = std::pow(decay, steps - units[i].step);
    q += li * li * units[i].g.squaredNorm();
    w2 += li * li * units[i].w * units[i].w;
    v2 += li * li * units[i].v;
    for (size_t j = 0; j < units.size(); ++j) {
      if (j == i) continue;
      const double lj = std::pow(decay, steps - units[j].step);
      n += li * lj * units[i].g.dot(units[j].g);
      d += li * lj * units[i].w * units[j].w;
    }
  }
  // M: per unit within a step 2·g_u·(earlier units of the step), per step
  // 2·G·R; each squared, weighted by λ⁴ of its step.
  for (int step = 0; step < steps; ++step) {
    const double l = std::pow(decay, steps - step);
    Eigen::Vector3d earlier = Eigen::Vector3d::Zero();
    Eigen::Vector3d past = Eigen::Vector3d::Zero();
    for (const Unit& u : units) {
      if (u.step < step) past += std::pow(decay, step - u.step) * u.g;
    }
    Eigen::Vector3d sum = Eigen::Vector3d::Zero();
    for (const Unit& u : units) {
      if (u.step != step) continue;
      const double c = 2.0 * u.g.dot(earlier);
      m += std::pow(l, 4) * c * c;
      earlier += u.g;
      sum += u.g;
    }
    const double c = 2.0 * sum.dot(past);
    m += std::pow(l, 4) * c * c;
  }
  ASSERT_TRUE(estimator.has_estimate());
  EXPECT_NEAR(estimator.gradient_sq(), n / d, 1e-12 * std::abs(n / d) + 1e-12);
  EXPECT_NEAR(estimator.gradient_sq_error(), std::sqrt(m) / d, 1e-9 * std::sqrt(m) / d);
  const double trace = (q - w2 * n / d) / v2;
  EXPECT_NEAR(estimator.trace_sigma(), trace, 1e-9 * std::abs(trace));
  if (n / d > 0 && trace > 0) {
    EXPECT_NEAR(estimator.noise_scale(), trace / (n / d), 1e-9 * trace / (n / d));
  }
  const double bound = n / d + 2.0 * std::sqrt(m) / d;
  ASSERT_GT(bound, 0.0);
  ASSERT_GT(trace, 0.0);
  EXPECT_NEAR(estimator.noise_scale_lower_bound(), trace / bound, 1e-9 * trace / bound);
}

TEST(GradientNoiseScale, OneUnitGivesNoEstimateTwoDo) {
  GradientNoiseScale estimator;
  Feeder feeder(estimator, 2);
  feeder.Unit(Eigen::Vector2d(1, 2), 1.0, 1.0);
  feeder.EndStep();
  EXPECT_FALSE(estimator.has_estimate());
  EXPECT_TRUE(std::isnan(estimator.noise_scale()));
  EXPECT_TRUE(std::isnan(estimator.noise_scale_lower_bound()));
  feeder.Unit(Eigen::Vector2d(2, 1), 1.0, 1.0);  // A second one-unit step.
  feeder.EndStep();
  EXPECT_TRUE(estimator.has_estimate());
  EXPECT_NEAR(estimator.gradient_sq(), 4.0, 1e-12);  // (1,2)·(2,1)
}

TEST(GradientNoiseScale, IgnoresUnusableUnitsAndResets) {
  GradientNoiseScale estimator;
  estimator.AddUnit(1.0, 0.0, 0.0, 1.0);  // w = 0
  estimator.AddUnit(std::nan(""), 0.0, 1.0, 1.0);
  estimator.AddUnit(1.0, 0.0, 1.0, -1.0);
  EXPECT_EQ(estimator.units(), 0u);
  Feeder feeder(estimator, 1);
  feeder.Unit(Eigen::VectorXd::Constant(1, 1.0), 1.0, 1.0);
  feeder.Unit(Eigen::VectorXd::Constant(1, 2.0), 1.0, 1.0);
  feeder.EndStep();
  ASSERT_TRUE(estimator.has_estimate());
  estimator.Reset();
  EXPECT_FALSE(estimator.has_estimate());
  EXPECT_EQ(estimator.units(), 0u);
}

// Per-row gradients x ~ N(mu, diag(sigma²)) in kDim dimensions: mu_i = mu,
// sigma_i = 2, so |G|² = kDim·mu², tr(Σ) = 4·kDim and B_simple = 4/mu².
struct Synthetic {
  static constexpr int kDim = 40;
  double mu;
  std::mt19937_64 rng;
  std::normal_distribution<double> normal{0.0, 1.0};
  // A unit of `rows` rows, each weighted c: g = Σ c·x_r.
  Eigen::VectorXd Unit(int rows, double c) {
    Eigen::VectorXd g = Eigen::VectorXd::Zero(kDim);
    for (int r = 0; r < rows; ++r) {
      for (int i = 0; i < kDim; ++i) g(i) += c * (mu + 2.0 * normal(rng));
    }
    return g;
  }
  double GradientSq() const { return kDim * mu * mu; }
  double Trace() const { return 4.0 * kDim; }
};

// The estimates of |G|² and tr(Σ) are unbiased: their mean over many
// independent runs (each a few steps, far from converged) is the known
// value, for steps of several units and for steps of one unit (one
// submission per step: the pairs are across steps), with unequal weighted
// units (as MEAN reduction and staleness scales make them: w = c·n,
// v = c²·n).
struct Layout {
  const char* name;
  std::vector<std::pair<int, double>> units;  // Per step: rows and weight.
};

TEST(GradientNoiseScale, EstimatesAreUnbiased) {
  const std::vector<Layout> layouts = {
      {"four units of 8 rows per step", {{8, 1.0}, {8, 1.0}, {8, 1.0}, {8, 1.0}}},
      {"one unit of 8 rows per step", {{8, 1.0}}},
      {"one unit of 1 row per step", {{1, 1.0}}},
      {"unequal weighted units", {{2, 1.0}, {5, 0.25}, {11, 0.5}}},
  };
  for (const Layout& layout : layouts) {
    SCOPED_TRACE(layout.name);
    Synthetic synthetic{/*mu=*/0.5, std::mt19937_64(42)};
    constexpr int kRuns = 4000;
    double g2_sum = 0.0, trace_sum = 0.0;
    for (int run = 0; run < kRuns; ++run) {
      GradientNoiseScale estimator(/*decay=*/0.9);
      Feeder feeder(estimator, Synthetic::kDim);
      for (int step = 0; step < 6; ++step) {
        for (const auto& [rows, c] : layout.units) {
          feeder.Unit(synthetic.Unit(rows, c), c * rows, c * c * rows);
        }
        feeder.EndStep();
      }
      ASSERT_TRUE(estimator.has_estimate());
      g2_sum += estimator.gradient_sq();
      trace_sum += estimator.trace_sigma();
    }
    // |G|² = 10, tr(Σ) = 160; 4000 runs put the means within a few percent.
    EXPECT_NEAR(g2_sum / kRuns, synthetic.GradientSq(), 0.05 * synthetic.GradientSq());
    EXPECT_NEAR(trace_sum / kRuns, synthetic.Trace(), 0.03 * synthetic.Trace());
  }
}

// Averaged over many steps the noise scale converges to B_simple = 4 and
// the lower bound closes in on it, with one unit per step as with several.
TEST(GradientNoiseScale, ConvergesToTheAnalyticNoiseScale) {
  for (int units : {4, 1}) {
    SCOPED_TRACE(units);
    Synthetic synthetic{/*mu=*/1.0, std::mt19937_64(1234)};
    GradientNoiseScale estimator(/*decay=*/0.999);
    Feeder feeder(estimator, Synthetic::kDim);
    for (int step = 0; step < 6000; ++step) {
      for (int u = 0; u < units; ++u) feeder.Unit(synthetic.Unit(8, 1.0), 8, 8);
      feeder.EndStep();
    }
    EXPECT_NEAR(estimator.trace_sigma(), 160.0, 16.0);
    EXPECT_NEAR(estimator.gradient_sq(), 40.0, 4.0);
    EXPECT_NEAR(estimator.noise_scale(), 4.0, 0.4);
    EXPECT_LE(estimator.noise_scale_lower_bound(), estimator.noise_scale());
    EXPECT_NEAR(estimator.noise_scale_lower_bound(), 4.0, 0.6);
  }
}

// Steps far smaller than the noise scale (B_simple = 400 rows, 4-row
// steps of one unit, as one simulator's small submissions): |G|² is not
// measurable within ~50 steps, and the point estimate tr(Σ)/|G|² swings
// (or has no value) while the lower bound is a bound: below the truth in
// nearly every run and step, and never an outlier above it.
TEST(GradientNoiseScale, LowerBoundHoldsWhenNoiseDominates) {
  Synthetic synthetic{/*mu=*/0.1, std::mt19937_64(7)};
  const double truth = synthetic.Trace() / synthetic.GradientSq();
  ASSERT_NEAR(truth, 400.0, 1e-9);
  int checked = 0, below = 0, point_nan = 0;
  double worst = 0.0;
  for (int run = 0; run < 200; ++run) {
    GradientNoiseScale estimator;  // The Trainer's: decay 0.98, z = 3.
    Feeder feeder(estimator, Synthetic::kDim);
    for (int step = 0; step < 300; ++step) {
      feeder.Unit(synthetic.Unit(4, 1.0), 4, 4);
      feeder.EndStep();
      if (step < 50) continue;  // Past the start-up.
      const double bound = estimator.noise_scale_lower_bound();
      ASSERT_FALSE(std::isnan(bound)) << "run " << run << " step " << step;
      ++checked;
      below += bound <= truth;
      worst = std::max(worst, bound / truth);
      point_nan += std::isnan(estimator.noise_scale());
    }
  }
  EXPECT_GT(static_cast<double>(below) / checked, 0.95);
  EXPECT_LT(worst, 8.0);
  // What the point estimate would have shown instead: often nothing.
  EXPECT_GT(point_nan, 0);
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
  // Two units of 2 rows, the first step (server/core/noise_scale.h):
  // N = 2·g1·g2, D = 2·2·2, Q = |g1|² + |g2|², W2 = 8, V2 = 4,
  // M = (2·g1·g2)²; the series is the lower bound tr(Σ)/(|G|² + 3·SE).
  const double cross = g1.w.cwiseProduct(g2.w).sum() + g1.b.dot(g2.b);
  const double grad_sq = 2.0 * cross / 8.0;
  const double error = std::abs(2.0 * cross) / 8.0;
  const double trace = (g1.SquaredNorm() + g2.SquaredNorm() - 8.0 * grad_sq) / 4.0;
  ASSERT_GT(grad_sq + 3.0 * error, 0.0);
  ASSERT_GT(trace, 0.0);
  const double bound = trace / (grad_sq + 3.0 * error);
  EXPECT_NEAR(value("noise_scale"), bound, 1e-3 * bound);
}

// Steps of one submission each: the noise scale pairs each step with the
// earlier ones, so the first step has none and the second has one;
// staleness is the submissions' (version 0 applied at version 1: 1).
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

// End to end, one 1-row submission per step (as one simulator whose steps
// are single submissions): a linear model y = W x + b at x = (1, 0, 0), so
// a row's gradient is δ at W's first column and at b: with δ ~ N(mu,
// diag(sigma²)) in 16 outputs, mu = 1, sigma = 2, |G|² = 2·16·mu² = 32 and
// tr(Σ) = 2·16·sigma² = 128: B_simple = 4 rows. SGD at 1e-7 keeps G fixed.
// The recorded lower bound sits below 4 and within a factor of about 2.
TEST(TrainerSeries, OneRowStepsMeasureTheKnownNoiseScale) {
  constexpr int kOutputs = 16;
  History history;
  TrainerOptions options = TrainerOptionsBuilder("lin", 3)
                               .Layers({{kOutputs, model::Activation::kIdentity}})
                               .Sgd(1e-7f)
                               .SamplesPerStep(1)
                               .Build();
  options.history = &history;
  absl::StatusOr<std::unique_ptr<Trainer>> created = Trainer::Create(std::move(options));
  ASSERT_TRUE(created.ok()) << created.status();
  Trainer& trainer = **created;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const model::Matrix x = CoreMatrix(1, 3, {1, 0, 0});
  for (int step = 0; step < 2000; ++step) {
    model::Matrix d(1, kOutputs);
    for (int k = 0; k < kOutputs; ++k) d(0, k) = 1 + 2 * normal(rng);
    absl::StatusOr<SubmitResult> r =
        testing::SubmitAndWait(trainer, Make(x, d, trainer.snapshot()->version));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->stepped);
  }
  auto series = history.Read("lin", 0);
  const std::vector<HistoryPoint>& points = series["noise_scale"];
  ASSERT_GE(points.size(), 500u);  // The raw ring's last 600 steps.
  std::vector<double> values;
  for (const HistoryPoint& p : points) values.push_back(p.value);
  std::sort(values.begin(), values.end());
  EXPECT_GT(values[values.size() / 2], 2.0) << "median";
  EXPECT_LT(values[values.size() / 2], 4.0) << "median";
  EXPECT_LT(values[values.size() * 95 / 100], 4.4) << "95th percentile";
}

}  // namespace
}  // namespace deltaserve::server
