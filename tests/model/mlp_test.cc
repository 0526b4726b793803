// Mlp: deterministic init, forward/backward and the read-only input VJP
// (alone and through the input normalisation) against finite differences of
// an independent double-precision reference, accumulation, shape errors.
#include "deltaserve/model/mlp.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "deltaserve/model/normalization.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::model {
namespace {

using ::testing::HasSubstr;

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

MlpSpec Spec(int input_dim, std::vector<LayerSpec> layers, uint64_t seed = 1) {
  MlpSpec spec;
  spec.input_dim = input_dim;
  spec.layers = std::move(layers);
  spec.seed = seed;
  return spec;
}

Mlp MakeMlp(const MlpSpec& spec) {
  auto mlp = Mlp::Create(spec);
  EXPECT_TRUE(mlp.ok()) << mlp.status();
  return *std::move(mlp);
}

Matrix RandomMatrix(Eigen::Index rows, Eigen::Index cols, uint32_t seed) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(engine);
  return m;
}

// Independent reference: y = f(X; Θ) in double with explicit loops over the
// documented layout (W_l [units × fan_in] row-major, then b_l).
MatrixD ReferenceForward(const MlpSpec& spec, const std::vector<double>& params, const MatrixD& x) {
  MatrixD a = x;
  size_t offset = 0;
  int fan_in = spec.input_dim;
  for (const LayerSpec& layer : spec.layers) {
    MatrixD z(a.rows(), layer.units);
    for (Eigen::Index s = 0; s < a.rows(); ++s) {
      for (int u = 0; u < layer.units; ++u) {
        double sum = params[offset + static_cast<size_t>(layer.units) * fan_in + u];
        for (int k = 0; k < fan_in; ++k) {
          sum += params[offset + static_cast<size_t>(u) * fan_in + k] * a(s, k);
        }
        switch (layer.activation) {
          case Activation::kIdentity:
            break;
          case Activation::kTanh:
            sum = std::tanh(sum);
            break;
          case Activation::kRelu:
            sum = sum > 0 ? sum : 0;
            break;
          case Activation::kSigmoid:
            sum = 1 / (1 + std::exp(-sum));
            break;
        }
        z(s, u) = sum;
      }
    }
    offset += static_cast<size_t>(layer.units) * (fan_in + 1);
    fan_in = layer.units;
    a = z;
  }
  return a;
}

// l = Σ y ⊙ dY, so ∂l/∂y = dY.
double ReferenceLoss(const MlpSpec& spec, const std::vector<double>& params, const MatrixD& x,
                     const MatrixD& dy) {
  return ReferenceForward(spec, params, x).cwiseProduct(dy).sum();
}

