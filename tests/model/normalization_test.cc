// RunningMeanStd and ColumnMoments: statistics against a float64 (long
// double) reference of the stacked rows, the exact update order of
// stable-baselines3, Normalize and its Backward, and errors that change
// nothing.
#include "deltaserve/model/normalization.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::model {
namespace {

using ::testing::HasSubstr;

InputNormalizationConfig RunningConfig(float clip = 10.0f, float epsilon = 1e-8f) {
  InputNormalizationConfig config;
  config.kind = InputNormalizationConfig::Kind::kRunningMeanStd;
  config.clip = clip;
  config.epsilon = epsilon;
  return config;
}

RunningMeanStd MakeStats(int dim, const InputNormalizationConfig& config = RunningConfig()) {
  auto stats = RunningMeanStd::Create(dim, config);
  EXPECT_TRUE(stats.ok()) << stats.status();
  return *std::move(stats);
}

// Rows with column j drawn from N(j − 1, (j + 1)²), so columns differ.
Matrix Rows(Eigen::Index rows, int dim, uint32_t seed) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Matrix m(rows, dim);
  for (Eigen::Index i = 0; i < rows; ++i) {
    for (int j = 0; j < dim; ++j) m(i, j) = static_cast<float>(j - 1) + (j + 1) * normal(engine);
  }
  return m;
}

// Reference: the population mean and variance of `prior_count` pseudo-rows
// with mean 0 and variance 1 (RunningMeanStd's start) together with every
// row of `batches`, in long double.
struct Reference {
  std::vector<long double> mean, var;
  long double count;
};
Reference PopulationMoments(const std::vector<Matrix>& batches, int dim, long double prior_count) {
  Reference r{std::vector<long double>(dim, 0), std::vector<long double>(dim, 0), prior_count};
  for (const Matrix& b : batches) r.count += b.rows();
  for (int j = 0; j < dim; ++j) {
    long double sum = 0;
    for (const Matrix& b : batches) {
      for (Eigen::Index i = 0; i < b.rows(); ++i) sum += b(i, j);
    }
    r.mean[j] = sum / r.count;
    // Prior: count·(var + (0 − mean)²) with var 1.
    long double m2 = prior_count * (1 + r.mean[j] * r.mean[j]);
    for (const Matrix& b : batches) {
      for (Eigen::Index i = 0; i < b.rows(); ++i) {
        const long double d = b(i, j) - r.mean[j];
        m2 += d * d;
      }
    }
    r.var[j] = m2 / r.count;
  }
  return r;
}

TEST(RunningMeanStd, StartsAtMeanZeroVarOneCountOneEMinus4) {
  const RunningMeanStd stats = MakeStats(3);
  EXPECT_EQ(stats.mean(), std::vector<double>(3, 0.0));
  EXPECT_EQ(stats.var(), std::vector<double>(3, 1.0));
  EXPECT_EQ(stats.count(), 1e-4);
  EXPECT_EQ(stats.clip(), 10.0f);
  EXPECT_EQ(stats.epsilon(), 1e-8f);
}

// One merge of the rows {1, 3} (mean 2, var 1, count 2), by hand in the
// order of operations of update_from_moments.
TEST(RunningMeanStd, MergeIsStableBaselinesUpdateFromMoments) {
  RunningMeanStd stats = MakeStats(1);
  ColumnMoments batch(1);
  ASSERT_TRUE(batch.Add((Matrix(2, 1) << 1.0f, 3.0f).finished()).ok());
  EXPECT_EQ(batch.mean()[0], 2.0);
  EXPECT_EQ(batch.var()[0], 1.0);
  EXPECT_EQ(batch.count(), 2.0);
  ASSERT_TRUE(stats.Merge(batch).ok());
  const double total = 1e-4 + 2.0;
  const double delta = 2.0;
  EXPECT_EQ(stats.mean()[0], 0.0 + delta * 2.0 / total);
  EXPECT_EQ(stats.var()[0], (1.0 * 1e-4 + 1.0 * 2.0 + delta * delta * 1e-4 * 2.0 / total) / total);
  EXPECT_EQ(stats.count(), total);
}

