// The rules a reported metric (SubmitDeltaRequest.metrics, trainer.proto)
// must follow, shared by the server, which drops a metric that breaks one
// (server/core/metrics.h), and the C++ client, which refuses it before
// sending (client/convert.h). client/python/deltaserve_client/convert.py
// states the same rules for Python.
//
//   name   [A-Za-z_][A-Za-z0-9_]{0,63}: a Prometheus label value any tool
//          can show, at most kMaxMetricNameBytes bytes.
//   value  finite (not NaN, not +-infinity).
//   names  at most kMaxMetricNames distinct names per model (the server
//          keeps the first ones it sees); a submission carrying more than
//          that can never have all of them kept.
#ifndef DELTASERVE_PROTO_CLIENT_METRICS_H_
#define DELTASERVE_PROTO_CLIENT_METRICS_H_

#include <cstddef>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace deltaserve::wire {

inline constexpr size_t kMaxMetricNameBytes = 64;
inline constexpr size_t kMaxMetricNames = 64;
// Reports the server averages per name (the gauge is the mean of the last
// kMetricWindow values it kept).
inline constexpr size_t kMetricWindow = 100;

// Which rule a single metric breaks, if any. Also the server's drop reasons
// (with kTooManyNames, which only the server can tell).
enum class MetricRule {
  kOk = 0,
  kInvalidName,   // not [A-Za-z_][A-Za-z0-9_]{0,63}
  kNotFinite,     // NaN or +-infinity
  kTooManyNames,  // a new name beyond kMaxMetricNames for the model
};

// True if `name` matches [A-Za-z_][A-Za-z0-9_]{0,63}. No allocation.
bool ValidMetricName(absl::string_view name);

// kOk, kInvalidName or kNotFinite (the name is checked first). No allocation.
MetricRule CheckMetric(absl::string_view name, double value);

// OK, or INVALID_ARGUMENT naming the metric (escaped, cut to 80 bytes) and
// the rule it breaks: a bad name, a non-finite value, or more than
// kMaxMetricNames metrics in one submission.
absl::Status ValidateMetrics(const std::map<std::string, double>& metrics);

}  // namespace deltaserve::wire

#endif  // DELTASERVE_PROTO_CLIENT_METRICS_H_
