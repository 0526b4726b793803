// The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018,
// "An Empirical Model of Large-Batch Training", appendix A), estimated from
// gradient norms at two batch sizes without a second backward pass.
//
// Each optimizer step accumulates its gradient from "units" (what the
// learner backpropagates at once: one submission, or a group of them),
// each a weighted sum of per-row gradients: g_u = Σ_r c_r ∇l_r, with
// w_u = Σ c_r and v_u = Σ c_r² over its rows (c_r = 1 for SUM reduction and
// no staleness scale; the staleness scale and MEAN's 1/(n·m) enter c_r).
// g_u / w_u estimates the true gradient G with covariance Σ·v_u/w_u², so
//   E|g_u/w_u|² = |G|² + tr(Σ)·v_u/w_u²        (a "small batch")
// and for the step's sum g = Σ_u g_u, with W = Σ w_u, V = Σ v_u,
//   E|g/W|²     = |G|² + tr(Σ)·V/W²            (the "big batch").
// With a = mean_u |g_u/w_u|², x_s = mean_u v_u/w_u², b = |g/W|², x_b = V/W²,
// the unbiased estimates are
//   tr(Σ) ≈ S = (a − b)/(x_s − x_b),   |G|² ≈ (b·x_s − a·x_b)/(x_s − x_b)
// (for k equal units of B rows: McCandlish's B_small = B, B_big = kB).
// A step with one unit has x_s = x_b and gives no estimate (the Trainer then
// pairs two consecutive one-unit steps, docs/operations.md). Both estimates
// are smoothed by their own exponential moving average and the reported
// noise scale is the ratio of the averages, in rows.
//
// Not thread-safe (the learner owns it). No allocation.
#ifndef DELTASERVE_SERVER_CORE_NOISE_SCALE_H_
#define DELTASERVE_SERVER_CORE_NOISE_SCALE_H_

#include <cstdint>

namespace deltaserve::server {

class GradientNoiseScale {
 public:
  // `decay`: the EMA's weight on the past (0.95: about 20 steps).
  explicit GradientNoiseScale(double decay = 0.95) : decay_(decay) {}

  // One unit of the step in progress: |g_u|², w_u, v_u (w_u > 0).
  void AddUnit(double sq_norm, double w, double v);
  // Ends the step whose summed gradient has |g|² = `step_sq_norm`: updates
  // the averages if the step had two units or more (true), else changes
  // nothing (false). Forgets the step's units either way.
  bool EndStep(double step_sq_norm);
  // Forgets the units of the step in progress (an import dropped G).
  void ResetStep();

  uint64_t units() const { return units_; }
  // The step in progress' W and V (Σ w_u, Σ v_u).
  double step_w() const { return w_sum_; }
  double step_v() const { return v_sum_; }
  // Whether estimates have been averaged, and the averages.
  bool has_estimate() const { return steps_ > 0; }
  double trace_sigma() const { return trace_sigma_; }  // EMA of S
  double gradient_sq() const { return gradient_sq_; }  // EMA of |G|²
  // trace_sigma() / gradient_sq(), in rows; NaN without an estimate or
  // while the average |G|² is not positive (noise dominates: the estimate
  // is then meaningless, not infinite).
  double noise_scale() const;

 private:
  const double decay_;
  uint64_t units_ = 0;
  double a_sum_ = 0.0;   // Σ |g_u|²/w_u²
  double xs_sum_ = 0.0;  // Σ v_u/w_u²
  double w_sum_ = 0.0;
  double v_sum_ = 0.0;
  uint64_t steps_ = 0;
  double trace_sigma_ = 0.0;
  double gradient_sq_ = 0.0;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_NOISE_SCALE_H_
