// CartPole: the classic cart-pole balancing task with the constants,
// dynamics (explicit Euler) and termination rules of gym's CartPole-v1.
//
// Observation (x, ẋ, θ, θ̇); actions 0 (push left) and 1 (push right) with
// force 10 N; reward 1 per step including the last; the episode terminates
// when |x| > 2.4 or |θ| > 12°, and is truncated after 500 steps. Reset draws
// every state component uniformly from [−0.05, 0.05].
#ifndef DELTASERVE_SIM_ENVS_CARTPOLE_ENV_H_
#define DELTASERVE_SIM_ENVS_CARTPOLE_ENV_H_

#include <array>
#include <cstdint>
#include <random>

namespace deltaserve::sim {

class CartPole {
 public:
  static constexpr int kObservationDim = 4;
  static constexpr int kNumActions = 2;
  static constexpr int kMaxSteps = 500;

  using Observation = std::array<float, kObservationDim>;

  struct StepResult {
    float reward = 0.0f;
    bool terminated = false;  // pole fell or cart left the track
    bool truncated = false;   // reached kMaxSteps without terminating
    bool done() const { return terminated || truncated; }
  };

  // Reset draws come from a std::mt19937_64 seeded with `seed`.
  explicit CartPole(uint64_t seed) : rng_(seed) { Reset(); }

  // Starts a new episode and returns its first observation.
  Observation Reset();

  // Applies action 0 or 1 (anything else counts as 1) for one 0.02 s step.
  // Stepping after done() continues the physics; callers should Reset.
  StepResult Step(int action);

  Observation observation() const;
  int steps() const { return steps_; }

 private:
  std::mt19937_64 rng_;
  double x_ = 0, x_dot_ = 0, theta_ = 0, theta_dot_ = 0;
  int steps_ = 0;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ENVS_CARTPOLE_ENV_H_
