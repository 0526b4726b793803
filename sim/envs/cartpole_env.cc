#include "deltaserve/sim/envs/cartpole_env.h"

#include <cmath>

namespace deltaserve::sim {
namespace {

constexpr double kGravity = 9.8;
constexpr double kMassCart = 1.0;
constexpr double kMassPole = 0.1;
constexpr double kTotalMass = kMassCart + kMassPole;
constexpr double kLength = 0.5;  // half the pole's length
constexpr double kPoleMassLength = kMassPole * kLength;
constexpr double kForceMag = 10.0;
constexpr double kTau = 0.02;  // seconds per step
constexpr double kThetaThreshold = 12.0 * 2.0 * M_PI / 360.0;
constexpr double kXThreshold = 2.4;

}  // namespace

CartPole::Observation CartPole::Reset() {
  std::uniform_real_distribution<double> uniform(-0.05, 0.05);
  x_ = uniform(rng_);
  x_dot_ = uniform(rng_);
  theta_ = uniform(rng_);
  theta_dot_ = uniform(rng_);
  steps_ = 0;
  return observation();
}

CartPole::StepResult CartPole::Step(int action) {
  // Equations of motion (Florian 2007, as in gym), integrated with Euler:
  //   temp = (F + m_p·l·θ̇²·sin θ) / M
  //   θ̈ = (g·sin θ − cos θ·temp) / (l·(4/3 − m_p·cos²θ / M))
  //   ẍ = temp − m_p·l·θ̈·cos θ / M
  const double force = action == 0 ? -kForceMag : kForceMag;
  const double cos_theta = std::cos(theta_);
  const double sin_theta = std::sin(theta_);
  const double temp = (force + kPoleMassLength * theta_dot_ * theta_dot_ * sin_theta) / kTotalMass;
  const double theta_acc = (kGravity * sin_theta - cos_theta * temp) /
                           (kLength * (4.0 / 3.0 - kMassPole * cos_theta * cos_theta / kTotalMass));
  const double x_acc = temp - kPoleMassLength * theta_acc * cos_theta / kTotalMass;
  x_ += kTau * x_dot_;
  x_dot_ += kTau * x_acc;
  theta_ += kTau * theta_dot_;
  theta_dot_ += kTau * theta_acc;
  ++steps_;

  StepResult result;
  result.reward = 1.0f;
  result.terminated = x_ < -kXThreshold || x_ > kXThreshold || theta_ < -kThetaThreshold ||
                      theta_ > kThetaThreshold;
  result.truncated = !result.terminated && steps_ >= kMaxSteps;
  return result;
}

CartPole::Observation CartPole::observation() const {
  return {static_cast<float>(x_), static_cast<float>(x_dot_), static_cast<float>(theta_),
          static_cast<float>(theta_dot_)};
}

}  // namespace deltaserve::sim
