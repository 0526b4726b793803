#include "deltaserve/model/normalization.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::model {
namespace {

absl::Status CheckRows(const char* what, int dim, const Eigen::Ref<const Matrix>& x) {
  if (x.rows() < 1 || x.cols() != dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": expected [n x ", dim, "] with n >= 1, got [", x.rows(), " x ", x.cols(), "]"));
  }
  return absl::OkStatus();
}

// Chan et al.'s parallel update of (mean, var, count) with a batch's
// (batch_mean, batch_var, b), in the order of operations of
// stable-baselines3's update_from_moments, so results agree with it bit for
// bit where numpy evaluates elementwise:
//   δ = μ_b − μ,  N = n + b,  μ ← μ + δ·b/N,
//   σ² ← (σ²·n + σ_b²·b + δ²·n·b/N) / N
void ChanMerge(absl::Span<const double> batch_mean, absl::Span<const double> batch_var,
               double batch_count, std::vector<double>& mean, std::vector<double>& var,
               double& count) {
  const double n = count;
  const double b = batch_count;
  const double total = n + b;
  for (size_t j = 0; j < mean.size(); ++j) {
    const double delta = batch_mean[j] - mean[j];
    mean[j] = mean[j] + delta * b / total;
    const double m2 = var[j] * n + batch_var[j] * b + delta * delta * n * b / total;
    var[j] = m2 / total;
  }
  count = b + n;
}

}  // namespace

absl::Status ValidateInputNormalizationConfig(const InputNormalizationConfig& config) {
  using Kind = InputNormalizationConfig::Kind;
  if (config.kind == Kind::kNone) return absl::OkStatus();
  if (config.kind != Kind::kRunningMeanStd) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_normalization.kind: expected NONE or RUNNING_MEAN_STD, got enum value ",
                     static_cast<int>(config.kind)));
  }
  // Comparisons with NaN are false, so these checks also reject NaN.
  if (!(std::isfinite(config.clip) && config.clip > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_normalization.clip: expected a finite value > 0 (0 means 10), got ", config.clip));
  }
  if (!(std::isfinite(config.epsilon) && config.epsilon > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_normalization.epsilon: expected a finite value > 0 (0 means 1e-8), got ",
        config.epsilon));
  }
  return absl::OkStatus();
}

ColumnMoments::ColumnMoments(int dim)
    : mean_(static_cast<size_t>(std::max(dim, 0)), 0.0),
      var_(static_cast<size_t>(std::max(dim, 0)), 0.0) {}

absl::StatusOr<ColumnMoments> ColumnMoments::FromMoments(std::vector<double> mean,
                                                         std::vector<double> var, double count) {
  if (mean.empty() || mean.size() != var.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("column moments: expected mean and var of the same size > 0, got ",
                     mean.size(), " and ", var.size()));
  }
  for (size_t j = 0; j < mean.size(); ++j) {
    if (!std::isfinite(mean[j]) || !(std::isfinite(var[j]) && var[j] >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("column moments: expected a finite mean and a finite var >= 0, got ",
                       mean[j], " and ", var[j], " at column ", j));
    }
  }
  if (!(std::isfinite(count) && count >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("column moments: expected a finite count >= 0, got ", count));
  }
  ColumnMoments moments(static_cast<int>(mean.size()));
  moments.mean_ = std::move(mean);
  moments.var_ = std::move(var);
  moments.count_ = count;
  return moments;
}

// One batch, two passes in double per column:
//   μ_b = Σ_i x_i / n,   σ_b² = Σ_i (x_i − μ_b)² / n
// then merged into the running moments by ChanMerge (the first batch is
// copied, so one batch's moments are exactly its own).
absl::Status ColumnMoments::Add(const Eigen::Ref<const Matrix>& X) {
  DELTASERVE_RETURN_IF_ERROR(CheckRows("inputs", dim(), X));
  const size_t d = mean_.size();
  const double n = static_cast<double>(X.rows());
  std::vector<double> batch_mean(d, 0.0);
  std::vector<double> batch_var(d, 0.0);
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    for (size_t j = 0; j < d; ++j) batch_mean[j] += static_cast<double>(X(i, j));
  }
  for (double& m : batch_mean) m /= n;
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    for (size_t j = 0; j < d; ++j) {
      const double centred = static_cast<double>(X(i, j)) - batch_mean[j];
      batch_var[j] += centred * centred;
    }
  }
  for (double& v : batch_var) v /= n;
  if (count_ == 0) {
    mean_ = std::move(batch_mean);
    var_ = std::move(batch_var);
    count_ = n;
  } else {
    ChanMerge(batch_mean, batch_var, n, mean_, var_, count_);
  }
  return absl::OkStatus();
}

void ColumnMoments::Clear() {
  std::fill(mean_.begin(), mean_.end(), 0.0);
  std::fill(var_.begin(), var_.end(), 0.0);
  count_ = 0;
}

RunningMeanStd::RunningMeanStd(const InputNormalizationConfig& config, std::vector<double> mean,
                               std::vector<double> var, double count)
    : config_(config), mean_(std::move(mean)), var_(std::move(var)), count_(count) {
  UpdateStd();
}

