// REINFORCE for a Gaussian policy with fixed σ whose mean μ(s) comes from
// the server's model: the client acts with a = μ + σ·ξ, ξ ~ N(0, 1). For the
// loss l = −(1/N)·Σ_t A_t·log N(a_t; μ_t, σ²) (reinforce.h)
//
//   δ_t = ∂l/∂μ_t = −A_t·(a_t − μ_t) / (σ²·N).
#ifndef DELTASERVE_SIM_ALGORITHMS_GAUSSIAN_POLICY_H_
#define DELTASERVE_SIM_ALGORITHMS_GAUSSIAN_POLICY_H_

#include "deltaserve/model/spec.h"
#include "deltaserve/sim/algorithms/reinforce.h"

namespace deltaserve::sim {

// δ at `means` [N × action_dim] for the batch's actions and advantages.
// `means` may be the ones acted on or fresh ones for the same inputs.
model::Matrix GaussianDeltas(const ReinforceBatch& batch, const model::Matrix& means, float sigma);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_GAUSSIAN_POLICY_H_
