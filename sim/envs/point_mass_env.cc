#include "deltaserve/sim/envs/point_mass_env.h"

#include <algorithm>

namespace deltaserve::sim {
namespace {
constexpr float kDt = 0.1f;
}  // namespace

PointMass::Observation PointMass::Reset() {
  p_ = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng_);
  v_ = std::uniform_real_distribution<float>(-0.5f, 0.5f)(rng_);
  steps_ = 0;
  return observation();
}

float PointMass::Step(float action) {
  const float a = std::clamp(action, -kMaxForce, kMaxForce);
  v_ += a * kDt;
  p_ += v_ * kDt;
  ++steps_;
  return -(p_ * p_ + 0.01f * a * a);
}

}  // namespace deltaserve::sim
