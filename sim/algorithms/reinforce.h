// REINFORCE's advantages and the batch they weigh, shared by every policy
// (softmax: policy_gradient.h; Gaussian: gaussian_policy.h).
//
// A_t is the discounted return-to-go G_t = Σ_{k≥t} γ^{k−t}·r_k minus a
// baseline (see Baseline). The loss of a batch of N steps is
// l = −(1/N)·Σ_t A_t·log π(a_t | s_t); each policy's δ = ∂l/∂y follows from
// its π.
#ifndef DELTASERVE_SIM_ALGORITHMS_REINFORCE_H_
#define DELTASERVE_SIM_ALGORITHMS_REINFORCE_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/sim/algorithms/episode_buffer.h"

namespace deltaserve::sim {

enum class Baseline {
  kNone,             // A_t = G_t
  kBatchNormalised,  // A_t = (G_t − mean(G)) / std(G) over the batch
  kTimestepMean,     // A_t = (G_t − mean of G at the same step index over the
                     // batch's episodes) / std of those differences
};

struct ReinforceOptions {
  float gamma = 0.99f;
  Baseline baseline = Baseline::kBatchNormalised;
};

// Advantages A_t for steps whose rewards are `rewards`, split into episodes
// by `episode_ends` (one past each episode's last index, increasing, the last
// equal to rewards.size()); see Baseline.
std::vector<float> ComputeAdvantages(absl::Span<const float> rewards,
                                     absl::Span<const int> episode_ends,
                                     const ReinforceOptions& options);

// An EpisodeBuffer's closed episodes, ready for any policy's δ.
struct ReinforceBatch {
  model::Matrix inputs;   // X: the observations [N × observation_dim]
  model::Matrix acted;    // the outputs acted on [N × output_dim]
  model::Matrix actions;  // [N × action_dim]
  std::vector<float> advantages;
  uint64_t version = 0;  // the oldest version that produced any output
};

ReinforceBatch MakeReinforceBatch(const EpisodeBuffer& episodes, const ReinforceOptions& options);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_REINFORCE_H_