// Several steps, each merging the moments of several submissions' rows,
// equal the population moments of every row (and the start) computed in
// long double.
TEST(RunningMeanStd, StepsOfBatchesEqualTheFloat64ReferenceOfAllRows) {
  constexpr int kDim = 4;
  RunningMeanStd stats = MakeStats(kDim);
  std::vector<Matrix> all;
  uint32_t seed = 1;
  for (int step = 0; step < 5; ++step) {
    ColumnMoments moments(kDim);
    for (int submission = 0; submission < 3; ++submission) {
      all.push_back(Rows(1 + 7 * submission + step, kDim, seed++));
      ASSERT_TRUE(moments.Add(all.back()).ok());
    }
    ASSERT_TRUE(stats.Merge(moments).ok());
    const Reference r = PopulationMoments(all, kDim, RunningMeanStd::kInitialCount);
    EXPECT_NEAR(stats.count(), static_cast<double>(r.count), 1e-12 * static_cast<double>(r.count));
    for (int j = 0; j < kDim; ++j) {
      SCOPED_TRACE(::testing::Message() << "step " << step << " column " << j);
      EXPECT_NEAR(stats.mean()[j], static_cast<double>(r.mean[j]),
                  1e-12 * (1 + std::abs(static_cast<double>(r.mean[j]))));
      EXPECT_NEAR(stats.var()[j], static_cast<double>(r.var[j]),
                  1e-12 * static_cast<double>(r.var[j]));
    }
  }
}

TEST(ColumnMoments, BatchesEqualTheirStackedRows) {
  constexpr int kDim = 3;
  const std::vector<Matrix> batches = {Rows(5, kDim, 1), Rows(1, kDim, 2), Rows(12, kDim, 3)};
  ColumnMoments moments(kDim);
  for (const Matrix& b : batches) ASSERT_TRUE(moments.Add(b).ok());
  const Reference r = PopulationMoments(batches, kDim, /*prior_count=*/0);
  EXPECT_EQ(moments.count(), 18.0);
  for (int j = 0; j < kDim; ++j) {
    EXPECT_NEAR(moments.mean()[j], static_cast<double>(r.mean[j]), 1e-12);
    EXPECT_NEAR(moments.var()[j], static_cast<double>(r.var[j]),
                1e-12 * static_cast<double>(r.var[j]));
  }
  moments.Clear();
  EXPECT_EQ(moments.count(), 0.0);
}

TEST(RunningMeanStd, EmptyMomentsChangeNothing) {
  RunningMeanStd stats = MakeStats(2);
  ASSERT_TRUE(stats.Merge(ColumnMoments(2)).ok());
  EXPECT_EQ(stats.count(), 1e-4);
  EXPECT_EQ(stats.var(), std::vector<double>(2, 1.0));
}

// Normalize against the definition in long double, with clipped and
// unclipped values; Backward is 1/sqrt(var + ε) inside and 0 where clipped.
TEST(RunningMeanStd, NormalizeAndBackwardFollowTheDefinition) {
  auto stats = RunningMeanStd::FromStatistics(RunningConfig(/*clip=*/2.0f, /*epsilon=*/1e-3f),
                                              {1.0, -0.5}, {4.0, 0.25}, 10.0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  Matrix x(3, 2);
  x << 2.0f, -0.5f,  // inside
      9.0f, 0.3f,    // clipped above, inside
      -7.0f, -5.0f;  // clipped below in both
  Matrix z;
  ASSERT_TRUE(stats->Normalize(x, &z).ok());
  const long double mean[] = {1.0L, -0.5L};
  const long double var[] = {4.0L, 0.25L};
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (int j = 0; j < 2; ++j) {
      const long double s = std::sqrt(var[j] + static_cast<long double>(1e-3f));
      long double u = (x(i, j) - mean[j]) / s;
      u = std::fmin(std::fmax(u, -2.0L), 2.0L);
      EXPECT_FLOAT_EQ(z(i, j), static_cast<float>(u)) << i << "," << j;
    }
  }
  EXPECT_EQ(z(1, 0), 2.0f);
  EXPECT_EQ(z(2, 1), -2.0f);

  Matrix dz = Matrix::Constant(3, 2, 3.0f);
  Matrix dx;
  ASSERT_TRUE(stats->Backward(x, dz, &dx).ok());
  EXPECT_FLOAT_EQ(dx(0, 0), static_cast<float>(3.0 / std::sqrt(4.0 + 1e-3f)));
  EXPECT_FLOAT_EQ(dx(0, 1), static_cast<float>(3.0 / std::sqrt(0.25 + 1e-3f)));
  EXPECT_FLOAT_EQ(dx(1, 1), static_cast<float>(3.0 / std::sqrt(0.25 + 1e-3f)));
  EXPECT_EQ(dx(1, 0), 0.0f);
  EXPECT_EQ(dx(2, 0), 0.0f);
  EXPECT_EQ(dx(2, 1), 0.0f);
}

