// A black-box regression task with a known optimum: learn y*(x) = A·x for a
// fixed A [out × in] (entries uniform in [−1, 1] from a seed), observing only
//
//   c(x, y) = round(100·‖y − A·x‖²) / 100 + N(0, noise²)
//
// — quantised to 0.01 and noisy, so no client can differentiate it. For a
// single identity layer the optimum is W = A, b = 0 (DistanceToOptimum).
#ifndef DELTASERVE_SIM_ENVS_LINEAR_TARGET_TASK_H_
#define DELTASERVE_SIM_ENVS_LINEAR_TARGET_TASK_H_

#include <cstdint>
#include <optional>
#include <random>

#include "absl/types/span.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::sim {

class LinearTargetTask {
 public:
  LinearTargetTask(int input_dim, int output_dim, uint64_t seed, double noise);

  int input_dim() const { return static_cast<int>(a_.cols()); }
  int output_dim() const { return static_cast<int>(a_.rows()); }
  const model::Matrix& a() const { return a_; }

  // n rows of inputs, entries uniform in [−1, 1].
  model::Matrix SampleInputs(int n, std::mt19937_64& rng) const;

  // The black box c(x, y) for one row (sizes input_dim, output_dim).
  double NoisyCost(absl::Span<const float> x, absl::Span<const float> y,
                   std::mt19937_64& rng) const;

  // The true mean loss (1/n)·Σ ‖y_i − A·x_i‖² over rows of X and Y.
  double TrueLoss(const model::Matrix& x, const model::Matrix& y) const;

  // ‖[W b] − [A 0]‖_F for a single identity layer's flat parameters
  // (W [out × in] row-major, then b); nullopt if the size does not match.
  std::optional<double> DistanceToOptimum(absl::Span<const float> parameters) const;

 private:
  model::Matrix a_;
  double noise_;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ENVS_LINEAR_TARGET_TASK_H_