// Finite differences: central, step 1e-6, all in double, so their error
// (~1e-9) is far below what a transposed weight or a missing bias term would
// cause; Backward runs in float, hence the 1e-4 relative tolerance.
void ExpectBackwardMatchesFiniteDifferences(const MlpSpec& spec, int batch) {
  SCOPED_TRACE(::testing::Message() << "batch " << batch);
  const Mlp mlp = MakeMlp(spec);
  const std::vector<float> params = mlp.InitialParameters();
  // Non-zero biases, so a bias that is ignored in Forward shows up too.
  std::vector<float> biased = params;
  std::mt19937 engine(7);
  std::uniform_real_distribution<float> small(-0.3f, 0.3f);
  for (float& p : biased) p += small(engine);
  const Matrix x = RandomMatrix(batch, spec.input_dim, 11);
  const Matrix dy = RandomMatrix(batch, mlp.output_dim(), 13);

  Mlp::Workspace ws;
  ASSERT_TRUE(mlp.Forward(biased, x, ws).ok());
  std::vector<float> grad(params.size(), 0.0f);
  Matrix dx;
  ASSERT_TRUE(mlp.Backward(biased, x, ws, dy, absl::MakeSpan(grad), &dx).ok());

  std::vector<double> p(biased.begin(), biased.end());
  const MatrixD xd = x.cast<double>();
  const MatrixD dyd = dy.cast<double>();
  // Forward agrees with the reference.
  const MatrixD y_ref = ReferenceForward(spec, p, xd);
  for (Eigen::Index i = 0; i < y_ref.size(); ++i) {
    EXPECT_NEAR(ws.output().data()[i], y_ref.data()[i], 1e-5 * (1 + std::abs(y_ref.data()[i])));
  }
  constexpr double kStep = 1e-6;
  auto expect_near_fd = [](double analytic, double fd, const char* what, size_t i) {
    EXPECT_NEAR(analytic, fd, 1e-4 * (1 + std::abs(fd))) << what << " index " << i;
  };
  for (size_t i = 0; i < p.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + kStep;
    const double up = ReferenceLoss(spec, p, xd, dyd);
    p[i] = saved - kStep;
    const double down = ReferenceLoss(spec, p, xd, dyd);
    p[i] = saved;
    expect_near_fd(grad[i], (up - down) / (2 * kStep), "dl/dparam", i);
  }
  MatrixD xp = xd;
  for (Eigen::Index i = 0; i < xp.size(); ++i) {
    const double saved = xp.data()[i];
    xp.data()[i] = saved + kStep;
    const double up = ReferenceLoss(spec, p, xp, dyd);
    xp.data()[i] = saved - kStep;
    const double down = ReferenceLoss(spec, p, xp, dyd);
    xp.data()[i] = saved;
    expect_near_fd(dx.data()[i], (up - down) / (2 * kStep), "dl/dX", static_cast<size_t>(i));
  }
}

class BackwardFiniteDifferenceTest : public ::testing::TestWithParam<Activation> {};

// The read-only VJP gives Backward's ∂l/∂X bit for bit (the same products),
// touches no parameter gradient, and can be repeated after one Forward.
TEST(MlpInputGradient, EqualsBackwardsInputGradientWithoutParameterGradient) {
  const MlpSpec spec =
      Spec(5, {{7, Activation::kTanh}, {4, Activation::kRelu}, {3, Activation::kSigmoid}});
  const Mlp mlp = MakeMlp(spec);
  const std::vector<float> params = mlp.InitialParameters();
  const Matrix x = RandomMatrix(6, 5, 21);
  const Matrix dy = RandomMatrix(6, 3, 22);
  Mlp::Workspace ws;
  ASSERT_TRUE(mlp.Forward(params, x, ws).ok());
  const Matrix y = ws.output();
  Matrix vjp, vjp_again, dx;
  ASSERT_TRUE(mlp.InputGradient(params, x, ws, dy, &vjp).ok());
  ASSERT_TRUE(mlp.InputGradient(params, x, ws, dy, &vjp_again).ok());
  std::vector<float> grad(params.size(), 0.0f);
  ASSERT_TRUE(mlp.Backward(params, x, ws, dy, absl::MakeSpan(grad), &dx).ok());
  EXPECT_EQ(vjp, dx);
  EXPECT_EQ(vjp_again, dx);
  EXPECT_EQ(ws.output(), y);  // The activations are left as Forward made them.
  EXPECT_GT(vjp.cwiseAbs().maxCoeff(), 0.0f);
}

