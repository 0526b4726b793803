// Learning-rate schedules: the rate of each optimizer step as a function of
// the number of steps taken before it (the wire's LearningRateSchedule).
#ifndef DELTASERVE_MODEL_SCHEDULE_H_
#define DELTASERVE_MODEL_SCHEDULE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace deltaserve::model {

// Plain mirror of the wire's LearningRateSchedule. Fields are used as given
// (KIND_UNSPECIFIED is converted to kConstant by whoever converts from
// protobuf); fields a kind does not read are ignored.
struct LearningRateScheduleConfig {
  enum class Kind { kConstant, kLinear, kCosine, kStep, kExponential };
  Kind kind = Kind::kConstant;
  uint64_t warmup_steps = 0;         // W; 0 = no warmup.
  uint64_t total_steps = 0;          // T (kLinear, kCosine): must be > 0.
  float final_learning_rate = 0.0f;  // kLinear, kCosine; must be >= 0 for every kind.
  uint64_t step_size = 0;            // kStep: must be > 0.
  float gamma = 0.0f;                // kStep, kExponential: must be > 0.
};

// INVALID_ARGUMENT naming the field ("optimizer.schedule.total_steps: ...")
// for an unknown kind, kLinear/kCosine with total_steps 0, kStep with
// step_size 0, kStep/kExponential with gamma not finite or <= 0, or a
// final_learning_rate that is negative or not finite.
absl::Status ValidateLearningRateSchedule(const LearningRateScheduleConfig& config);

// A validated schedule bound to its base rate lr. Immutable and cheap to
// copy; LearningRateAt is a pure function, safe from any thread.
class LearningRateSchedule {
 public:
  // INVALID_ARGUMENT if ValidateLearningRateSchedule(config) fails or
  // learning_rate is not finite and > 0 ("optimizer.learning_rate: ...").
  static absl::StatusOr<LearningRateSchedule> Create(const LearningRateScheduleConfig& config,
                                                     double learning_rate);

  // The rate of the step that follows k earlier steps (k = 0: the first).
  // With lr the base rate, W = warmup_steps, T = total_steps, final =
  // final_learning_rate, in double:
  //   k < W:         lr·(k+1)/W
  //   else j = k − W:
  //     kConstant     lr
  //     kLinear       lr + (final − lr)·min(j, T)/T
  //     kCosine       final + (lr − final)·(1 + cos(π·min(j, T)/T))/2
  //     kStep         lr·gamma^⌊j/step_size⌋
  //     kExponential  lr·gamma^j
  // Up to T these equal torch's LinearLR (start_factor 1, end_factor
  // final/lr), CosineAnnealingLR (T_max T, eta_min final), StepLR and
  // ExponentialLR; after T kLinear and kCosine hold at final. Always >= 0
  // (gamma^j may underflow to 0); finite except for kStep/kExponential with
  // gamma > 1, whose rate overflows to +inf eventually (Optimizer::Step
  // refuses such a step).
  double LearningRateAt(uint64_t k) const;

  const LearningRateScheduleConfig& config() const { return config_; }
  double base_learning_rate() const { return learning_rate_; }

 private:
  LearningRateSchedule(const LearningRateScheduleConfig& config, double learning_rate)
      : config_(config), learning_rate_(learning_rate) {}

  LearningRateScheduleConfig config_;
  double learning_rate_;
};

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_SCHEDULE_H_
