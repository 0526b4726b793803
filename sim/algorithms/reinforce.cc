#include "deltaserve/sim/algorithms/reinforce.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::sim {

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

ReinforceBatch MakeReinforceBatch(const EpisodeBuffer& episodes, const ReinforceOptions& options) {
  ReinforceBatch batch;
  batch.inputs = episodes.observations();
  batch.acted = episodes.outputs();
  batch.actions = episodes.actions();
  batch.advantages = ComputeAdvantages(episodes.rewards(), episodes.episode_ends(), options);
  batch.version = episodes.min_version();
  return batch;
}

}  // namespace deltaserve::sim
