#include "deltaserve/sim/envs/pendulum_env.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::sim {
namespace {

constexpr double kGravity = 10.0;
constexpr double kMass = 1.0;
constexpr double kLength = 1.0;
constexpr double kDt = 0.05;  // seconds per step

}  // namespace

double AngleNormalize(double x) {
  // Python's % takes the divisor's sign; std::fmod the dividend's.
  double r = std::fmod(x + M_PI, 2.0 * M_PI);
  if (r < 0) r += 2.0 * M_PI;
  return r - M_PI;
}

Pendulum::Observation Pendulum::Reset() {
  theta_ = std::uniform_real_distribution<double>(-M_PI, M_PI)(rng_);
  theta_dot_ = std::uniform_real_distribution<double>(-1.0, 1.0)(rng_);
  steps_ = 0;
  return observation();
}

Pendulum::StepResult Pendulum::Step(double torque) {
  const double u = std::isnan(torque) ? 0.0 : std::clamp(torque, -kMaxTorque, kMaxTorque);
  const double angle = AngleNormalize(theta_);
  StepResult result;
  result.reward =
      static_cast<float>(-(angle * angle + 0.1 * theta_dot_ * theta_dot_ + 0.001 * u * u));
  // θ̈ = 3g/(2l)·sin θ + 3/(m·l²)·u, semi-implicit Euler: speed first, then angle.
  const double theta_acc =
      3.0 * kGravity / (2.0 * kLength) * std::sin(theta_) + 3.0 / (kMass * kLength * kLength) * u;
  theta_dot_ = std::clamp(theta_dot_ + theta_acc * kDt, -kMaxSpeed, kMaxSpeed);
  theta_ += theta_dot_ * kDt;
  ++steps_;
  result.truncated = steps_ >= kMaxSteps;
  return result;
}

void Pendulum::SetState(double theta, double theta_dot) {
  theta_ = theta;
  theta_dot_ = theta_dot;
}

Pendulum::Observation Pendulum::observation() const {
  return {static_cast<float>(std::cos(theta_)), static_cast<float>(std::sin(theta_)),
          static_cast<float>(theta_dot_)};
}

}  // namespace deltaserve::sim