// ∂(Σ dY ⊙ f(N(X)))/∂X with N the running-mean/std normalisation, against
// central differences (step 1e-6) of a double reference of the composition;
// some inputs are clipped (their gradient is 0) and some are not.
TEST(MlpInputGradient, ThroughNormalizationMatchesFiniteDifferences) {
  const MlpSpec spec = Spec(3, {{6, Activation::kTanh}, {2, Activation::kIdentity}});
  const Mlp mlp = MakeMlp(spec);
  std::vector<float> params = mlp.InitialParameters();
  for (size_t i = 0; i < params.size(); ++i) params[i] += 0.05f * static_cast<float>(i % 5);
  InputNormalizationConfig config;
  config.kind = InputNormalizationConfig::Kind::kRunningMeanStd;
  config.clip = 1.5f;
  auto normalizer =
      RunningMeanStd::FromStatistics(config, {0.5, -1.0, 2.0}, {0.8, 2.5, 0.3}, 100.0);
  ASSERT_TRUE(normalizer.ok()) << normalizer.status();
  const Matrix x = 2.0f * RandomMatrix(8, 3, 31);
  const Matrix dy = RandomMatrix(8, 2, 32);

  Matrix z, dz, dx;
  ASSERT_TRUE(normalizer->Normalize(x, &z).ok());
  Mlp::Workspace ws;
  ASSERT_TRUE(mlp.Forward(params, z, ws).ok());
  ASSERT_TRUE(mlp.InputGradient(params, z, ws, dy, &dz).ok());
  ASSERT_TRUE(normalizer->Backward(x, dz, &dx).ok());

  const std::vector<double> p(params.begin(), params.end());
  const MatrixD dyd = dy.cast<double>();
  auto loss = [&](const MatrixD& xs) {
    MatrixD zs(xs.rows(), xs.cols());
    for (Eigen::Index i = 0; i < xs.rows(); ++i) {
      for (Eigen::Index j = 0; j < xs.cols(); ++j) {
        const double s = std::sqrt(normalizer->var()[j] + static_cast<double>(config.epsilon));
        zs(i, j) = std::clamp((xs(i, j) - normalizer->mean()[j]) / s, -1.5, 1.5);
      }
    }
    return ReferenceLoss(spec, p, zs, dyd);
  };
  constexpr double kStep = 1e-6;
  MatrixD xp = x.cast<double>();
  int clipped = 0;
  for (Eigen::Index i = 0; i < xp.size(); ++i) {
    const double saved = xp.data()[i];
    xp.data()[i] = saved + kStep;
    const double up = loss(xp);
    xp.data()[i] = saved - kStep;
    const double down = loss(xp);
    xp.data()[i] = saved;
    const double fd = (up - down) / (2 * kStep);
    clipped += fd == 0.0;
    EXPECT_NEAR(dx.data()[i], fd, 1e-5 * (1 + std::abs(fd))) << "dl/dX index " << i;
  }
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, xp.size());
}

TEST_P(BackwardFiniteDifferenceTest, SingleLayerMatches) {
  for (int batch : {1, 4}) {
    ExpectBackwardMatchesFiniteDifferences(Spec(3, {{5, GetParam()}}), batch);
  }
}

TEST_P(BackwardFiniteDifferenceTest, TwoHiddenLayersMatch) {
  ExpectBackwardMatchesFiniteDifferences(
      Spec(4, {{6, GetParam()}, {3, Activation::kTanh}, {2, GetParam()}}), 3);
}

TEST_P(BackwardFiniteDifferenceTest, NonSquareLayersMatch) {
  ExpectBackwardMatchesFiniteDifferences(Spec(7, {{2, GetParam()}, {5, Activation::kIdentity}}), 6);
}

INSTANTIATE_TEST_SUITE_P(AllActivations, BackwardFiniteDifferenceTest,
                         ::testing::Values(Activation::kIdentity, Activation::kTanh,
                                           Activation::kRelu, Activation::kSigmoid),
                         [](const auto& info) { return std::string(ActivationName(info.param)); });

TEST(Mlp, ParameterLayoutMatchesTorchLinear) {
  // One identity layer 2 → 3: y_u = Σ_k W[u,k]·x_k + b_u, W row-major then b.
  const Mlp mlp = MakeMlp(Spec(2, {{3, Activation::kIdentity}}));
  ASSERT_EQ(mlp.parameter_count(), 9u);
  const std::vector<float> params = {1, 2, 3, 4, 5, 6, 0.5f, -1, 2};
  Matrix x(1, 2);
  x << 10, 100;
  auto y = mlp.Forward(params, x);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_FLOAT_EQ((*y)(0, 0), 1 * 10 + 2 * 100 + 0.5f);
  EXPECT_FLOAT_EQ((*y)(0, 1), 3 * 10 + 4 * 100 - 1);
  EXPECT_FLOAT_EQ((*y)(0, 2), 5 * 10 + 6 * 100 + 2);
}

