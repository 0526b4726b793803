#include "deltaserve/proto/client_metrics.h"

#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace deltaserve::wire {
namespace {

bool IsLetterOrUnderscore(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The name as it can be shown in a message: C-escaped, at most 80 bytes.
std::string Shown(absl::string_view name) {
  constexpr size_t kShown = 80;
  std::string escaped = absl::CHexEscape(name.substr(0, kShown));
  if (name.size() > kShown) absl::StrAppend(&escaped, "...");
  return escaped;
}

}  // namespace

bool ValidMetricName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxMetricNameBytes) return false;
  if (!IsLetterOrUnderscore(name[0])) return false;
  for (const char c : name.substr(1)) {
    if (!IsLetterOrUnderscore(c) && !IsDigit(c)) return false;
  }
  return true;
}

MetricRule CheckMetric(absl::string_view name, double value) {
  if (!ValidMetricName(name)) return MetricRule::kInvalidName;
  if (!std::isfinite(value)) return MetricRule::kNotFinite;
  return MetricRule::kOk;
}

absl::Status ValidateMetrics(const std::map<std::string, double>& metrics) {
  if (metrics.size() > kMaxMetricNames) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: at most ", kMaxMetricNames,
                                                   " names per model, got ", metrics.size(),
                                                   " in one submission; nothing was sent"));
  }
  for (const auto& [name, value] : metrics) {
    switch (CheckMetric(name, value)) {
      case MetricRule::kOk:
        break;
      case MetricRule::kInvalidName:
        return absl::InvalidArgumentError(absl::StrCat(
            "metrics: name \"", Shown(name), "\" must match [A-Za-z_][A-Za-z0-9_]{0,63} (",
            name.size(), " bytes); nothing was sent"));
      case MetricRule::kNotFinite:
        return absl::InvalidArgumentError(absl::StrCat(
            "metrics: value of \"", name, "\" must be finite, got ", value, "; nothing was sent"));
      case MetricRule::kTooManyNames:
        break;  // Not a property of one metric.
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::wire
