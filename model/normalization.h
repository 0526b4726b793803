// Shared input normalisation: per-column running mean and variance in
// float64 (the wire's InputNormalization RUNNING_MEAN_STD), applied before
// the first layer:
//
//   Z = clip((X − mean)/sqrt(var + ε), −c, c)        (per column, into float32)
//
// The statistics change only by Merge (once per optimizer step, with the
// moments of that step's input rows); no gradient flows into them. Backward
// carries ∂l/∂Z back to ∂l/∂X through the normalisation.
#ifndef DELTASERVE_MODEL_NORMALIZATION_H_
#define DELTASERVE_MODEL_NORMALIZATION_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::model {

// Plain mirror of the wire's InputNormalization, defaults filled in (clip
// 0 → 10, epsilon 0 → 1e-8 by whoever converts from protobuf).
struct InputNormalizationConfig {
  enum class Kind { kNone, kRunningMeanStd };
  Kind kind = Kind::kNone;
  float clip = 10.0f;     // c
  float epsilon = 1e-8f;  // ε
};

// INVALID_ARGUMENT ("input_normalization.clip: expected ...") for an unknown
// kind or, with kRunningMeanStd, a clip or epsilon that is not finite and > 0.
absl::Status ValidateInputNormalizationConfig(const InputNormalizationConfig& config);

// Population moments (mean, variance with divisor n, count n) of a set of
// rows, per column, in float64. Rows are added a batch at a time; the result
// equals the moments of all rows added, stacked (up to rounding: each batch's
// moments are two-pass sums in double, combined by Chan's parallel update).
// Starts empty (count 0). Not thread-safe.
class ColumnMoments {
 public:
  explicit ColumnMoments(int dim);
  // Moments restored from a checkpoint (count 0: empty, as Clear leaves
  // them). INVALID_ARGUMENT unless mean and var have the same size > 0,
  // every mean is finite, every var finite and >= 0, and count finite and
  // >= 0.
  static absl::StatusOr<ColumnMoments> FromMoments(std::vector<double> mean,
                                                   std::vector<double> var, double count);

  // Adds X's rows. INVALID_ARGUMENT, nothing changed, unless X is
  // [n × dim()] with n >= 1. Does not check finiteness (the caller has).
  absl::Status Add(const Eigen::Ref<const Matrix>& X);
  // Back to empty (count 0).
  void Clear();

  int dim() const { return static_cast<int>(mean_.size()); }
  double count() const { return count_; }
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& var() const { return var_; }

 private:
  std::vector<double> mean_;
  std::vector<double> var_;
  double count_ = 0;
};

// Running statistics of the inputs and the normalisation they define.
// Immutable except through Merge; const methods are safe from any thread.
class RunningMeanStd {
 public:
  // The count the statistics start with (stable-baselines3's epsilon).
  static constexpr double kInitialCount = 1e-4;

  // Statistics at mean 0, var 1, count kInitialCount for input_dim columns.
  // INVALID_ARGUMENT if input_dim <= 0, or the config is invalid or not
  // kRunningMeanStd.
  static absl::StatusOr<RunningMeanStd> Create(int input_dim,
                                               const InputNormalizationConfig& config);
  // Statistics restored from a checkpoint, journal or ParameterUpdate.
  // INVALID_ARGUMENT unless config is valid and kRunningMeanStd, mean and var
  // have the same size > 0, every mean is finite, every var finite and >= 0,
  // and count finite and > 0.
  static absl::StatusOr<RunningMeanStd> FromStatistics(const InputNormalizationConfig& config,
                                                       std::vector<double> mean,
                                                       std::vector<double> var, double count);

  // Merges a batch's population moments into the statistics, exactly as
  // stable-baselines3's RunningMeanStd.update_from_moments (Chan et al.),
  // per column, with n = count, b = batch_count, N = n + b:
  //   δ = batch_mean − mean
  //   mean ← mean + δ·b/N
  //   var  ← (var·n + batch_var·b + δ²·n·b/N) / N
  //   count ← N
  // INVALID_ARGUMENT, nothing changed, if the sizes differ from input_dim(),
  // batch_count is not finite and > 0, a batch mean is not finite or a batch
  // var is not finite and >= 0.
  absl::Status Merge(absl::Span<const double> batch_mean, absl::Span<const double> batch_var,
                     double batch_count);
  // Merge(batch.mean(), batch.var(), batch.count()); OK and a no-op when
  // batch is empty. INVALID_ARGUMENT, nothing changed, if batch.dim()
  // differs from input_dim().
  absl::Status Merge(const ColumnMoments& batch);

  // Z = clip((X − mean)/sqrt(var + ε), −c, c), each element computed in
  // double and rounded once to float. X must be [n × input_dim()] with
  // n >= 1, else INVALID_ARGUMENT. *Z is resized; it may not alias X.
  absl::Status Normalize(const Eigen::Ref<const Matrix>& X, Matrix* Z) const;

  // ∂l/∂X from dZ = ∂l/∂Z for the Z that Normalize(X) gives:
  //   ∂l/∂X_ij = dZ_ij / sqrt(var_j + ε)   where |(X_ij − mean_j)/sqrt(var_j + ε)| <= c
  //            = 0                          where it was clipped
  // (torch.clamp's gradient: the bounds themselves pass). X and dZ must both
  // be [n × input_dim()] with n >= 1, else INVALID_ARGUMENT. *dX is resized;
  // it may alias dZ but not X.
  absl::Status Backward(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const Matrix>& dZ,
                        Matrix* dX) const;

  int input_dim() const { return static_cast<int>(mean_.size()); }
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& var() const { return var_; }
  double count() const { return count_; }
  float clip() const { return config_.clip; }
  float epsilon() const { return config_.epsilon; }

 private:
  RunningMeanStd(const InputNormalizationConfig& config, std::vector<double> mean,
                 std::vector<double> var, double count);
  // std_[j] = sqrt(var_[j] + ε), kept in step with var_.
  void UpdateStd();

  InputNormalizationConfig config_;
  std::vector<double> mean_;
  std::vector<double> var_;
  double count_;
  std::vector<double> std_;
};

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_NORMALIZATION_H_
