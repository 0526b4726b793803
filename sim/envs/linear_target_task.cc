#include "deltaserve/sim/envs/linear_target_task.h"

#include <cmath>

namespace deltaserve::sim {

LinearTargetTask::LinearTargetTask(int input_dim, int output_dim, uint64_t seed, double noise)
    : a_(output_dim, input_dim), noise_(noise) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int i = 0; i < a_.size(); ++i) a_.data()[i] = uniform(rng);
}

model::Matrix LinearTargetTask::SampleInputs(int n, std::mt19937_64& rng) const {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  model::Matrix x(n, input_dim());
  for (int i = 0; i < x.size(); ++i) x.data()[i] = uniform(rng);
  return x;
}

double LinearTargetTask::NoisyCost(absl::Span<const float> x, absl::Span<const float> y,
                                   std::mt19937_64& rng) const {
  const Eigen::Map<const Eigen::VectorXf> xv(x.data(), input_dim());
  const Eigen::Map<const Eigen::VectorXf> yv(y.data(), output_dim());
  const double squared = (yv - a_ * xv).squaredNorm();
  return std::round(100.0 * squared) / 100.0 + std::normal_distribution<double>(0.0, noise_)(rng);
}

double LinearTargetTask::TrueLoss(const model::Matrix& x, const model::Matrix& y) const {
  // Y* = X·Aᵀ (rows are samples).
  return (y - x * a_.transpose()).rowwise().squaredNorm().mean();
}

std::optional<double> LinearTargetTask::DistanceToOptimum(
    absl::Span<const float> parameters) const {
  const size_t weights = static_cast<size_t>(a_.size());
  if (parameters.size() != weights + static_cast<size_t>(output_dim())) return std::nullopt;
  const model::ConstMatrixMap w(parameters.data(), output_dim(), input_dim());
  const Eigen::Map<const Eigen::VectorXf> b(parameters.data() + weights, output_dim());
  return std::sqrt((w - a_).squaredNorm() + b.squaredNorm());
}

}  // namespace deltaserve::sim