// torch.clamp passes the gradient at the bounds themselves.
TEST(RunningMeanStd, BackwardPassesAtExactlyTheClipBound) {
  // var + ε = 0.75 + 0.25 = 1 exactly, so x = ±2 normalises to exactly ±2.
  auto stats = RunningMeanStd::FromStatistics(RunningConfig(/*clip=*/2.0f, /*epsilon=*/0.25f),
                                              {0.0}, {0.75}, 1.0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  Matrix x(2, 1);
  x << 2.0f, -2.0f;
  Matrix z, dx;
  ASSERT_TRUE(stats->Normalize(x, &z).ok());
  ASSERT_TRUE(stats->Backward(x, Matrix::Ones(2, 1), &dx).ok());
  EXPECT_EQ(z(0, 0), 2.0f);
  EXPECT_EQ(z(1, 0), -2.0f);
  EXPECT_EQ(dx(0, 0), 1.0f);
  EXPECT_EQ(dx(1, 0), 1.0f);
}

TEST(RunningMeanStdErrors, BadMergeChangesNothing) {
  RunningMeanStd stats = MakeStats(2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> good = {1.0, 2.0};
  EXPECT_EQ(stats.Merge({1.0}, {1.0}, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Merge(good, good, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Merge(good, good, nan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Merge({1.0, nan}, good, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Merge(good, {1.0, -1.0}, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Merge(ColumnMoments(3)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.mean(), std::vector<double>(2, 0.0));
  EXPECT_EQ(stats.var(), std::vector<double>(2, 1.0));
  EXPECT_EQ(stats.count(), 1e-4);
  // And the next valid merge works.
  EXPECT_TRUE(stats.Merge(good, good, 3).ok());
}

TEST(RunningMeanStdErrors, ShapesStatisticsAndConfigAreChecked) {
  RunningMeanStd stats = MakeStats(2);
  Matrix out;
  EXPECT_EQ(stats.Normalize(Matrix(2, 3), &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Normalize(Matrix(0, 2), &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stats.Backward(Matrix::Zero(2, 2), Matrix::Zero(3, 2), &out).code(),
            absl::StatusCode::kInvalidArgument);
  ColumnMoments moments(2);
  EXPECT_EQ(moments.Add(Matrix(4, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(moments.count(), 0.0);

  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(RunningMeanStd::FromStatistics(RunningConfig(), {0.0}, {1.0, 1.0}, 1).ok());
  EXPECT_FALSE(RunningMeanStd::FromStatistics(RunningConfig(), {}, {}, 1).ok());
  EXPECT_FALSE(RunningMeanStd::FromStatistics(RunningConfig(), {inf}, {1.0}, 1).ok());
  EXPECT_FALSE(RunningMeanStd::FromStatistics(RunningConfig(), {0.0}, {-1.0}, 1).ok());
  EXPECT_FALSE(RunningMeanStd::FromStatistics(RunningConfig(), {0.0}, {1.0}, 0).ok());
  EXPECT_FALSE(RunningMeanStd::Create(0, RunningConfig()).ok());
  EXPECT_FALSE(RunningMeanStd::Create(2, InputNormalizationConfig{}).ok());  // kNone

  EXPECT_TRUE(ValidateInputNormalizationConfig(InputNormalizationConfig{}).ok());
  absl::Status clip = ValidateInputNormalizationConfig(RunningConfig(/*clip=*/0.0f));
  EXPECT_EQ(clip.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(clip.message(), HasSubstr("input_normalization.clip"));
  absl::Status epsilon = ValidateInputNormalizationConfig(RunningConfig(10.0f, std::nanf("")));
  EXPECT_THAT(epsilon.message(), HasSubstr("input_normalization.epsilon"));
}

}  // namespace
}  // namespace deltaserve::model
