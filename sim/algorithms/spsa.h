// Gradient estimates of a black-box scalar cost c(y) from evaluations only.
//
// SPSA with antithetic pairs: for each draw k pick Δ_k ∈ {−1, +1}^m uniformly
// and estimate
//
//   ĝ = (1/K)·Σ_k [c(y + h·Δ_k) − c(y − h·Δ_k)] / (2h) · Δ_k
//
// (1/Δ_i = Δ_i for ±1 entries). E[ĝ] = ∇c(y) + O(h²) for smooth c; for a
// quantised or noisy c, h must be large enough that c(y ± hΔ) differ by more
// than the quantum and the noise. Costs 2K evaluations whatever m is.
#ifndef DELTASERVE_SIM_ALGORITHMS_SPSA_H_
#define DELTASERVE_SIM_ALGORITHMS_SPSA_H_

#include <functional>
#include <random>

#include "absl/types/span.h"

namespace deltaserve::sim {

// Writes the SPSA estimate of ∇c(y) into grad (same size as y) using `draws`
// antithetic pairs with step h > 0.
void SpsaGradient(const std::function<double(absl::Span<const float>)>& cost,
                  absl::Span<const float> y, float h, int draws, std::mt19937_64& rng,
                  absl::Span<float> grad);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_SPSA_H_
