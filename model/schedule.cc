#include "deltaserve/model/schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::model {
namespace {

constexpr double kPi = 3.14159265358979323846;

const char* KindName(LearningRateScheduleConfig::Kind kind) {
  using Kind = LearningRateScheduleConfig::Kind;
  switch (kind) {
    case Kind::kConstant:
      return "CONSTANT";
    case Kind::kLinear:
      return "LINEAR";
    case Kind::kCosine:
      return "COSINE";
    case Kind::kStep:
      return "STEP";
    case Kind::kExponential:
      return "EXPONENTIAL";
  }
  return "unknown";
}

}  // namespace

absl::Status ValidateLearningRateSchedule(const LearningRateScheduleConfig& c) {
  using Kind = LearningRateScheduleConfig::Kind;
  switch (c.kind) {
    case Kind::kConstant:
    case Kind::kLinear:
    case Kind::kCosine:
    case Kind::kStep:
    case Kind::kExponential:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer.schedule.kind: expected CONSTANT, LINEAR, COSINE, STEP or EXPONENTIAL, got "
          "enum value ",
          static_cast<int>(c.kind)));
  }
  if ((c.kind == Kind::kLinear || c.kind == Kind::kCosine) && c.total_steps == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer.schedule.total_steps: expected > 0 for ", KindName(c.kind), ", got 0"));
  }
  if (c.kind == Kind::kStep && c.step_size == 0) {
    return absl::InvalidArgumentError("optimizer.schedule.step_size: expected > 0 for STEP, got 0");
  }
  // Comparisons with NaN are false, so these checks also reject NaN.
  if ((c.kind == Kind::kStep || c.kind == Kind::kExponential) &&
      !(std::isfinite(c.gamma) && c.gamma > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.schedule.gamma: expected a finite value > 0 for ", KindName(c.kind),
                     ", got ", c.gamma));
  }
  if (!(std::isfinite(c.final_learning_rate) && c.final_learning_rate >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.schedule.final_learning_rate: expected a finite value >= 0, got ",
                     c.final_learning_rate));
  }
  return absl::OkStatus();
}

absl::StatusOr<LearningRateSchedule> LearningRateSchedule::Create(
    const LearningRateScheduleConfig& config, double learning_rate) {
  DELTASERVE_RETURN_IF_ERROR(ValidateLearningRateSchedule(config));
  if (!(std::isfinite(learning_rate) && learning_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.learning_rate: expected a finite value > 0, got ", learning_rate));
  }
  return LearningRateSchedule(config, learning_rate);
}

// The closed forms in the header, in double. Written in torch's order of
// operations (π·m/T, then cos) so values agree with its schedulers to the
// last few bits.
double LearningRateSchedule::LearningRateAt(uint64_t k) const {
  using Kind = LearningRateScheduleConfig::Kind;
  const double lr = learning_rate_;
  const uint64_t warmup = config_.warmup_steps;
  if (k < warmup) return lr * static_cast<double>(k + 1) / static_cast<double>(warmup);
  const uint64_t j = k - warmup;
  const double final_lr = config_.final_learning_rate;
  switch (config_.kind) {
    case Kind::kConstant:
      return lr;
    case Kind::kLinear: {
      const double t = static_cast<double>(config_.total_steps);
      const double m = static_cast<double>(std::min(j, config_.total_steps));
      return lr + (final_lr - lr) * m / t;
    }
    case Kind::kCosine: {
      const double t = static_cast<double>(config_.total_steps);
      const double m = static_cast<double>(std::min(j, config_.total_steps));
      return final_lr + (lr - final_lr) * (1.0 + std::cos(kPi * m / t)) / 2.0;
    }
    case Kind::kStep:
      return lr * std::pow(static_cast<double>(config_.gamma),
                           static_cast<double>(j / config_.step_size));
    case Kind::kExponential:
      return lr * std::pow(static_cast<double>(config_.gamma), static_cast<double>(j));
  }
  return lr;  // Unreachable: Create validated the kind.
}

}  // namespace deltaserve::model
