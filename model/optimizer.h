// Optimizers over the flat parameter buffer with torch.optim semantics.
//
// One Optimizer belongs to one learner thread (not thread-safe). It owns its
// state (momentum buffers, Adam moments, step count) sized to the model.
#ifndef DELTASERVE_MODEL_OPTIMIZER_H_
#define DELTASERVE_MODEL_OPTIMIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "deltaserve/model/schedule.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::model {

// ‖g‖₂ exactly as Optimizer::Step computes it (float sums of squares over
// blocks of 1024, added in double): infinite when a block's sum overflows
// float, which Step refuses. Callers that accumulate gradients check it
// before accepting a contribution, so that a later Step cannot fail.
double GlobalNorm(absl::Span<const float> g);

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // INVALID_ARGUMENT if ValidateOptimizerConfig(config) fails or
  // parameter_count is 0.
  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(const OptimizerConfig& config,
                                                           size_t parameter_count);

  // What Step scales a gradient of norm ‖grad‖₂ = `norm` by:
  // min(1, clip_norm / (norm + 1e-6)) when clip_norm > 0, else 1.
  static double ClipScale(float clip_norm, double norm);

  // One step. If clip_norm > 0, first scales grad in place by
  // min(1, clip_norm / (‖grad‖₂ + 1e-6)) exactly as
  // torch.nn.utils.clip_grad_norm_ does. Then updates params as the
  // torch.optim class of the same kind would (SGD, SGD with momentum and
  // dampening 0, Adam, AdamW; amsgrad off) with the learning rate
  // learning_rate() — config().schedule at step_count() — in place of
  // config().learning_rate (AdamW's decoupled decay uses it too, as torch's
  // schedulers do). Returns ‖grad‖₂ before clipping. INVALID_ARGUMENT, with
  // params, grad and state untouched, if the spans' sizes differ from
  // parameter_count(), ‖grad‖₂ is not finite, or the schedule's rate is not
  // finite (an EXPONENTIAL or STEP schedule with gamma > 1 that overflowed).
  absl::StatusOr<double> Step(absl::Span<float> params, absl::Span<float> grad);
  // The same step for a caller that already holds `norm` = GlobalNorm(grad)
  // (the learner checks it before it accepts a gradient): one pass over grad
  // fewer, the same result. `norm` must be exactly that value.
  absl::StatusOr<double> Step(absl::Span<float> params, absl::Span<float> grad, double norm);

  const OptimizerConfig& config() const { return config_; }
  size_t parameter_count() const { return parameter_count_; }
  // Steps taken: the schedule's k. ResetState keeps it.
  int64_t step_count() const { return step_count_; }
  // Steps taken since the state was last reset (Create, ResetState): the t
  // of Adam's bias corrections and of momentum's first step (torch's
  // per-parameter state['step']). Equals step_count() unless ResetState ran.
  int64_t state_step_count() const { return state_step_count_; }
  // The learning rate the next Step uses: the schedule's rate after
  // step_count() steps (so it continues after Restore). With the default
  // constant schedule, exactly config().learning_rate.
  double learning_rate() const {
    return schedule_.LearningRateAt(static_cast<uint64_t>(step_count_));
  }

  // The state a checkpoint needs besides step_count(): the optimizer's
  // buffers in a fixed order — none (SGD), [momentum b] (MOMENTUM), [m, v]
  // (ADAM, ADAMW) — each parameter_count() long.
  std::vector<absl::Span<const float>> state() const;
  // Sets step_count, state_step_count and the buffers (as state() orders
  // them), so that the next Step continues exactly where the saved optimizer
  // left off. INVALID_ARGUMENT, changing nothing, if their number or sizes
  // differ, or unless 0 <= state_step_count <= step_count.
  absl::Status Restore(int64_t step_count, int64_t state_step_count,
                       const std::vector<std::vector<float>>& buffers);
  // The state a freshly created optimizer has (buffers zero,
  // state_step_count 0), keeping step_count: a new optimizer whose schedule
  // continues, as torch's when a scheduler outlives a re-created optimizer.
  void ResetState();

 protected:
  Optimizer(const OptimizerConfig& config, size_t parameter_count,
            const LearningRateSchedule& schedule)
      : config_(config), parameter_count_(parameter_count), schedule_(schedule) {}

  // Applies the update for state step `step` (state_step_count(), 1-based)
  // to params using grad (already clipped) and the step's learning rate
  // (finite, >= 0; in place of config().learning_rate). Sizes are checked by
  // Step.
  virtual void Update(absl::Span<float> params, absl::Span<const float> grad, int64_t step,
                      double learning_rate) = 0;
  // The buffers state() and Restore() see, in that order.
  virtual std::vector<std::vector<float>*> buffers() = 0;

 private:
  OptimizerConfig config_;
  size_t parameter_count_;
  LearningRateSchedule schedule_;
  int64_t step_count_ = 0;
  int64_t state_step_count_ = 0;
};

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_OPTIMIZER_H_