absl::StatusOr<RunningMeanStd> RunningMeanStd::Create(int input_dim,
                                                      const InputNormalizationConfig& config) {
  if (input_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("input_dim: expected > 0, got ", input_dim));
  }
  const size_t d = static_cast<size_t>(input_dim);
  return FromStatistics(config, std::vector<double>(d, 0.0), std::vector<double>(d, 1.0),
                        kInitialCount);
}

absl::StatusOr<RunningMeanStd> RunningMeanStd::FromStatistics(
    const InputNormalizationConfig& config, std::vector<double> mean, std::vector<double> var,
    double count) {
  DELTASERVE_RETURN_IF_ERROR(ValidateInputNormalizationConfig(config));
  if (config.kind != InputNormalizationConfig::Kind::kRunningMeanStd) {
    return absl::InvalidArgumentError(
        "input_normalization.kind: expected RUNNING_MEAN_STD for running statistics, got NONE");
  }
  if (mean.empty() || mean.size() != var.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input statistics: expected mean and var of the same size > 0, got ",
                     mean.size(), " and ", var.size()));
  }
  for (size_t j = 0; j < mean.size(); ++j) {
    if (!std::isfinite(mean[j])) {
      return absl::InvalidArgumentError(
          absl::StrCat("input statistics: expected finite means, got ", mean[j], " at column ", j));
    }
    if (!(std::isfinite(var[j]) && var[j] >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input statistics: expected finite variances >= 0, got ", var[j], " at column ", j));
    }
  }
  if (!(std::isfinite(count) && count > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input statistics: expected a finite count > 0, got ", count));
  }
  return RunningMeanStd(config, std::move(mean), std::move(var), count);
}

absl::Status RunningMeanStd::Merge(absl::Span<const double> batch_mean,
                                   absl::Span<const double> batch_var, double batch_count) {
  if (batch_mean.size() != mean_.size() || batch_var.size() != mean_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input statistics: expected batch moments of ", mean_.size(), " columns, got ",
                     batch_mean.size(), " means and ", batch_var.size(), " variances"));
  }
  if (!(std::isfinite(batch_count) && batch_count > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input statistics: expected a finite batch count > 0, got ", batch_count));
  }
  for (size_t j = 0; j < batch_mean.size(); ++j) {
    if (!std::isfinite(batch_mean[j]) || !(std::isfinite(batch_var[j]) && batch_var[j] >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("input statistics: expected a finite batch mean and a finite batch "
                       "variance >= 0, got ",
                       batch_mean[j], " and ", batch_var[j], " at column ", j));
    }
  }
  ChanMerge(batch_mean, batch_var, batch_count, mean_, var_, count_);
  UpdateStd();
  return absl::OkStatus();
}

absl::Status RunningMeanStd::Merge(const ColumnMoments& batch) {
  if (batch.dim() != input_dim()) {
    return absl::InvalidArgumentError(absl::StrCat("input statistics: expected batch moments of ",
                                                   input_dim(), " columns, got ", batch.dim()));
  }
  if (batch.count() == 0) return absl::OkStatus();
  return Merge(batch.mean(), batch.var(), batch.count());
}

void RunningMeanStd::UpdateStd() {
  std_.resize(var_.size());
  const double eps = config_.epsilon;
  for (size_t j = 0; j < var_.size(); ++j) std_[j] = std::sqrt(var_[j] + eps);
}

// u_ij = (x_ij − μ_j) / s_j with s_j = sqrt(σ²_j + ε), all in double;
// z_ij = float(clamp(u_ij, −c, c)).
absl::Status RunningMeanStd::Normalize(const Eigen::Ref<const Matrix>& X, Matrix* Z) const {
  DELTASERVE_RETURN_IF_ERROR(CheckRows("inputs", input_dim(), X));
  const double c = config_.clip;
  Z->resize(X.rows(), X.cols());
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    for (Eigen::Index j = 0; j < X.cols(); ++j) {
      const double u = (static_cast<double>(X(i, j)) - mean_[j]) / std_[j];
      (*Z)(i, j) = static_cast<float>(std::clamp(u, -c, c));
    }
  }
  return absl::OkStatus();
}

// ∂z/∂x = 1/s_j inside [−c, c] and 0 outside, with u_ij as in Normalize.
absl::Status RunningMeanStd::Backward(const Eigen::Ref<const Matrix>& X,
                                      const Eigen::Ref<const Matrix>& dZ, Matrix* dX) const {
  DELTASERVE_RETURN_IF_ERROR(CheckRows("inputs", input_dim(), X));
  DELTASERVE_RETURN_IF_ERROR(CheckRows("input gradient", input_dim(), dZ));
  if (dZ.rows() != X.rows()) {
    return absl::InvalidArgumentError(absl::StrCat("input gradient: expected ", X.rows(),
                                                   " rows (one per input row), got ", dZ.rows()));
  }
  const double c = config_.clip;
  dX->resize(X.rows(), X.cols());
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    for (Eigen::Index j = 0; j < X.cols(); ++j) {
      const double u = (static_cast<double>(X(i, j)) - mean_[j]) / std_[j];
      const bool clipped = u < -c || u > c;
      (*dX)(i, j) = clipped ? 0.0f : static_cast<float>(static_cast<double>(dZ(i, j)) / std_[j]);
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::model
