#include "model/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"

namespace deltaserve::model {
namespace {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// Element-wise updates walk the buffers in blocks small enough that every
// array of one block stays in L1 across the several passes of an update.
constexpr size_t kBlock = 1024;

// torch.optim.SGD with dampening 0 (kSgd ignores momentum), per element:
//   g ← g + λ·p                                       (weight_decay λ as L2)
//   kMomentum:  b ← g (step 1),  b ← μ·b + g (later)
//               g ← g + μ·b (nesterov)  or  g ← b
//   p ← p − lr·g
class SgdOptimizer final : public Optimizer {
 public:
  SgdOptimizer(const OptimizerConfig& config, size_t parameter_count)
      : Optimizer(config, parameter_count),
        momentum_(config.kind == OptimizerConfig::Kind::kMomentum ? config.momentum : 0.0f),
        buffer_(momentum_ != 0.0f ? parameter_count : 0, 0.0f) {}

 private:
  void Update(absl::Span<float> params, absl::Span<const float> grad, int64_t step) override {
    const float lr = config().learning_rate;
    const float wd = config().weight_decay;
    const bool nesterov = config().nesterov;
    Eigen::ArrayXf d(static_cast<Eigen::Index>(std::min(kBlock, params.size())));
    for (size_t begin = 0; begin < params.size(); begin += kBlock) {
      const Eigen::Index len = static_cast<Eigen::Index>(std::min(kBlock, params.size() - begin));
      ArrayMap p(params.data() + begin, len);
      ConstArrayMap g(grad.data() + begin, len);
      auto dp = d.head(len);
      if (wd != 0.0f) {
        dp = g + wd * p;
      } else {
        dp = g;
      }
      if (momentum_ != 0.0f) {
        ArrayMap b(buffer_.data() + begin, len);
        if (step == 1) {
          b = dp;
        } else {
          b = momentum_ * b + dp;
        }
        if (nesterov) {
          dp += momentum_ * b;
        } else {
          dp = b;
        }
      }
      p -= lr * dp;
    }
  }

  const float momentum_;
  std::vector<float> buffer_;  // Momentum buffer b; empty without momentum.
};

// torch.optim.Adam / AdamW (amsgrad off), per element at step t:
//   Adam:  g ← g + λ·p            AdamW:  p ← p·(1 − lr·λ)
//   m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²
//   p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
// The bias corrections are computed in double, as torch does in Python.
class AdamOptimizer final : public Optimizer {
 public:
  AdamOptimizer(const OptimizerConfig& config, size_t parameter_count)
      : Optimizer(config, parameter_count),
        decoupled_(config.kind == OptimizerConfig::Kind::kAdamW),
        m_(parameter_count, 0.0f),
        v_(parameter_count, 0.0f) {}

 private:
  void Update(absl::Span<float> params, absl::Span<const float> grad, int64_t step) override {
    const OptimizerConfig& c = config();
    const double t = static_cast<double>(step);
    const double correction1 = 1.0 - std::pow(static_cast<double>(c.beta1), t);
    const double correction2 = 1.0 - std::pow(static_cast<double>(c.beta2), t);
    const float step_size = static_cast<float>(c.learning_rate / correction1);
    const float inv_sqrt_correction2 = static_cast<float>(1.0 / std::sqrt(correction2));
    const float b1 = c.beta1, b2 = c.beta2, eps = c.epsilon;
    const float one_minus_b1 = static_cast<float>(1.0 - c.beta1);
    const float one_minus_b2 = static_cast<float>(1.0 - c.beta2);
    const float wd = c.weight_decay;
    const float decay = static_cast<float>(1.0 - static_cast<double>(c.learning_rate) * wd);
    Eigen::ArrayXf d(static_cast<Eigen::Index>(std::min(kBlock, params.size())));
    for (size_t begin = 0; begin < params.size(); begin += kBlock) {
      const Eigen::Index len = static_cast<Eigen::Index>(std::min(kBlock, params.size() - begin));
      ArrayMap p(params.data() + begin, len);
      ConstArrayMap g(grad.data() + begin, len);
      ArrayMap m(m_.data() + begin, len);
      ArrayMap v(v_.data() + begin, len);
      auto gd = d.head(len);
      if (wd != 0.0f && !decoupled_) {
        gd = g + wd * p;
      } else {
        gd = g;
      }
      if (wd != 0.0f && decoupled_) p *= decay;
      m = b1 * m + one_minus_b1 * gd;
      v = b2 * v + one_minus_b2 * gd.square();
      p -= step_size * m / (v.sqrt() * inv_sqrt_correction2 + eps);
    }
  }

  const bool decoupled_;
  std::vector<float> m_;  // First moment.
  std::vector<float> v_;  // Second moment.
};

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(const OptimizerConfig& config,
                                                             size_t parameter_count) {
  RETURN_IF_ERROR(ValidateOptimizerConfig(config));
  if (parameter_count == 0) {
    return absl::InvalidArgumentError("parameter_count: expected > 0, got 0");
  }
  switch (config.kind) {
    case OptimizerConfig::Kind::kSgd:
    case OptimizerConfig::Kind::kMomentum:
      return std::unique_ptr<Optimizer>(new SgdOptimizer(config, parameter_count));
    case OptimizerConfig::Kind::kAdam:
    case OptimizerConfig::Kind::kAdamW:
      return std::unique_ptr<Optimizer>(new AdamOptimizer(config, parameter_count));
  }
  return absl::InvalidArgumentError("optimizer.kind: unknown");
}

// norm = ‖g‖₂ (accumulated in double). With clip_norm c > 0, as
// torch.nn.utils.clip_grad_norm_: g ← g·min(1, c / (norm + 1e-6)).
absl::StatusOr<double> Optimizer::Step(absl::Span<float> params, absl::Span<float> grad) {
  if (params.size() != parameter_count_ || grad.size() != parameter_count_) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer step: expected ", parameter_count_,
                                                   " parameters and gradients, got ", params.size(),
                                                   " and ", grad.size()));
  }
  ArrayMap g(grad.data(), static_cast<Eigen::Index>(grad.size()));
  const double norm = std::sqrt(g.cast<double>().square().sum());
  if (!std::isfinite(norm)) {
    return absl::InvalidArgumentError(
        "gradient: expected finite values, got a non-finite norm; parameters unchanged");
  }
  if (config_.clip_norm > 0) {
    const double coef = static_cast<double>(config_.clip_norm) / (norm + 1e-6);
    if (coef < 1.0) g *= static_cast<float>(coef);
  }
  ++step_count_;
  Update(params, grad, step_count_);
  return norm;
}

}  // namespace deltaserve::model
