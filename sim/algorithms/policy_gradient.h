// REINFORCE for a softmax policy whose logits come from the server's model,
// with δ = ∂loss/∂logits in closed form (no autodiff).
//
// For a batch of N steps with logits z_t, actions a_t and advantages A_t the
// loss is l = −(1/N)·Σ_t A_t·log π(a_t | s_t) with π = softmax(z), so
//
//   δ_t = ∂l/∂z_t = (softmax(z_t) − onehot(a_t))·A_t / N.
//
// A_t is the discounted return-to-go G_t = Σ_{k≥t} γ^{k−t}·r_k minus a
// baseline (see Baseline).
#ifndef DELTASERVE_SIM_ALGORITHMS_POLICY_GRADIENT_H_
#define DELTASERVE_SIM_ALGORITHMS_POLICY_GRADIENT_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "model/spec.h"

namespace deltaserve::sim {

// probs = softmax(logits), computed stably (max subtracted). Sizes must match.
void Softmax(absl::Span<const float> logits, absl::Span<float> probs);

// Draws an index with probability softmax(logits)[i].
int SampleCategorical(absl::Span<const float> logits, std::mt19937_64& rng);

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

// What one SubmitDelta carries: X, the logits acted on (ỹ), δ, and the
// oldest model version that produced any of the logits.
struct PolicyGradientBatch {
  model::Matrix inputs;  // [N × observation_dim]
  model::Matrix acted;   // [N × num_actions]
  model::Matrix deltas;  // [N × num_actions]
  uint64_t version = 0;
};

// Steps of whole episodes collected for one submission.
class EpisodeBuffer {
 public:
  EpisodeBuffer(int observation_dim, int num_actions)
      : observation_dim_(observation_dim), num_actions_(num_actions) {}

  // Records one step: the observation acted on, the logits that chose the
  // action (from model `version`), the action, and the reward it earned.
  // Sizes must be observation_dim and num_actions.
  void Add(absl::Span<const float> observation, absl::Span<const float> logits, int action,
           float reward, uint64_t version);

  // Closes the current episode (its returns stop here).
  void EndEpisode();

  // Appends the closed episodes of `other` (same dimensions), in order.
  void Append(const EpisodeBuffer& other);

  int rows() const { return static_cast<int>(actions_.size()); }
  int episodes() const { return static_cast<int>(episode_ends_.size()); }
  void Clear();

  // Builds the submission for all closed episodes. Steps of an unclosed
  // episode are ignored. Requires episodes() ≥ 1.
  PolicyGradientBatch BuildReinforce(const ReinforceOptions& options) const;

 private:
  int observation_dim_;
  int num_actions_;
  std::vector<float> observations_;  // rows × observation_dim, row-major
  std::vector<float> logits_;        // rows × num_actions
  std::vector<int> actions_;
  std::vector<float> rewards_;
  std::vector<int> episode_ends_;  // one past each closed episode's last row
  uint64_t min_version_ = UINT64_MAX;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_POLICY_GRADIENT_H_
