#include "deltaserve/model/spec.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::model {
namespace {

bool IsKnownActivation(Activation activation) {
  switch (activation) {
    case Activation::kIdentity:
    case Activation::kTanh:
    case Activation::kRelu:
    case Activation::kSigmoid:
      return true;
  }
  return false;
}

// INVALID_ARGUMENT "optimizer.<name>: expected <what>, got <value>" unless ok.
absl::Status CheckHyper(bool ok, const char* name, const char* what, float value) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer.", name, ": expected ", what, ", got ", value));
}

}  // namespace

absl::Status ValidateMlpSpec(const MlpSpec& spec) {
  if (spec.input_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_dim: expected > 0, got ", spec.input_dim));
  }
  if (spec.layers.empty()) {
    return absl::InvalidArgumentError("layers: expected at least one layer, got none");
  }
  int64_t count = 0;
  int64_t fan_in = spec.input_dim;
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const LayerSpec& layer = spec.layers[l];
    if (layer.units <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", l, "].units: expected > 0, got ", layer.units));
    }
    if (!IsKnownActivation(layer.activation)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layers[", l, "].activation: expected identity, tanh, relu or sigmoid, got enum value ",
          static_cast<int>(layer.activation)));
    }
    count += static_cast<int64_t>(layer.units) * (fan_in + 1);
    if (count > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers: expected at most ", std::numeric_limits<int32_t>::max(),
                       " parameters in total, exceeded at layer ", l));
    }
    fan_in = layer.units;
  }
  return absl::OkStatus();
}

absl::Status ValidateOptimizerConfig(const OptimizerConfig& c) {
  using Kind = OptimizerConfig::Kind;
  switch (c.kind) {
    case Kind::kSgd:
    case Kind::kMomentum:
    case Kind::kAdam:
    case Kind::kAdamW:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer.kind: expected SGD, MOMENTUM, ADAM or ADAMW, got enum value ",
                       static_cast<int>(c.kind)));
  }
  // Comparisons with NaN are false, so each check below also rejects NaN.
  DELTASERVE_RETURN_IF_ERROR(CheckHyper(std::isfinite(c.learning_rate) && c.learning_rate > 0,
                                        "learning_rate", "a finite value > 0", c.learning_rate));
  DELTASERVE_RETURN_IF_ERROR(CheckHyper(std::isfinite(c.weight_decay) && c.weight_decay >= 0,
                                        "weight_decay", "a finite value >= 0", c.weight_decay));
  DELTASERVE_RETURN_IF_ERROR(CheckHyper(std::isfinite(c.clip_norm) && c.clip_norm >= 0, "clip_norm",
                                        "a finite value >= 0 (0 = no clipping)", c.clip_norm));
  if (c.kind == Kind::kMomentum) {
    DELTASERVE_RETURN_IF_ERROR(
        CheckHyper(c.momentum >= 0 && c.momentum < 1, "momentum", "a value in [0, 1)", c.momentum));
    if (c.nesterov && c.momentum == 0) {
      return absl::InvalidArgumentError(
          "optimizer.nesterov: expected momentum > 0 with nesterov, got momentum 0");
    }
  } else if (c.nesterov) {
    return absl::InvalidArgumentError(
        "optimizer.nesterov: expected only with kind MOMENTUM (and momentum > 0)");
  }
  if (c.kind == Kind::kAdam || c.kind == Kind::kAdamW) {
    DELTASERVE_RETURN_IF_ERROR(
        CheckHyper(c.beta1 >= 0 && c.beta1 < 1, "beta1", "a value in [0, 1)", c.beta1));
    DELTASERVE_RETURN_IF_ERROR(
        CheckHyper(c.beta2 >= 0 && c.beta2 < 1, "beta2", "a value in [0, 1)", c.beta2));
    DELTASERVE_RETURN_IF_ERROR(CheckHyper(std::isfinite(c.epsilon) && c.epsilon > 0, "epsilon",
                                          "a finite value > 0", c.epsilon));
  }
  return ValidateLearningRateSchedule(c.schedule);
}

absl::Status ValidateSurrogateConfig(const SurrogateConfig& config) {
  using Mode = SurrogateConfig::Mode;
  using Reduction = SurrogateConfig::Reduction;
  if (config.mode != Mode::kAnchored && config.mode != Mode::kCurrent) {
    return absl::InvalidArgumentError(
        absl::StrCat("surrogate.mode: expected ANCHORED or CURRENT, got enum value ",
                     static_cast<int>(config.mode)));
  }
  if (config.reduction != Reduction::kSum && config.reduction != Reduction::kMean) {
    return absl::InvalidArgumentError(
        absl::StrCat("surrogate.reduction: expected SUM or MEAN, got enum value ",
                     static_cast<int>(config.reduction)));
  }
  if (!(std::isfinite(config.delta_scale) && config.delta_scale > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "surrogate.delta_scale: expected a finite value > 0, got ", config.delta_scale));
  }
  return absl::OkStatus();
}

size_t ParameterCount(const MlpSpec& spec) {
  size_t count = 0;
  size_t fan_in = static_cast<size_t>(spec.input_dim);
  for (const LayerSpec& layer : spec.layers) {
    count += static_cast<size_t>(layer.units) * (fan_in + 1);
    fan_in = static_cast<size_t>(layer.units);
  }
  return count;
}

size_t MultiplyAddsPerRow(const MlpSpec& spec) {
  size_t count = 0;
  size_t fan_in = static_cast<size_t>(spec.input_dim);
  for (const LayerSpec& layer : spec.layers) {
    count += static_cast<size_t>(layer.units) * fan_in;
    fan_in = static_cast<size_t>(layer.units);
  }
  return count;
}

const char* ActivationName(Activation activation) {
  switch (activation) {
    case Activation::kIdentity:
      return "identity";
    case Activation::kTanh:
      return "tanh";
    case Activation::kRelu:
      return "relu";
    case Activation::kSigmoid:
      return "sigmoid";
  }
  return "unknown";
}

}  // namespace deltaserve::model
