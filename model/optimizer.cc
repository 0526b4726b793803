#include "deltaserve/model/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::model {
namespace {

// Updates are single fused passes over plain arrays (restrict pointers, no
// branches inside), which GCC vectorises at -O3; -fno-math-errno lets it use
// vsqrtps for Adam's square root.

// torch.optim.SGD with dampening 0 (kSgd ignores momentum), per element:
//   g ← g + λ·p                                       (weight_decay λ as L2)
//   kMomentum:  b ← g (step 1),  b ← μ·b + g (later)
//               g ← g + μ·b (nesterov)  or  g ← b
//   p ← p − lr·g
// with lr the step's scheduled rate, rounded to float as torch does when it
// applies a Python-float rate to a float32 tensor.
class SgdOptimizer final : public Optimizer {
 public:
  SgdOptimizer(const OptimizerConfig& config, size_t parameter_count,
               const LearningRateSchedule& schedule)
      : Optimizer(config, parameter_count, schedule),
        momentum_(config.kind == OptimizerConfig::Kind::kMomentum ? config.momentum : 0.0f),
        buffer_(momentum_ != 0.0f ? parameter_count : 0, 0.0f) {}

 private:
  void Update(absl::Span<float> params, absl::Span<const float> grad, int64_t step,
              double learning_rate) override {
    const float lr = static_cast<float>(learning_rate);
    const float wd = config().weight_decay;
    const float mu = momentum_;
    const size_t n = params.size();
    float* __restrict p = params.data();
    const float* __restrict g = grad.data();
    if (mu == 0.0f) {
      for (size_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
      return;
    }
    float* __restrict b = buffer_.data();
    // On step 1 the buffer is initialised to g: b ← 0·b + g is the same thing.
    const float keep = step == 1 ? 0.0f : mu;
    if (config().nesterov) {
      for (size_t i = 0; i < n; ++i) {
        const float d = g[i] + wd * p[i];
        b[i] = keep * b[i] + d;
        p[i] -= lr * (d + mu * b[i]);
      }
    } else {
      for (size_t i = 0; i < n; ++i) {
        b[i] = keep * b[i] + (g[i] + wd * p[i]);
        p[i] -= lr * b[i];
      }
    }
  }

  std::vector<std::vector<float>*> buffers() override {
    if (buffer_.empty()) return {};
    return {&buffer_};
  }

  const float momentum_;
  std::vector<float> buffer_;  // Momentum buffer b; empty without momentum.
};

// torch.optim.Adam / AdamW (amsgrad off), per element at step t:
//   Adam:  g ← g + λ·p            AdamW:  p ← p·(1 − lr·λ)
//   m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²
//   p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
// with lr the step's scheduled rate. The bias corrections, lr/(1 − β₁ᵗ) and
// 1 − lr·λ are computed in double, as torch does in Python.
class AdamOptimizer final : public Optimizer {
 public:
  AdamOptimizer(const OptimizerConfig& config, size_t parameter_count,
                const LearningRateSchedule& schedule)
      : Optimizer(config, parameter_count, schedule),
        decoupled_(config.kind == OptimizerConfig::Kind::kAdamW),
        m_(parameter_count, 0.0f),
        v_(parameter_count, 0.0f) {}

 private:
  void Update(absl::Span<float> params, absl::Span<const float> grad, int64_t step,
              double learning_rate) override {
    const OptimizerConfig& c = config();
    const double t = static_cast<double>(step);
    const double correction1 = 1.0 - std::pow(static_cast<double>(c.beta1), t);
    const double correction2 = 1.0 - std::pow(static_cast<double>(c.beta2), t);
    const float step_size = static_cast<float>(learning_rate / correction1);
    const float inv_sqrt_correction2 = static_cast<float>(1.0 / std::sqrt(correction2));
    const float b1 = c.beta1, b2 = c.beta2, eps = c.epsilon;
    const float one_minus_b1 = static_cast<float>(1.0 - c.beta1);
    const float one_minus_b2 = static_cast<float>(1.0 - c.beta2);
    // Exactly one of these is active: L2 (Adam) or decoupled decay (AdamW).
    const float l2 = decoupled_ ? 0.0f : c.weight_decay;
    const float decay =
        decoupled_ ? static_cast<float>(1.0 - learning_rate * c.weight_decay) : 1.0f;
    const size_t n = params.size();
    float* __restrict p = params.data();
    const float* __restrict g = grad.data();
    float* __restrict m = m_.data();
    float* __restrict v = v_.data();
    for (size_t i = 0; i < n; ++i) {
      const float gi = g[i] + l2 * p[i];
      const float mi = b1 * m[i] + one_minus_b1 * gi;
      const float vi = b2 * v[i] + one_minus_b2 * (gi * gi);
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_correction2 + eps);
    }
  }

  std::vector<std::vector<float>*> buffers() override { return {&m_, &v_}; }

  const bool decoupled_;
  std::vector<float> m_;  // First moment.
  std::vector<float> v_;  // Second moment.
};

}  // namespace

