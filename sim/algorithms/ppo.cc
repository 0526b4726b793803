#include "deltaserve/sim/algorithms/ppo.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::sim {

namespace {
constexpr double kHalfLogTwoPi = 0.91893853320467274178;  // ½·log(2π)
}  // namespace

std::vector<double> GaussianLogProb(const model::Matrix& mu, absl::Span<const float> log_std,
                                    const model::Matrix& actions) {
  std::vector<double> log_prob(mu.rows(), 0.0);
  for (Eigen::Index i = 0; i < mu.rows(); ++i) {
    double sum = 0.0;
    for (Eigen::Index j = 0; j < mu.cols(); ++j) {
      const double l = log_std[j];
      const double z = (static_cast<double>(actions(i, j)) - mu(i, j)) * std::exp(-l);
      sum += -0.5 * z * z - l - kHalfLogTwoPi;
    }
    log_prob[i] = sum;
  }
  return log_prob;
}

GaeResult Gae(absl::Span<const float> rewards, absl::Span<const float> values,
              absl::Span<const float> next_values, absl::Span<const uint8_t> terminated,
              absl::Span<const uint8_t> ends, int num_envs, double gamma, double lambda) {
  const size_t n = rewards.size();
  GaeResult result;
  result.advantages.assign(n, 0.0f);
  result.returns.assign(n, 0.0f);
  std::vector<double> running(num_envs, 0.0);
  const int steps = static_cast<int>(n) / num_envs;
  for (int t = steps - 1; t >= 0; --t) {
    for (int e = 0; e < num_envs; ++e) {
      const size_t k = static_cast<size_t>(t) * num_envs + e;
      const double d =
          rewards[k] + gamma * (terminated[k] ? 0.0 : 1.0) * next_values[k] - values[k];
      running[e] = d + gamma * lambda * (ends[k] ? 0.0 : 1.0) * running[e];
      result.advantages[k] = static_cast<float>(running[e]);
      result.returns[k] = static_cast<float>(running[e] + values[k]);
    }
  }
  return result;
}

std::vector<float> NormalizeAdvantages(absl::Span<const float> advantages) {
  const size_t n = advantages.size();
  std::vector<float> out(n, 0.0f);
  if (n < 2) return out;
  double mean = 0.0;
  for (float a : advantages) mean += a;
  mean /= static_cast<double>(n);
  double squares = 0.0;
  for (float a : advantages) squares += (a - mean) * (a - mean);
  const double std = std::sqrt(squares / static_cast<double>(n - 1));
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>((advantages[i] - mean) / (std + 1e-8));
  return out;
}

PpoPolicyGradient PpoPolicyDeltas(const model::Matrix& mu, absl::Span<const float> log_std,
                                  const model::Matrix& actions,
                                  absl::Span<const double> old_log_prob,
                                  absl::Span<const float> advantages,
                                  const PpoPolicyOptions& options) {
  const Eigen::Index n = mu.rows();
  const Eigen::Index a = mu.cols();
  PpoPolicyGradient g;
  g.delta_mu.resize(n, a);
  g.clipped.assign(n, 0);
  g.ratio.assign(n, 0.0);
  std::vector<double> grad_log_std(a, 0.0);
  const std::vector<double> log_prob = GaussianLogProb(mu, log_std, actions);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double ratio = std::exp(log_prob[i] - old_log_prob[i]);
    const double adv = advantages[i];
    const bool clipped =
        (adv > 0 && ratio > 1.0 + options.clip) || (adv < 0 && ratio < 1.0 - options.clip);
    // ∂L/∂log π for this row.
    const double d_log_prob = clipped ? 0.0 : -adv * ratio / static_cast<double>(n);
    g.ratio[i] = ratio;
    g.clipped[i] = clipped ? 1 : 0;
    for (Eigen::Index j = 0; j < a; ++j) {
      const double inv_var = std::exp(-2.0 * static_cast<double>(log_std[j]));
      const double diff = static_cast<double>(actions(i, j)) - mu(i, j);
      g.delta_mu(i, j) = static_cast<float>(d_log_prob * diff * inv_var);
      grad_log_std[j] += d_log_prob * (diff * diff * inv_var - 1.0);
    }
  }
  g.grad_log_std.resize(a);
  for (Eigen::Index j = 0; j < a; ++j) {
    g.grad_log_std[j] = static_cast<float>(grad_log_std[j] - options.ent_coef);
  }
  return g;
}

model::Matrix ValueDeltas(const model::Matrix& values, absl::Span<const float> returns,
                          double vf_coef) {
  const Eigen::Index n = values.rows();
  model::Matrix deltas(n, 1);
  for (Eigen::Index i = 0; i < n; ++i) {
    deltas(i, 0) = static_cast<float>(vf_coef * (static_cast<double>(values(i, 0)) - returns[i]) /
                                      static_cast<double>(n));
  }
  return deltas;
}

RewardScaler::RewardScaler(int num_envs, double gamma, double clip, double epsilon)
    : returns_(num_envs, 0.0), gamma_(gamma), clip_(clip), epsilon_(epsilon) {}

std::vector<float> RewardScaler::Scale(absl::Span<const float> rewards,
                                       absl::Span<const uint8_t> ends) {
  const size_t e = returns_.size();
  double batch_mean = 0.0;
  for (size_t k = 0; k < e; ++k) {
    returns_[k] = returns_[k] * gamma_ + rewards[k];
    batch_mean += returns_[k];
  }
  batch_mean /= static_cast<double>(e);
  double batch_var = 0.0;
  for (size_t k = 0; k < e; ++k)
    batch_var += (returns_[k] - batch_mean) * (returns_[k] - batch_mean);
  batch_var /= static_cast<double>(e);
  // Chan's parallel update, as actor_critic.RunningMeanStd.update.
  const double delta = batch_mean - mean_;
  const double total = count_ + static_cast<double>(e);
  const double m2 = var_ * count_ + batch_var * static_cast<double>(e) +
                    delta * delta * count_ * static_cast<double>(e) / total;
  mean_ += delta * static_cast<double>(e) / total;
  var_ = m2 / total;
  count_ = total;
  std::vector<float> scaled(e);
  const double scale = 1.0 / std::sqrt(var_ + epsilon_);
  for (size_t k = 0; k < e; ++k) {
    scaled[k] = static_cast<float>(std::clamp(rewards[k] * scale, -clip_, clip_));
    if (ends[k]) returns_[k] = 0.0;
  }
  return scaled;
}

}  // namespace deltaserve::sim
