// PPO for a Gaussian policy as the δ each network receives, the C++ mirror of
// client/python/examples/actor_critic.py (same formulas, same sign
// convention: δ = ∂loss/∂output of a loss to minimise, the minibatch mean's
// 1/N included, docs/model.md). For a minibatch of N rows with policy mean
// μ_i (the mean network's output), a state-independent log-std ℓ = log σ
// (one value per action column), actions a_i, behaviour log-probabilities
// log π_old(a_i|s_i) and advantages Â_i:
//
//   r_i = exp(log π(a_i|s_i) − log π_old(a_i|s_i))
//   L_policy = −mean_i min(r_i Â_i, clip(r_i, 1−ε, 1+ε) Â_i) − c_ent·mean_i H(π(·|s_i))
//   L_value  = c_v·½·mean_i (V(s_i) − R_i)²
//
//   δ_μ[i]   = −(1/N)·m_i·Â_i·r_i·(a_i − μ_i)/σ²
//   ∂L/∂ℓ    = Σ_i −(1/N)·m_i·Â_i·r_i·((a_i − μ_i)²/σ² − 1) − c_ent
//   δ_V[i]   = c_v·(V(s_i) − R_i)/N
//
// with m_i = 0 where the clip binds (Â_i > 0 and r_i > 1+ε, or Â_i < 0 and
// r_i < 1−ε), else 1: there min() takes the clipped term, constant in θ.
// Everything is computed in double and returned as float.
#ifndef DELTASERVE_SIM_ALGORITHMS_PPO_H_
#define DELTASERVE_SIM_ALGORITHMS_PPO_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::sim {

// log N(a; μ, exp(ℓ)²) summed over the action columns, one value per row.
// mu and actions are [N × A]; log_std has A values.
std::vector<double> GaussianLogProb(const model::Matrix& mu, absl::Span<const float> log_std,
                                    const model::Matrix& actions);

// Generalised advantage estimation over a time-major rollout of T steps of E
// environments (index t·E + e). next_values[t·E + e] = V(s_{t+1}), the state
// step t reached (for a truncated episode its final observation, not the
// next episode's first), so truncation bootstraps and only termination cuts
// the value:
//   d_t = r_t + γ·(1 − terminated_t)·V(s_{t+1}) − V(s_t)
//   A_t = d_t + γ·λ·(1 − end_t)·A_{t+1},   A_T = 0
// (end_t: the episode ended at step t, terminated or truncated).
// returns = advantages + values. All spans have T·E entries.
struct GaeResult {
  std::vector<float> advantages;
  std::vector<float> returns;
};
GaeResult Gae(absl::Span<const float> rewards, absl::Span<const float> values,
              absl::Span<const float> next_values, absl::Span<const uint8_t> terminated,
              absl::Span<const uint8_t> ends, int num_envs, double gamma, double lambda);

// (A − mean)/(std + 1e-8) with Bessel's correction (torch.std); a single
// value becomes 0.
std::vector<float> NormalizeAdvantages(absl::Span<const float> advantages);

struct PpoPolicyOptions {
  double clip = 0.2;      // ε
  double ent_coef = 0.0;  // c_ent
};

// The policy loss's gradients for one minibatch (formulas at the top).
struct PpoPolicyGradient {
  model::Matrix delta_mu;           // [N × A]: the mean network's δ
  std::vector<float> grad_log_std;  // [A]: the whole gradient of ℓ
  std::vector<uint8_t> clipped;     // [N]: 1 where the clip binds (m_i = 0)
  std::vector<double> ratio;        // [N]: r_i
};
PpoPolicyGradient PpoPolicyDeltas(const model::Matrix& mu, absl::Span<const float> log_std,
                                  const model::Matrix& actions,
                                  absl::Span<const double> old_log_prob,
                                  absl::Span<const float> advantages,
                                  const PpoPolicyOptions& options);

// δ_V = c_v·(V − R)/N as an [N × 1] matrix; values is the value network's
// output [N × 1].
model::Matrix ValueDeltas(const model::Matrix& values, absl::Span<const float> returns,
                          double vf_coef);

// Divides rewards by the running standard deviation of each environment's
// discounted return, then clips to ±clip (gymnasium's NormalizeReward, as
// actor_critic.RewardScaler). The statistics start at mean 0, var 1, count
// 1e-4 and merge one step's E returns at a time; an environment's discounted
// return restarts after its episode ends.
class RewardScaler {
 public:
  RewardScaler(int num_envs, double gamma, double clip = 10.0, double epsilon = 1e-8);

  // rewards and ends: one per environment, for one step. Returns the scaled
  // rewards.
  std::vector<float> Scale(absl::Span<const float> rewards, absl::Span<const uint8_t> ends);

  double var() const { return var_; }

 private:
  std::vector<double> returns_;
  double gamma_, clip_, epsilon_;
  double mean_ = 0.0, var_ = 1.0, count_ = 1e-4;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_PPO_H_
