// TD3's client-side pieces, the C++ mirror of client/python/examples/
// actor_critic.py (same formulas, same sign convention: δ = ∂loss/∂output of
// a loss to minimise, the minibatch mean's 1/N included, docs/model.md) and
// of the replay buffer and initialisation tools/torch_td3.py uses. Critics
// Q1, Q2, actor a = s_a·π(s) (s_a the action scale, π's output in [−1, 1]),
// targets Q1', Q2', π':
//
//   ã  = clip((π'(s') + clip(n, −c, c))·s_a, −s_a, s_a),  n ~ N(0, σ_target²)
//   y  = r + γ·(1 − terminated)·min(Q1'(s', ã), Q2'(s', ã))
//   L_actor = −mean_i Q1(s_i, s_a·π(s_i))  →  δ_π[i] = −s_a·∂Q1/∂a(s_i, a)/N
//   θ' ← (1 − τ)·θ' + τ·θ                  (Polyak averaging of the targets)
//
// The critics' δ_k = (Q_k − y)/N is formed by the server (ANCHORED surrogate,
// MEAN reduction, ỹ = y, δ = 0: docs/algorithms.md), so it has no function
// here.
#ifndef DELTASERVE_SIM_ALGORITHMS_TD3_H_
#define DELTASERVE_SIM_ALGORITHMS_TD3_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::sim {

// A minibatch drawn from a ReplayBuffer: N rows of each.
struct Td3Batch {
  model::Matrix observations;       // s   [N × obs_dim]
  model::Matrix actions;            // a   [N × action_dim]
  std::vector<float> rewards;       // r   [N]
  model::Matrix next_observations;  // s'  [N × obs_dim]
  std::vector<float> terminated;    // 1 where s' ended the episode by termination, else 0
};

// Uniform replay of (s, a, r, s', terminated) transitions, float32, in a ring
// of `capacity` rows: the (capacity+1)-th transition overwrites the first.
class ReplayBuffer {
 public:
  // capacity, obs_dim and action_dim ≥ 1 (the caller checks).
  ReplayBuffer(int capacity, int obs_dim, int action_dim);

  // obs and next_obs have obs_dim values, action has action_dim.
  void Add(absl::Span<const float> obs, absl::Span<const float> action, float reward,
           absl::Span<const float> next_obs, bool terminated);

  // Transitions held: min(added, capacity).
  int size() const;
  int64_t added() const { return added_; }
  int capacity() const { return capacity_; }

  // `batch` rows drawn uniformly with replacement from the held transitions
  // (indices from std::uniform_int_distribution over [0, size())) into *out,
  // resized. Needs size() ≥ 1 and batch ≥ 1.
  void Sample(std::mt19937_64& rng, int batch, Td3Batch* out) const;

 private:
  const int capacity_;
  model::Matrix observations_, actions_, next_observations_;
  std::vector<float> rewards_, terminated_;
  int64_t added_ = 0;
};

// Target policy smoothing: ã = clip((π'(s') + clip(n, −c, c))·s_a, −s_a, s_a)
// per entry, n ~ N(0, noise_std²) drawn with rng; target_actor_out is π'(s')
// (the tanh output, [N × A]). Returns ã [N × A].
model::Matrix SmoothedTargetActions(const model::Matrix& target_actor_out, std::mt19937_64& rng,
                                    double noise_std, double noise_clip, double action_scale);

// y = r + γ·(1 − terminated)·min(q1_next, q2_next), computed in double; all
// spans of N values.
std::vector<float> Td3Targets(absl::Span<const float> rewards, absl::Span<const float> q1_next,
                              absl::Span<const float> q2_next, absl::Span<const float> terminated,
                              double gamma);

// The actor's δ for −mean Q1(s, s_a·π(s)) at π's output (before scaling):
// −s_a·∂Q1/∂a/N, [N × A], from dq1_da [N × A] (the critic's input gradient
// at the action columns, InputGradient with δ = 1 per row).
model::Matrix Td3ActorDeltas(const model::Matrix& dq1_da, double action_scale);

// target ← (1 − τ)·target + τ·source, element-wise; equal sizes.
void Polyak(absl::Span<float> target, absl::Span<const float> source, double tau);

// Flat parameters (per layer: W row-major, then b; model/mlp.h's layout)
// for the layer widths `units` after an input of input_dim, drawn as
// torch.nn.Linear's default: W and b ~ U(−1/√fan_in, 1/√fan_in).
std::vector<float> TorchDefaultInit(std::mt19937_64& rng, int input_dim,
                                    absl::Span<const int> units);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_TD3_H_
