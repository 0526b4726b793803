// The surrogate's formulas (docs/architecture.md §1 table) and the sign that makes a
// client's true gradient descend its loss.
#include "deltaserve/model/surrogate.h"

#include <iostream>
#include <vector>

#include "deltaserve/model/mlp.h"
#include "deltaserve/model/optimizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::model {
namespace {

using ::testing::HasSubstr;
using Mode = SurrogateConfig::Mode;
using Reduction = SurrogateConfig::Reduction;

SurrogateConfig Config(Mode mode, float scale = 1.0f, Reduction reduction = Reduction::kSum) {
  SurrogateConfig config;
  config.mode = mode;
  config.delta_scale = scale;
  config.reduction = reduction;
  return config;
}

Matrix M(std::initializer_list<std::initializer_list<float>> rows) {
  Matrix m(rows.size(), rows.begin()->size());
  Eigen::Index r = 0;
  for (const auto& row : rows) {
    Eigen::Index c = 0;
    for (float v : row) m(r, c++) = v;
    ++r;
  }
  return m;
}

const Matrix kY = M({{1.0f, -2.0f, 0.5f}, {0.0f, 3.0f, -1.0f}});
const Matrix kActed = M({{1.5f, -2.0f, 0.0f}, {0.25f, 2.0f, -1.0f}});
const Matrix kDelta = M({{0.1f, -0.4f, 2.0f}, {-1.0f, 0.0f, 0.3f}});
const Matrix kNoActed(0, 3);

TEST(Surrogate, CurrentGivesScaledDelta) {
  Matrix g;
  auto loss = Surrogate(Config(Mode::kCurrent, 0.5f), Objective::kMinimize, kY, kActed, kDelta, &g);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_EQ(g, Matrix(0.5f * kDelta));
  EXPECT_NEAR(*loss, 0.5 * (0.5 * kDelta).squaredNorm(), 1e-6);
}

TEST(Surrogate, AnchoredAtTheCurrentOutputEqualsCurrent) {
  Matrix anchored, current;
  ASSERT_TRUE(
      Surrogate(Config(Mode::kAnchored, 2.0f), Objective::kMinimize, kY, kY, kDelta, &anchored)
          .ok());
  ASSERT_TRUE(
      Surrogate(Config(Mode::kCurrent, 2.0f), Objective::kMinimize, kY, kY, kDelta, &current).ok());
  EXPECT_EQ(anchored, current);
  EXPECT_EQ(anchored, Matrix(2.0f * kDelta));
}

TEST(Surrogate, OmittedActedMeansActedIsY) {
  Matrix g;
  ASSERT_TRUE(
      Surrogate(Config(Mode::kAnchored), Objective::kMinimize, kY, kNoActed, kDelta, &g).ok());
  EXPECT_EQ(g, kDelta);
}

TEST(Surrogate, AnchoredPullsTowardActedOutput) {
  Matrix g;
  auto loss =
      Surrogate(Config(Mode::kAnchored, 0.5f), Objective::kMinimize, kY, kActed, kDelta, &g);
  ASSERT_TRUE(loss.ok());
  const Matrix expected = (kY - kActed) + 0.5f * kDelta;  // y − t with t = ỹ − ε·δ.
  EXPECT_TRUE(g.isApprox(expected, 1e-6f)) << g << "\nvs\n" << expected;
  EXPECT_NEAR(*loss, 0.5 * expected.squaredNorm(), 1e-5);
}

TEST(Surrogate, MeanDividesLossAndGradientByElementCount) {
  Matrix sum, mean;
  auto sum_loss =
      Surrogate(Config(Mode::kAnchored), Objective::kMinimize, kY, kActed, kDelta, &sum);
  auto mean_loss = Surrogate(Config(Mode::kAnchored, 1.0f, Reduction::kMean), Objective::kMinimize,
                             kY, kActed, kDelta, &mean);
  ASSERT_TRUE(sum_loss.ok() && mean_loss.ok());
  EXPECT_NEAR(*mean_loss, *sum_loss / 6, 1e-7);
  EXPECT_TRUE(mean.isApprox(sum / 6.0f, 1e-6f));
}

TEST(Surrogate, MaximizeNegatesDelta) {
  Matrix min_g, max_g;
  ASSERT_TRUE(
      Surrogate(Config(Mode::kCurrent), Objective::kMaximize, kY, kActed, kDelta, &max_g).ok());
  EXPECT_EQ(max_g, Matrix(-kDelta));
  ASSERT_TRUE(
      Surrogate(Config(Mode::kAnchored), Objective::kMaximize, kY, kActed, kDelta, &min_g).ok());
  EXPECT_TRUE(min_g.isApprox((kY - kActed) - kDelta, 1e-6f));
}

TEST(SurrogateErrors, ShapeMismatchesAndBadConfigAreInvalidArgument) {
  Matrix g;
  auto bad_delta =
      Surrogate(Config(Mode::kAnchored), Objective::kMinimize, kY, kActed, Matrix::Zero(2, 2), &g);
  EXPECT_EQ(bad_delta.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_delta.status().message(), HasSubstr("deltas: expected [2 x 3]"));
  auto bad_acted =
      Surrogate(Config(Mode::kCurrent), Objective::kMinimize, kY, Matrix::Zero(1, 3), kDelta, &g);
  EXPECT_EQ(bad_acted.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_acted.status().message(), HasSubstr("acted outputs: expected [2 x 3]"));
  auto bad_scale =
      Surrogate(Config(Mode::kCurrent, 0.0f), Objective::kMinimize, kY, kActed, kDelta, &g);
  EXPECT_EQ(bad_scale.status().code(), absl::StatusCode::kInvalidArgument);
}

// The sign test. A client knows its loss L(y) = ½‖y − y*‖² and submits the
// true gradient δ = ∂L/∂y = y − y* at the output it acted on. Descending the
// surrogate through backprop and SGD must make L fall. The published form
// t = ỹ + δ gives ∂l_s/∂y = −δ at y = ỹ and makes L rise: this test keeps that
// as the reason deltaserve uses t = ỹ − ε·δ.
class SignTest : public ::testing::Test {
 protected:
  // Runs `steps` rounds of forward → client δ → output gradient → backward →
  // SGD step and returns L before and after.
  std::pair<double, double> Train(bool published_sign, int steps) {
    MlpSpec spec;
    spec.input_dim = 3;
    spec.layers = {{16, Activation::kTanh}, {2, Activation::kIdentity}};
    spec.seed = 5;
    auto mlp = Mlp::Create(spec);
    EXPECT_TRUE(mlp.ok());
    std::vector<float> params = mlp->InitialParameters();
    OptimizerConfig sgd;
    sgd.learning_rate = 0.02f;
    auto optimizer = Optimizer::Create(sgd, params.size());
    EXPECT_TRUE(optimizer.ok());
    Matrix x(4, 3);
    x << 0.5f, -1.0f, 0.2f, 1.0f, 0.3f, -0.7f, -0.4f, 0.8f, 0.9f, 0.1f, 0.1f, -1.0f;
    Matrix target(4, 2);
    target << 1.0f, -0.5f, 0.3f, 0.8f, -1.0f, 0.2f, 0.6f, -0.9f;
    Mlp::Workspace ws;
    auto client_loss = [&] {
      EXPECT_TRUE(mlp->Forward(params, x, ws).ok());
      return 0.5 * (ws.output() - target).squaredNorm();
    };
    const double before = client_loss();
    for (int i = 0; i < steps; ++i) {
      EXPECT_TRUE(mlp->Forward(params, x, ws).ok());
      const Matrix acted = ws.output();
      const Matrix delta = acted - target;  // True ∂L/∂y at ỹ.
      Matrix grad_y;
      if (published_sign) {
        grad_y = ws.output() - (acted + delta);  // ∂/∂y ½‖y − (ỹ + δ)‖².
      } else {
        EXPECT_TRUE(
            Surrogate(SurrogateConfig{}, Objective::kMinimize, ws.output(), acted, delta, &grad_y)
                .ok());
      }
      std::vector<float> grad(params.size(), 0.0f);
      EXPECT_TRUE(mlp->Backward(params, x, ws, grad_y, absl::MakeSpan(grad)).ok());
      EXPECT_TRUE((*optimizer)->Step(absl::MakeSpan(params), absl::MakeSpan(grad)).ok());
    }
    const double after = client_loss();
    std::cout << (published_sign ? "published sign" : "deltaserve sign") << ": L " << before
              << " -> " << after << " after " << steps << " rounds\n";
    return {before, after};
  }
};

TEST_F(SignTest, TrueGradientThroughSurrogateDescendsTheClientLoss) {
  const auto [before, after] = Train(/*published_sign=*/false, 100);
  EXPECT_LT(after, 0.5 * before);
}

TEST_F(SignTest, PublishedSignAscendsTheClientLoss) {
  // Fewer rounds: ascent grows the loss geometrically until it overflows.
  const auto [before, after] = Train(/*published_sign=*/true, 20);
  EXPECT_GT(after, 1.5 * before);
}

}  // namespace
}  // namespace deltaserve::model
