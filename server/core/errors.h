// Named constructors for the server's domain errors, so every handler and the
// Trainer report the same condition with the same code and wording.
// Codes follow docs/architecture.md §6: malformed → INVALID_ARGUMENT, unknown model →
// NOT_FOUND, stale version → ABORTED, full queue → RESOURCE_EXHAUSTED,
// shutting down → UNAVAILABLE.
#ifndef DELTASERVE_SERVER_CORE_ERRORS_H_
#define DELTASERVE_SERVER_CORE_ERRORS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace deltaserve::server {

// A model name, configured or requested, is at most this many bytes. A
// request naming a longer one is INVALID_ARGUMENT before any lookup
// (ModelNameTooLong); a config with a longer one is refused.
inline constexpr size_t kMaxModelNameBytes = 128;

// Bytes of a client's string that ClientString shows.
inline constexpr size_t kClientStringBytes = 64;

// A string a client sent (a model name, a request_id, ...), fit to quote in an
// error message, a log line or a metric label: double-quoted, at most
// `max_bytes` of its bytes, non-printable and non-ASCII bytes, quotes and
// backslashes C-escaped (\xff, \", \\), and when cut, "... (N bytes)" after
// the closing quote. The result is ASCII and at most 4 * max_bytes + 32 bytes,
// e.g. ClientString("cartpole") == "\"cartpole\"" and
// ClientString(std::string(9000, 'm')) == "\"mmm...m\"... (9000 bytes)".
// Every message that carries a client's string passes it through this.
std::string ClientString(absl::string_view s, size_t max_bytes = kClientStringBytes);

// INVALID_ARGUMENT: a requested model name longer than kMaxModelNameBytes.
absl::Status ModelNameTooLong(absl::string_view name);

// NOT_FOUND: model "x" is not served here; lists the names that are (the
// configured ones, each at most kMaxModelNameBytes). `name` is quoted with
// ClientString.
absl::Status ModelNotFound(absl::string_view name, const std::vector<std::string>& served);

// UNAVAILABLE: the server (or one model's learner) is shutting down.
absl::Status ShuttingDown(absl::string_view model);

// RESOURCE_EXHAUSTED: the model already has `limit` WatchParameters streams.
absl::Status TooManyWatchers(absl::string_view model, size_t limit);

// RESOURCE_EXHAUSTED: the model already has `limit` GetParameters calls
// waiting for a newer version (min_version long-polls).
absl::Status TooManyParameterWaiters(absl::string_view model, size_t limit);

// RESOURCE_EXHAUSTED: the model's submission queue holds `capacity` entries.
absl::Status QueueFull(absl::string_view model, size_t capacity);

// ABORTED: the submission was computed at `version`, `staleness` versions
// behind the current one, more than `max_staleness` allows. Refetch, retry.
absl::Status StaleVersion(absl::string_view model, uint64_t version, uint64_t current,
                          uint64_t max_staleness);

// INVALID_ARGUMENT: the submission claims a version the model has not reached.
absl::Status FutureVersion(absl::string_view model, uint64_t version, uint64_t current);

// INVALID_ARGUMENT: "<what>: expected <expected> <unit> (<why>), got <got>",
// e.g. "inputs: expected 4 columns (input_dim of model "cartpole"), got 3".
absl::Status ShapeMismatch(absl::string_view what, uint64_t expected, absl::string_view unit,
                           absl::string_view why, uint64_t got);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_ERRORS_H_
