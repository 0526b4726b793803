#include "deltaserve/server/core/errors.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace deltaserve::server {

std::string ClientString(absl::string_view s, size_t max_bytes) {
  std::string quoted = absl::StrCat("\"", absl::CHexEscape(s.substr(0, max_bytes)), "\"");
  if (s.size() > max_bytes) absl::StrAppend(&quoted, "... (", s.size(), " bytes)");
  return quoted;
}

absl::Status ModelNameTooLong(absl::string_view name) {
  return absl::InvalidArgumentError(absl::StrCat("model: expected a name of at most ",
                                                 kMaxModelNameBytes, " bytes, got ",
                                                 ClientString(name)));
}

absl::Status ModelNotFound(absl::string_view name, const std::vector<std::string>& served) {
  return absl::NotFoundError(absl::StrCat("model ", ClientString(name),
                                          " not found; this server serves \"",
                                          absl::StrJoin(served, "\", \""), "\""));
}

absl::Status ShuttingDown(absl::string_view model) {
  return absl::UnavailableError(
      absl::StrCat("model \"", model, "\": server is shutting down; retry on another server"));
}

absl::Status QueueFull(absl::string_view model, size_t capacity) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "model \"", model, "\": submission queue is full (", capacity, " waiting); retry later"));
}

absl::Status TooManyWatchers(absl::string_view model, size_t limit) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "model \"", model, "\" has ", limit,
      " watchers, the most max_watchers_per_model allows; close one or raise the limit"));
}

absl::Status TooManyParameterWaiters(absl::string_view model, size_t limit) {
  return absl::ResourceExhaustedError(
      absl::StrCat("model \"", model, "\" has ", limit,
                   " GetParameters calls waiting for a newer version (min_version), the most "
                   "max_parameter_waiters_per_model allows; retry later or raise the limit"));
}

absl::Status StaleVersion(absl::string_view model, uint64_t version, uint64_t current,
                          uint64_t max_staleness) {
  return absl::AbortedError(
      absl::StrCat("model \"", model, "\": submission computed at version ", version, " is ",
                   current - version, " versions behind current version ", current,
                   " (max_staleness ", max_staleness, "); refetch parameters and retry"));
}

absl::Status FutureVersion(absl::string_view model, uint64_t version, uint64_t current) {
  return absl::InvalidArgumentError(absl::StrCat("version: expected at most ", current,
                                                 " (current version of model \"", model,
                                                 "\"), got ", version));
}

absl::Status ShapeMismatch(absl::string_view what, uint64_t expected, absl::string_view unit,
                           absl::string_view why, uint64_t got) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": expected ", expected, " ", unit, " (", why, "), got ", got));
}

}  // namespace deltaserve::server
