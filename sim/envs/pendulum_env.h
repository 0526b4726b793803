// Pendulum: swing-up with the constants, dynamics, reward and limits of
// gymnasium's Pendulum-v1 (client/python/examples/pendulum_env.py is the same
// environment in numpy).
//
// State (θ, θ̇) in double, θ = 0 upright. One step of dt = 0.05 s with the
// torque u clipped to [−2, 2], g = 10, m = 1, l = 1:
//   reward = −(angle_normalize(θ)² + 0.1·θ̇² + 0.001·u²)   (the state before the step)
//   θ̇' = clip(θ̇ + (3g/(2l)·sin θ + 3/(m·l²)·u)·dt, −8, 8)
//   θ'  = θ + θ̇'·dt
// Observation (cos θ, sin θ, θ̇). Episodes never terminate; they are truncated
// after kMaxSteps steps. Reset draws θ uniform in [−π, π] and θ̇ in [−1, 1].
#ifndef DELTASERVE_SIM_ENVS_PENDULUM_ENV_H_
#define DELTASERVE_SIM_ENVS_PENDULUM_ENV_H_

#include <array>
#include <cstdint>
#include <random>

namespace deltaserve::sim {

class Pendulum {
 public:
  static constexpr int kObservationDim = 3;
  static constexpr int kMaxSteps = 200;
  static constexpr double kMaxTorque = 2.0;
  static constexpr double kMaxSpeed = 8.0;

  using Observation = std::array<float, kObservationDim>;

  struct StepResult {
    float reward = 0.0f;
    bool truncated = false;  // this step was the episode's kMaxSteps-th
  };

  // Reset draws come from a std::mt19937_64 seeded with `seed`.
  explicit Pendulum(uint64_t seed) : rng_(seed) { Reset(); }

  // Starts a new episode and returns its first observation.
  Observation Reset();

  // Applies `torque` (clipped to ±kMaxTorque; NaN counts as 0) for one step.
  // Stepping after truncation continues the physics; callers should Reset.
  StepResult Step(double torque);

  // Sets the state without touching the step count (tests, evaluations).
  void SetState(double theta, double theta_dot);

  Observation observation() const;
  double theta() const { return theta_; }
  double theta_dot() const { return theta_dot_; }
  int steps() const { return steps_; }

 private:
  std::mt19937_64 rng_;
  double theta_ = 0, theta_dot_ = 0;
  int steps_ = 0;
};

// Maps an angle to [−π, π) as gymnasium does: ((x + π) mod 2π) − π, with a
// floored modulo.
double AngleNormalize(double x);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ENVS_PENDULUM_ENV_H_
