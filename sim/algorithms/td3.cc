#include "deltaserve/sim/algorithms/td3.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::sim {

ReplayBuffer::ReplayBuffer(int capacity, int obs_dim, int action_dim)
    : capacity_(capacity),
      observations_(capacity, obs_dim),
      actions_(capacity, action_dim),
      next_observations_(capacity, obs_dim),
      rewards_(capacity, 0.0f),
      terminated_(capacity, 0.0f) {}

void ReplayBuffer::Add(absl::Span<const float> obs, absl::Span<const float> action, float reward,
                       absl::Span<const float> next_obs, bool terminated) {
  const Eigen::Index i = static_cast<Eigen::Index>(added_ % capacity_);
  for (Eigen::Index c = 0; c < observations_.cols(); ++c) {
    observations_(i, c) = obs[c];
    next_observations_(i, c) = next_obs[c];
  }
  for (Eigen::Index c = 0; c < actions_.cols(); ++c) actions_(i, c) = action[c];
  rewards_[i] = reward;
  terminated_[i] = terminated ? 1.0f : 0.0f;
  ++added_;
}

int ReplayBuffer::size() const { return static_cast<int>(std::min<int64_t>(added_, capacity_)); }

void ReplayBuffer::Sample(std::mt19937_64& rng, int batch, Td3Batch* out) const {
  out->observations.resize(batch, observations_.cols());
  out->actions.resize(batch, actions_.cols());
  out->next_observations.resize(batch, next_observations_.cols());
  out->rewards.resize(batch);
  out->terminated.resize(batch);
  std::uniform_int_distribution<int> pick(0, size() - 1);
  for (int k = 0; k < batch; ++k) {
    const int i = pick(rng);
    out->observations.row(k) = observations_.row(i);
    out->actions.row(k) = actions_.row(i);
    out->next_observations.row(k) = next_observations_.row(i);
    out->rewards[k] = rewards_[i];
    out->terminated[k] = terminated_[i];
  }
}

model::Matrix SmoothedTargetActions(const model::Matrix& target_actor_out, std::mt19937_64& rng,
                                    double noise_std, double noise_clip, double action_scale) {
  std::normal_distribution<double> normal(0.0, 1.0);
  model::Matrix out(target_actor_out.rows(), target_actor_out.cols());
  for (Eigen::Index i = 0; i < out.rows(); ++i) {
    for (Eigen::Index j = 0; j < out.cols(); ++j) {
      const double n = std::clamp(noise_std * normal(rng), -noise_clip, noise_clip);
      out(i, j) = static_cast<float>(
          std::clamp((static_cast<double>(target_actor_out(i, j)) + n) * action_scale,
                     -action_scale, action_scale));
    }
  }
  return out;
}

std::vector<float> Td3Targets(absl::Span<const float> rewards, absl::Span<const float> q1_next,
                              absl::Span<const float> q2_next, absl::Span<const float> terminated,
                              double gamma) {
  std::vector<float> y(rewards.size());
  for (size_t i = 0; i < y.size(); ++i) {
    const double q = std::min<double>(q1_next[i], q2_next[i]);
    y[i] = static_cast<float>(rewards[i] + gamma * (1.0 - terminated[i]) * q);
  }
  return y;
}

model::Matrix Td3ActorDeltas(const model::Matrix& dq1_da, double action_scale) {
  const double scale =
      -action_scale / static_cast<double>(std::max<Eigen::Index>(1, dq1_da.rows()));
  model::Matrix delta(dq1_da.rows(), dq1_da.cols());
  for (Eigen::Index i = 0; i < delta.rows(); ++i) {
    for (Eigen::Index j = 0; j < delta.cols(); ++j) {
      delta(i, j) = static_cast<float>(scale * dq1_da(i, j));
    }
  }
  return delta;
}

void Polyak(absl::Span<float> target, absl::Span<const float> source, double tau) {
  const float keep = static_cast<float>(1.0 - tau);
  const float take = static_cast<float>(tau);
  for (size_t i = 0; i < target.size(); ++i) target[i] = keep * target[i] + take * source[i];
}

std::vector<float> TorchDefaultInit(std::mt19937_64& rng, int input_dim,
                                    absl::Span<const int> units) {
  std::vector<float> params;
  int fan_in = input_dim;
  for (const int fan_out : units) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    std::uniform_real_distribution<double> uniform(-bound, bound);
    for (int k = 0; k < fan_out * fan_in + fan_out; ++k) {
      params.push_back(static_cast<float>(uniform(rng)));
    }
    fan_in = fan_out;
  }
  return params;
}

}  // namespace deltaserve::sim
