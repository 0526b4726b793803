// The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018,
// "An Empirical Model of Large-Batch Training", appendix A), estimated from
// the gradients the learner already computes, without a second backward pass.
//
// The learner accumulates each optimizer step's gradient from "units" (what
// it backpropagates at once: one submission, or a group of them), each a
// weighted sum of per-row gradients: g_u = Σ_r c_r ∇l_r, with w_u = Σ c_r
// and v_u = Σ c_r² over its rows (c_r = 1 for SUM reduction and no staleness
// scale; the staleness scale and MEAN's 1/(n·m) enter c_r). If the rows are
// independent draws with mean gradient G and covariance Σ,
//   E[g_i·g_j] = w_i w_j |G|²                 for two distinct units i ≠ j,
//   E|g_i|²    = w_i² |G|² + v_i tr(Σ).
// Every pair of distinct units thus estimates |G|², and each unit's own
// norm then tr(Σ). Units are weighted by λ = decay^age (age in optimizer
// steps; the step in progress has age 0), over all units so far:
//   N = Σ_{i≠j} λ_i λ_j g_i·g_j,   D = Σ_{i≠j} λ_i λ_j w_i w_j,
//   Q = Σ λ_i² |g_i|²,   W2 = Σ λ_i² w_i²,   V2 = Σ λ_i² v_i,
// and the estimates are |G|² ≈ N/D and tr(Σ) ≈ (Q − W2·N/D)/V2 (both
// unbiased: E N = D|G|², E Q = W2|G|² + V2 tr(Σ)). Pairs within a step and
// across steps count alike, so a step of one unit (one submission per step,
// e.g. one simulator) contributes its pairs with every earlier step: about
// (1/(1−decay))² pairs rather than one. N needs no second copy of any
// gradient: unit u adds 2·g_u·(the step's earlier units' sum), which the
// learner gets from norms it computes anyway, and a step adds
// 2·G·R with R = Σ λ_j g_j over earlier steps, a vector the caller keeps
// (R ← decay·(R + G) once per step, fused with the dot: one pass).
//
// The estimate of |G|² is noisy when a step's rows are far fewer than the
// noise scale (its standard deviation ~ tr(Σ)/(rows·√pairs)), and near zero
// the ratio explodes. So each cross term's square is summed too
// (M = Σ λ⁴ c², the variance of N when G = 0: distinct pairs are then
// uncorrelated), giving the standard error SE = √M / D of N/D, and the
// reported value is the lower confidence bound
//   B_low = tr(Σ) / (|G|² + z·SE)       (z = 3 by default),
// which equals B_simple once |G|² is measured precisely (SE ≪ |G|²) and is
// otherwise a bound below it ("at least this many rows"): it never spikes
// where |G|² happens to be estimated near zero. NaN (no value) before two
// units, while tr(Σ) is not positive, or while even |G|² + z·SE is not
// (the pairs are anti-correlated: an optimizer that overshoots makes
// consecutive steps' gradients point against each other).
//
// Not thread-safe (the learner owns it). No allocation.
#ifndef DELTASERVE_SERVER_CORE_NOISE_SCALE_H_
#define DELTASERVE_SERVER_CORE_NOISE_SCALE_H_

#include <cstdint>

namespace deltaserve::server {

class GradientNoiseScale {
 public:
  // `decay`: each optimizer step multiplies every earlier unit's weight by it
  // (0.98: about 50 steps). `z`: standard errors in the lower bound.
  explicit GradientNoiseScale(double decay = 0.98, double z = 3.0) : decay_(decay), z_(z) {}

  double decay() const { return decay_; }

  // One unit of the step in progress: |g_u|², g_u·(Σ of the step's earlier
  // units; 0 for its first), w_u > 0, v_u > 0. Ignored otherwise.
  void AddUnit(double sq_norm, double dot_earlier, double w, double v);
  // Ends the step in progress; `dot_past` = G·R, the step's summed gradient
  // G with R = Σ λ_j g_j over the earlier steps' units (the caller's vector,
  // before it becomes decay·(R + G)). Then ages every unit by one step.
  void EndStep(double dot_past);
  // Forgets the units of the step in progress (an import dropped G).
  void ResetStep();
  // Forgets everything (the caller zeroes R too).
  void Reset();

  uint64_t units() const { return step_units_; }  // In the step in progress.
  // Whether there are two units or more (N, D defined), and the estimates.
  bool has_estimate() const;
  double gradient_sq() const;        // N/D ≈ |G|²
  double gradient_sq_error() const;  // √M/D, its standard error
  double trace_sigma() const;        // (Q − W2·N/D)/V2 ≈ tr(Σ)
  // tr(Σ)/|G|² in rows; NaN without an estimate or while either is not
  // positive.
  double noise_scale() const;
  // tr(Σ)/(|G|² + z·SE) in rows, the reported value (above); NaN without
  // an estimate or while either part is not positive.
  double noise_scale_lower_bound() const;

 private:
  const double decay_;
  const double z_;
  // The step in progress (age 0): its units' sums.
  uint64_t step_units_ = 0;
  double step_w_ = 0.0;      // Σ w_u
  double step_cross_ = 0.0;  // Σ 2·g_u·(earlier units of the step)
  double step_d_ = 0.0;      // Σ 2·w_u·(earlier units' w)
  double step_m_ = 0.0;      // Σ (2·g_u·earlier)²
  double step_q_ = 0.0;      // Σ |g_u|²
  double step_w2_ = 0.0;     // Σ w_u²
  double step_v_ = 0.0;      // Σ v_u
  // Every completed step, weighted (as of the next step's age 0).
  uint64_t units_ = 0;
  double w1_ = 0.0;  // Σ λ w
  double n_ = 0.0, d_ = 0.0, m_ = 0.0, q_ = 0.0, w2_ = 0.0, v2_ = 0.0;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_NOISE_SCALE_H_