TEST(Mlp, BackwardAddsIntoGradient) {
  const MlpSpec spec = Spec(3, {{4, Activation::kTanh}, {2, Activation::kSigmoid}});
  const Mlp mlp = MakeMlp(spec);
  const std::vector<float> params = mlp.InitialParameters();
  const Matrix x = RandomMatrix(5, 3, 1);
  const Matrix dy = RandomMatrix(5, 2, 2);
  Mlp::Workspace ws;
  ASSERT_TRUE(mlp.Forward(params, x, ws).ok());
  std::vector<float> once(params.size(), 0.0f);
  ASSERT_TRUE(mlp.Backward(params, x, ws, dy, absl::MakeSpan(once)).ok());
  std::vector<float> twice(params.size(), 0.0f);
  ASSERT_TRUE(mlp.Backward(params, x, ws, dy, absl::MakeSpan(twice)).ok());
  ASSERT_TRUE(mlp.Backward(params, x, ws, dy, absl::MakeSpan(twice)).ok());
  for (size_t i = 0; i < once.size(); ++i) {
    EXPECT_FLOAT_EQ(twice[i], 2 * once[i]) << i;
  }
}

TEST(Mlp, WorkspaceIsReusableAcrossBatchSizes) {
  const Mlp mlp = MakeMlp(Spec(3, {{8, Activation::kRelu}, {2, Activation::kIdentity}}));
  const std::vector<float> params = mlp.InitialParameters();
  Mlp::Workspace ws;
  for (int batch : {7, 1, 3, 7}) {
    const Matrix x = RandomMatrix(batch, 3, batch);
    ASSERT_TRUE(mlp.Forward(params, x, ws).ok());
    auto fresh = mlp.Forward(params, x);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(ws.output(), *fresh) << "batch " << batch;
    std::vector<float> grad(params.size(), 0.0f);
    Matrix dx;
    EXPECT_TRUE(
        mlp.Backward(params, x, ws, RandomMatrix(batch, 2, 5), absl::MakeSpan(grad), &dx).ok());
    EXPECT_EQ(dx.rows(), batch);
  }
}

TEST(Mlp, ConcurrentForwardsOnSharedParametersAgree) {
  const Mlp mlp = MakeMlp(Spec(16, {{64, Activation::kTanh}, {4, Activation::kSigmoid}}));
  const std::vector<float> params = mlp.InitialParameters();
  const Matrix x = RandomMatrix(9, 16, 3);
  auto expected = mlp.Forward(params, x);
  ASSERT_TRUE(expected.ok());
  std::vector<Matrix> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      Mlp::Workspace ws;
      for (int i = 0; i < 50; ++i) {
        if (!mlp.Forward(params, x, ws).ok()) return;
      }
      results[t] = ws.output();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const Matrix& r : results) EXPECT_EQ(r, *expected);
}

// The batching contract: a row's output does not depend on the rows around
// it, for widths where a plain Forward would pick different kernels (1 row →
// GEMV, k ≥ 1000 → blocked GEMM), any row count, and offsets that misalign
// the row. A plain Forward gives no such guarantee.
TEST(Mlp, ForwardRowInvariantGivesEachRowTheSameBitsWhateverTheBatch) {
  for (int width : {4, 64, 1000}) {
    const Mlp mlp = MakeMlp(Spec(width, {{width, Activation::kTanh}, {3, Activation::kIdentity}}));
    const std::vector<float> params = mlp.InitialParameters();
    const Matrix all = RandomMatrix(37, width, 11);
    Mlp::Workspace ws;
    Matrix batched;
    ASSERT_TRUE(mlp.ForwardRowInvariant(params, all, &batched, ws).ok());
    ASSERT_EQ(batched.rows(), 37);
    for (Eigen::Index start : {0, 1, 5, 13, 36}) {
      for (Eigen::Index rows : {1, 2, 7, 8, 9}) {
        if (start + rows > all.rows()) continue;
        Matrix alone;
        ASSERT_TRUE(mlp.ForwardRowInvariant(params, all.middleRows(start, rows), &alone, ws).ok());
        EXPECT_EQ(alone, batched.middleRows(start, rows))
            << "width " << width << ", rows " << start << ".." << start + rows;
      }
    }
    // And it is the network's function: equal to Forward up to rounding.
    auto reference = mlp.Forward(params, all);
    ASSERT_TRUE(reference.ok());
    EXPECT_TRUE(batched.isApprox(*reference, 1e-5f)) << "width " << width;
  }
}