// ‖g‖₂: vectorised float sums of squares over blocks of 1024, added in
// double, so the result is accurate to ~1e-7 relative for any size.
double GlobalNorm(absl::Span<const float> g) {
  constexpr size_t kBlock = 1024;
  double sum = 0;
  for (size_t begin = 0; begin < g.size(); begin += kBlock) {
    const size_t len = std::min(kBlock, g.size() - begin);
    sum += Eigen::Map<const Eigen::VectorXf>(g.data() + begin, static_cast<Eigen::Index>(len))
               .squaredNorm();
  }
  return std::sqrt(sum);
}

std::vector<absl::Span<const float>> Optimizer::state() const {
  std::vector<absl::Span<const float>> spans;
  // buffers() hands out the subclass's members; reading them changes nothing.
  for (const std::vector<float>* b : const_cast<Optimizer*>(this)->buffers()) {
    spans.push_back(absl::MakeConstSpan(*b));
  }
  return spans;
}

absl::Status Optimizer::Restore(int64_t step_count, int64_t state_step_count,
                                const std::vector<std::vector<float>>& saved) {
  std::vector<std::vector<float>*> own = buffers();
  if (saved.size() != own.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer state: expected ", own.size(), " buffers for this optimizer, got ",
                     saved.size(), " (was the optimizer kind changed?)"));
  }
  for (size_t i = 0; i < saved.size(); ++i) {
    if (saved[i].size() != parameter_count_) {
      return absl::InvalidArgumentError(absl::StrCat("optimizer state: expected buffers of ",
                                                     parameter_count_, " values, got ",
                                                     saved[i].size()));
    }
  }
  if (step_count < 0 || state_step_count < 0 || state_step_count > step_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer state: expected 0 <= state step count <= step count, got ",
                     state_step_count, " and ", step_count));
  }
  for (size_t i = 0; i < saved.size(); ++i) *own[i] = saved[i];
  step_count_ = step_count;
  state_step_count_ = state_step_count;
  return absl::OkStatus();
}

void Optimizer::ResetState() {
  for (std::vector<float>* b : buffers()) std::fill(b->begin(), b->end(), 0.0f);
  state_step_count_ = 0;
}

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(const OptimizerConfig& config,
                                                             size_t parameter_count) {
  DELTASERVE_RETURN_IF_ERROR(ValidateOptimizerConfig(config));
  if (parameter_count == 0) {
    return absl::InvalidArgumentError("parameter_count: expected > 0, got 0");
  }
  DELTASERVE_ASSIGN_OR_RETURN(const LearningRateSchedule schedule,
                              LearningRateSchedule::Create(config.schedule, config.learning_rate));
  switch (config.kind) {
    case OptimizerConfig::Kind::kSgd:
    case OptimizerConfig::Kind::kMomentum:
      return std::unique_ptr<Optimizer>(new SgdOptimizer(config, parameter_count, schedule));
    case OptimizerConfig::Kind::kAdam:
    case OptimizerConfig::Kind::kAdamW:
      return std::unique_ptr<Optimizer>(new AdamOptimizer(config, parameter_count, schedule));
  }
  return absl::InvalidArgumentError("optimizer.kind: unknown");
}

absl::StatusOr<double> Optimizer::Step(absl::Span<float> params, absl::Span<float> grad) {
  if (grad.size() != parameter_count_) return Step(params, grad, 0.0);  // The size error.
  return Step(params, grad, GlobalNorm(grad));
}

// As torch.nn.utils.clip_grad_norm_: min(1, c / (norm + 1e-6)).
double Optimizer::ClipScale(float clip_norm, double norm) {
  if (clip_norm <= 0) return 1.0;
  return std::min(1.0, static_cast<double>(clip_norm) / (norm + 1e-6));
}

// norm = ‖g‖₂ (GlobalNorm). With clip_norm c > 0, g ← g·ClipScale(c, norm).
absl::StatusOr<double> Optimizer::Step(absl::Span<float> params, absl::Span<float> grad,
                                       double norm) {
  if (params.size() != parameter_count_ || grad.size() != parameter_count_) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer step: expected ", parameter_count_,
                                                   " parameters and gradients, got ", params.size(),
                                                   " and ", grad.size()));
  }
  if (!std::isfinite(norm)) {
    return absl::InvalidArgumentError(
        "gradient: expected finite values, got a non-finite norm; parameters unchanged");
  }
  const double rate = learning_rate();
  if (!std::isfinite(rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.schedule: the learning rate of step ", step_count_,
                     " is not finite (gamma > 1 overflowed); parameters unchanged"));
  }
  if (const double coef = ClipScale(config_.clip_norm, norm); coef < 1.0) {
    const float scale = static_cast<float>(coef);
    for (float& g : grad) g *= scale;
  }
  ++step_count_;
  ++state_step_count_;
  Update(params, grad, state_step_count_, rate);
  return norm;
}

}  // namespace deltaserve::model
