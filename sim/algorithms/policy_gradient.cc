#include "sim/algorithms/policy_gradient.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::sim {

void Softmax(absl::Span<const float> logits, absl::Span<float> probs) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  float sum = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs[i] = std::exp(logits[i] - max_logit);
    sum += probs[i];
  }
  for (float& p : probs) p /= sum;
}

int SampleCategorical(absl::Span<const float> logits, std::mt19937_64& rng) {
  std::vector<float> probs(logits.size());
  Softmax(logits, absl::MakeSpan(probs));
  const float u = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
  float cumulative = 0.0f;
  for (size_t i = 0; i + 1 < probs.size(); ++i) {
    cumulative += probs[i];
    if (u < cumulative) return static_cast<int>(i);
  }
  return static_cast<int>(probs.size()) - 1;
}

void EpisodeBuffer::Add(absl::Span<const float> observation, absl::Span<const float> logits,
                        int action, float reward, uint64_t version) {
  observations_.insert(observations_.end(), observation.begin(), observation.end());
  logits_.insert(logits_.end(), logits.begin(), logits.end());
  actions_.push_back(action);
  rewards_.push_back(reward);
  min_version_ = std::min(min_version_, version);
}

void EpisodeBuffer::EndEpisode() {
  if (episode_ends_.empty() ? rows() > 0 : rows() > episode_ends_.back()) {
    episode_ends_.push_back(rows());
  }
}

void EpisodeBuffer::Append(const EpisodeBuffer& other) {
  if (other.episode_ends_.empty()) return;
  const int n = other.episode_ends_.back();
  const int offset = rows();
  observations_.insert(observations_.end(), other.observations_.begin(),
                       other.observations_.begin() + n * observation_dim_);
  logits_.insert(logits_.end(), other.logits_.begin(), other.logits_.begin() + n * num_actions_);
  actions_.insert(actions_.end(), other.actions_.begin(), other.actions_.begin() + n);
  rewards_.insert(rewards_.end(), other.rewards_.begin(), other.rewards_.begin() + n);
  for (int end : other.episode_ends_) episode_ends_.push_back(offset + end);
  min_version_ = std::min(min_version_, other.min_version_);
}

void EpisodeBuffer::Clear() {
  observations_.clear();
  logits_.clear();
  actions_.clear();
  rewards_.clear();
  episode_ends_.clear();
  min_version_ = UINT64_MAX;
}

std::vector<float> ComputeAdvantages(absl::Span<const float> rewards,
                                     absl::Span<const int> episode_ends,
                                     const ReinforceOptions& options) {
  const int rows = static_cast<int>(rewards.size());
  if (rows == 0) return {};
  // G_t = r_t + γ·G_{t+1}, restarted at each episode's end.
  std::vector<float> returns(rows);
  std::vector<int> step_index(rows);
  int begin = 0;
  for (int end : episode_ends) {
    float g = 0.0f;
    for (int t = end - 1; t >= begin; --t) {
      g = rewards[t] + options.gamma * g;
      returns[t] = g;
      step_index[t] = t - begin;
    }
    begin = end;
  }
  if (options.baseline == Baseline::kNone) return returns;

  if (options.baseline == Baseline::kTimestepMean) {
    // b_k = mean over episodes of G at step index k (episodes still running).
    const int longest = *std::max_element(step_index.begin(), step_index.end()) + 1;
    std::vector<double> sum(longest, 0.0);
    std::vector<int> count(longest, 0);
    for (int t = 0; t < rows; ++t) {
      sum[step_index[t]] += returns[t];
      ++count[step_index[t]];
    }
    for (int t = 0; t < rows; ++t) {
      returns[t] -= static_cast<float>(sum[step_index[t]] / count[step_index[t]]);
    }
  }
  // Centre and scale to unit variance (a no-op centring for kTimestepMean
  // up to the residual mean).
  double mean = 0.0;
  for (float g : returns) mean += g;
  mean /= rows;
  double var = 0.0;
  for (float g : returns) var += (g - mean) * (g - mean);
  const double stddev = std::sqrt(var / rows) + 1e-6;
  for (float& g : returns) g = static_cast<float>((g - mean) / stddev);
  return returns;
}

PolicyGradientBatch EpisodeBuffer::BuildReinforce(const ReinforceOptions& options) const {
  const int n = episode_ends_.empty() ? 0 : episode_ends_.back();
  PolicyGradientBatch batch;
  batch.version = min_version_ == UINT64_MAX ? 0 : min_version_;
  batch.inputs = model::ConstMatrixMap(observations_.data(), n, observation_dim_);
  batch.acted = model::ConstMatrixMap(logits_.data(), n, num_actions_);
  batch.deltas.resize(n, num_actions_);
  if (n == 0) return batch;
  const std::vector<float> advantages =
      ComputeAdvantages(absl::MakeConstSpan(rewards_.data(), n), episode_ends_, options);
  // δ_t = (softmax(z_t) − onehot(a_t))·A_t / N
  for (int t = 0; t < n; ++t) {
    float* delta = batch.deltas.row(t).data();
    Softmax(absl::MakeConstSpan(&logits_[t * num_actions_], num_actions_),
            absl::MakeSpan(delta, num_actions_));
    delta[actions_[t]] -= 1.0f;
    const float scale = advantages[t] / static_cast<float>(n);
    for (int a = 0; a < num_actions_; ++a) delta[a] *= scale;
  }
  return batch;
}

}  // namespace deltaserve::sim
