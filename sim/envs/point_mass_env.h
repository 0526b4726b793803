// PointMass: a 1-D continuous-control task for Gaussian policies.
//
// State (p, v); action a ∈ ℝ is a force, clipped to [−2, 2]; per step of
// dt = 0.1: v ← v + a·dt, p ← p + v·dt, reward −(p² + 0.01·a²) at the new
// state. Episodes last exactly kHorizon steps; Reset draws p uniform in
// [−1, 1] and v uniform in [−0.5, 0.5]. Holding a = 0 returns about −50 on
// average (the start velocity carries the mass away); the linear feedback
// a = −4p − 3v returns about −1.8.
#ifndef DELTASERVE_SIM_ENVS_POINT_MASS_ENV_H_
#define DELTASERVE_SIM_ENVS_POINT_MASS_ENV_H_

#include <array>
#include <cstdint>
#include <random>

namespace deltaserve::sim {

class PointMass {
 public:
  static constexpr int kObservationDim = 2;
  static constexpr int kHorizon = 50;
  static constexpr float kMaxForce = 2.0f;

  using Observation = std::array<float, kObservationDim>;

  explicit PointMass(uint64_t seed) : rng_(seed) { Reset(); }

  Observation Reset();

  // Applies force `action` (clipped); returns the reward. done() after
  // kHorizon steps.
  float Step(float action);

  bool done() const { return steps_ >= kHorizon; }
  Observation observation() const { return {p_, v_}; }

 private:
  std::mt19937_64 rng_;
  float p_ = 0, v_ = 0;
  int steps_ = 0;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ENVS_POINT_MASS_ENV_H_
