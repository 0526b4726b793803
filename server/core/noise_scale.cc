#include "deltaserve/server/core/noise_scale.h"

#include <cmath>
#include <limits>

namespace deltaserve::server {

void GradientNoiseScale::AddUnit(double sq_norm, double w, double v) {
  if (!(w > 0.0) || !std::isfinite(sq_norm) || !std::isfinite(v)) return;
  ++units_;
  a_sum_ += sq_norm / (w * w);
  xs_sum_ += v / (w * w);
  w_sum_ += w;
  v_sum_ += v;
}

void GradientNoiseScale::ResetStep() {
  units_ = 0;
  a_sum_ = xs_sum_ = w_sum_ = v_sum_ = 0.0;
}

bool GradientNoiseScale::EndStep(double step_sq_norm) {
  bool updated = false;
  if (units_ >= 2 && std::isfinite(step_sq_norm)) {
    const double k = static_cast<double>(units_);
    const double a = a_sum_ / k;
    const double xs = xs_sum_ / k;
    const double b = step_sq_norm / (w_sum_ * w_sum_);
    const double xb = v_sum_ / (w_sum_ * w_sum_);
    const double dx = xs - xb;
    if (dx > 0.0 && std::isfinite(dx)) {
      const double s = (a - b) / dx;
      const double g2 = (b * xs - a * xb) / dx;
      if (std::isfinite(s) && std::isfinite(g2)) {
        if (steps_ == 0) {
          trace_sigma_ = s;
          gradient_sq_ = g2;
        } else {
          trace_sigma_ = decay_ * trace_sigma_ + (1.0 - decay_) * s;
          gradient_sq_ = decay_ * gradient_sq_ + (1.0 - decay_) * g2;
        }
        ++steps_;
        updated = true;
      }
    }
  }
  ResetStep();
  return updated;
}

double GradientNoiseScale::noise_scale() const {
  if (steps_ == 0 || !(gradient_sq_ > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return trace_sigma_ / gradient_sq_;
}

}  // namespace deltaserve::server
