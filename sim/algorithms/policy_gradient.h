// REINFORCE for a softmax policy whose logits come from the server's model,
// with δ = ∂loss/∂logits in closed form (no autodiff).
//
// For a batch of N steps with logits z_t, actions a_t and advantages A_t
// (reinforce.h) the loss is l = −(1/N)·Σ_t A_t·log π(a_t | s_t) with
// π = softmax(z), so
//
//   δ_t = ∂l/∂z_t = (softmax(z_t) − onehot(a_t))·A_t / N.
#ifndef DELTASERVE_SIM_ALGORITHMS_POLICY_GRADIENT_H_
#define DELTASERVE_SIM_ALGORITHMS_POLICY_GRADIENT_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/sim/algorithms/episode_buffer.h"
#include "deltaserve/sim/algorithms/reinforce.h"

namespace deltaserve::sim {

// probs = softmax(logits), computed stably (max subtracted). Sizes must match.
void Softmax(absl::Span<const float> logits, absl::Span<float> probs);

// Draws an index with probability softmax(logits)[i].
int SampleCategorical(absl::Span<const float> logits, std::mt19937_64& rng);

// δ at `logits` [N × num_actions] for the batch's discrete actions (indices
// in column 0 of batch.actions) and advantages. `logits` may be the ones
// acted on or fresh ones for the same inputs.
model::Matrix SoftmaxDeltas(const ReinforceBatch& batch, const model::Matrix& logits);

// What one SubmitDelta carries: X, the logits acted on (ỹ), δ, and the
// oldest model version that produced any of the logits.
struct PolicyGradientBatch {
  model::Matrix inputs;  // [N × observation_dim]
  model::Matrix acted;   // [N × num_actions]
  model::Matrix deltas;  // [N × num_actions]
  uint64_t version = 0;
};

// The submission for all closed episodes of `episodes` (outputs = logits,
// discrete actions). Steps of an unclosed episode are ignored.
PolicyGradientBatch BuildReinforce(const EpisodeBuffer& episodes, const ReinforceOptions& options);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_POLICY_GRADIENT_H_