// ForwardRowInvariant computes a long batch in chunks of rows (bounded
// scratch); a row's bits do not depend on which chunk it falls in.
TEST(Mlp, ForwardRowInvariantGivesRowsAcrossChunksTheirOwnBits) {
  const Mlp mlp = MakeMlp(Spec(16, {{1000, Activation::kTanh}, {2, Activation::kIdentity}}));
  const std::vector<float> params = mlp.InitialParameters();
  const Matrix all = RandomMatrix(600, 16, 12);  // 1000 units: chunks of 256 rows.
  Mlp::Workspace ws;
  Matrix batched;
  ASSERT_TRUE(mlp.ForwardRowInvariant(params, all, &batched, ws).ok());
  ASSERT_EQ(batched.rows(), 600);
  for (Eigen::Index row = 0; row < all.rows(); ++row) {
    Matrix alone;
    ASSERT_TRUE(mlp.ForwardRowInvariant(params, all.middleRows(row, 1), &alone, ws).ok());
    ASSERT_EQ(alone, batched.middleRows(row, 1)) << "row " << row;
  }
}

TEST(MlpErrors, ForwardRowInvariantRejectsWrongShapes) {
  const Mlp mlp = MakeMlp(Spec(3, {{2, Activation::kIdentity}}));
  Mlp::Workspace ws;
  Matrix y;
  EXPECT_EQ(mlp.ForwardRowInvariant(mlp.InitialParameters(), Matrix::Zero(2, 4), &y, ws).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mlp.ForwardRowInvariant(mlp.InitialParameters(), Matrix(0, 3), &y, ws).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MlpInit, SameSeedIsIdenticalAndDifferentSeedDiffers) {
  const std::vector<LayerSpec> layers = {{16, Activation::kTanh}, {3, Activation::kRelu}};
  const auto a = MakeMlp(Spec(8, layers, 42)).InitialParameters();
  const auto b = MakeMlp(Spec(8, layers, 42)).InitialParameters();
  const auto c = MakeMlp(Spec(8, layers, 43)).InitialParameters();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(MlpInit, IsPinnedAcrossMachines) {
  // The documented mapping from std::mt19937_64 (whose output the standard
  // fixes) must not drift: these are the first weights for seed 42.
  const auto p = MakeMlp(Spec(2, {{2, Activation::kTanh}}, 42)).InitialParameters();
  ASSERT_EQ(p.size(), 6u);
  std::mt19937_64 engine(42);
  const double bound = std::sqrt(6.0 / 4.0);
  for (int i = 0; i < 4; ++i) {
    const double k = static_cast<double>(engine() >> 40);
    EXPECT_EQ(p[i], static_cast<float>((2 * k + 1 - 16777216.0) / 16777216.0 * bound)) << i;
  }
  EXPECT_FLOAT_EQ(p[0], 0.62500083f);
}

TEST(MlpInit, BiasesAreZeroAndWeightsFillTheirBound) {
  const MlpSpec spec = Spec(30, {{40, Activation::kTanh},
                                 {50, Activation::kRelu},
                                 {20, Activation::kSigmoid},
                                 {10, Activation::kIdentity}});
  const Mlp mlp = MakeMlp(spec);
  const std::vector<float> p = mlp.InitialParameters();
  size_t offset = 0;
  int fan_in = spec.input_dim;
  for (const LayerSpec& layer : spec.layers) {
    SCOPED_TRACE(ActivationName(layer.activation));
    const double bound = layer.activation == Activation::kRelu
                             ? std::sqrt(6.0 / fan_in)
                             : std::sqrt(6.0 / (fan_in + layer.units));
    const size_t weights = static_cast<size_t>(layer.units) * fan_in;
    double max_abs = 0, sum = 0;
    for (size_t i = 0; i < weights; ++i) {
      const double w = p[offset + i];
      ASSERT_LE(std::abs(w), bound);
      max_abs = std::max(max_abs, std::abs(w));
      sum += w;
    }
    EXPECT_GT(max_abs, 0.95 * bound);                 // Uses the whole range,
    EXPECT_LT(std::abs(sum / weights), 0.1 * bound);  // centred on zero.
    for (int u = 0; u < layer.units; ++u) EXPECT_EQ(p[offset + weights + u], 0.0f);
    offset += weights + layer.units;
    fan_in = layer.units;
  }
  EXPECT_EQ(offset, p.size());
}

TEST(MlpErrors, CreateRejectsInvalidSpec) {
  auto mlp = Mlp::Create(Spec(3, {{0, Activation::kTanh}}));
  EXPECT_EQ(mlp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mlp.status().message(), HasSubstr("layers[0].units: expected > 0"));
}

TEST(MlpErrors, ForwardRejectsWrongShapes) {
  const Mlp mlp = MakeMlp(Spec(3, {{2, Activation::kTanh}}));
  const std::vector<float> params = mlp.InitialParameters();
  Mlp::Workspace ws;
  auto wrong_width = mlp.Forward(params, Matrix::Zero(2, 4), ws);
  EXPECT_EQ(wrong_width.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_width.message(), HasSubstr("expected [n x 3] with n >= 1, got [2 x 4]"));
  EXPECT_EQ(mlp.Forward(params, Matrix::Zero(0, 3), ws).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<float> short_params(params.size() - 1, 0.0f);
  auto bad_params = mlp.Forward(short_params, Matrix::Zero(1, 3), ws);
  EXPECT_EQ(bad_params.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_params.message(), HasSubstr("parameters: expected 8 floats, got 7"));
}

TEST(MlpErrors, InputGradientRejectsWrongShapesAndMissingForward) {
  const Mlp mlp = MakeMlp(Spec(3, {{2, Activation::kTanh}}));
  const std::vector<float> params = mlp.InitialParameters();
  const Matrix x = RandomMatrix(4, 3, 1);
  Mlp::Workspace ws;
  Matrix dx;
  EXPECT_EQ(mlp.InputGradient(params, x, ws, Matrix::Zero(4, 2), &dx).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(mlp.Forward(params, x, ws).ok());
  EXPECT_EQ(mlp.InputGradient(params, x, ws, Matrix::Zero(4, 3), &dx).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mlp.InputGradient(params, x, ws, Matrix::Zero(4, 2), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      mlp.InputGradient(absl::MakeConstSpan(params).subspan(1), x, ws, Matrix::Zero(4, 2), &dx)
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(MlpErrors, BackwardRejectsWrongShapesAndMissingForward) {
  const Mlp mlp = MakeMlp(Spec(3, {{2, Activation::kTanh}}));
  const std::vector<float> params = mlp.InitialParameters();
  std::vector<float> grad(params.size(), 0.0f);
  const Matrix x = Matrix::Ones(4, 3);
  Mlp::Workspace ws;
  EXPECT_EQ(mlp.Backward(params, x, ws, Matrix::Ones(4, 2), absl::MakeSpan(grad)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(mlp.Forward(params, x, ws).ok());
  auto bad_dy = mlp.Backward(params, x, ws, Matrix::Ones(4, 3), absl::MakeSpan(grad));
  EXPECT_EQ(bad_dy.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_dy.message(), HasSubstr("expected [4 x 2], got [4 x 3]"));
  std::vector<float> short_grad(params.size() + 1, 0.0f);
  EXPECT_EQ(mlp.Backward(params, x, ws, Matrix::Ones(4, 2), absl::MakeSpan(short_grad)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      mlp.Backward(params, Matrix::Ones(5, 3), ws, Matrix::Ones(5, 2), absl::MakeSpan(grad)).code(),
      absl::StatusCode::kFailedPrecondition);
  for (float g : grad) EXPECT_EQ(g, 0.0f);  // Nothing was added by failed calls.
}

}  // namespace
}  // namespace deltaserve::model
