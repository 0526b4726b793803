#include "deltaserve/server/core/noise_scale.h"

#include <cmath>
#include <limits>

namespace deltaserve::server {

void GradientNoiseScale::AddUnit(double sq_norm, double dot_earlier, double w, double v) {
  if (!(w > 0.0) || !(v > 0.0) || !std::isfinite(w) || !std::isfinite(v) ||
      !std::isfinite(sq_norm) || !std::isfinite(dot_earlier)) {
    return;
  }
  if (step_units_ == 0) dot_earlier = 0.0;  // Nothing earlier in the step.
  const double cross = 2.0 * dot_earlier;
  step_cross_ += cross;
  step_m_ += cross * cross;
  step_d_ += 2.0 * w * step_w_;
  step_w_ += w;
  step_q_ += sq_norm;
  step_w2_ += w * w;
  step_v_ += v;
  ++step_units_;
}

void GradientNoiseScale::ResetStep() {
  step_units_ = 0;
  step_w_ = step_cross_ = step_d_ = step_m_ = step_q_ = step_w2_ = step_v_ = 0.0;
}

void GradientNoiseScale::Reset() {
  ResetStep();
  units_ = 0;
  w1_ = n_ = d_ = m_ = q_ = w2_ = v2_ = 0.0;
}

void GradientNoiseScale::EndStep(double dot_past) {
  if (step_units_ == 0) return;
  if (!std::isfinite(dot_past)) dot_past = 0.0;
  if (units_ == 0) dot_past = 0.0;  // No earlier step.
  const double past = 2.0 * dot_past;
  n_ += step_cross_ + past;
  d_ += step_d_ + 2.0 * step_w_ * w1_;
  m_ += step_m_ + past * past;
  q_ += step_q_;
  w2_ += step_w2_;
  v2_ += step_v_;
  units_ += step_units_;
  // Age every unit by one step: λ → decay·λ (the ratios are unchanged).
  const double d2 = decay_ * decay_;
  w1_ = decay_ * (w1_ + step_w_);
  n_ *= d2;
  d_ *= d2;
  m_ *= d2 * d2;
  q_ *= d2;
  w2_ *= d2;
  v2_ *= d2;
  ResetStep();
}

bool GradientNoiseScale::has_estimate() const {
  return units_ >= 2 && d_ > 0.0 && v2_ > 0.0 && std::isfinite(n_) && std::isfinite(q_);
}

double GradientNoiseScale::gradient_sq() const {
  return has_estimate() ? n_ / d_ : std::numeric_limits<double>::quiet_NaN();
}

double GradientNoiseScale::gradient_sq_error() const {
  return has_estimate() ? std::sqrt(m_) / d_ : std::numeric_limits<double>::quiet_NaN();
}

double GradientNoiseScale::trace_sigma() const {
  return has_estimate() ? (q_ - w2_ * (n_ / d_)) / v2_ : std::numeric_limits<double>::quiet_NaN();
}

double GradientNoiseScale::noise_scale() const {
  const double g2 = gradient_sq();
  const double trace = trace_sigma();
  if (!(g2 > 0.0) || !(trace > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return trace / g2;
}

double GradientNoiseScale::noise_scale_lower_bound() const {
  const double bound = gradient_sq() + z_ * gradient_sq_error();
  const double trace = trace_sigma();
  if (!(bound > 0.0) || !(trace > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return trace / bound;
}

}  // namespace deltaserve::server
