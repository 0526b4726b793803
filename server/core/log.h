// A tiny leveled logger: one line per event to stderr, e.g.
//   2026-11-27T12:00:00.123Z I deltaserve: model "cartpole" loaded (450 parameters)
// Thread-safe (each line is written with a single fwrite). Abseil 20220623 has
// no absl/log, and the server only needs a handful of lines: start, config
// summary, models loaded, rejected config, shutdown, errors.
#ifndef DELTASERVE_SERVER_CORE_LOG_H_
#define DELTASERVE_SERVER_CORE_LOG_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace deltaserve::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below `level` are dropped. Default kInfo.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// "debug", "info", "warning", "error" → true and *level; anything else → false.
bool ParseLogLevel(absl::string_view name, LogLevel* level);

// Writes one line (a trailing newline is added; embedded newlines are replaced
// by spaces so one event is always one line).
void LogLine(LogLevel level, absl::string_view message);

// LogInfo("model ", name, " loaded") — arguments are absl::StrCat pieces and
// are only formatted when the level is enabled.
template <typename... Args>
void LogDebug(const Args&... args) {
  if (LogEnabled(LogLevel::kDebug)) LogLine(LogLevel::kDebug, absl::StrCat(args...));
}
template <typename... Args>
void LogInfo(const Args&... args) {
  if (LogEnabled(LogLevel::kInfo)) LogLine(LogLevel::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  if (LogEnabled(LogLevel::kWarning)) LogLine(LogLevel::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  if (LogEnabled(LogLevel::kError)) LogLine(LogLevel::kError, absl::StrCat(args...));
}

// Bounds a kind of line a client can cause once per request (a malformed
// request, an unknown name): at most `lines` of them per `interval`; the
// rest are dropped and counted, and the next line let through says how many
// were. Thread-safe.
class LogRateLimit {
 public:
  LogRateLimit(int lines, absl::Duration interval) : lines_(lines), interval_(interval) {}

  // True if one more line may be written now; then *dropped is the number of
  // lines refused since the last one let through (and is reset).
  bool Allow(uint64_t* dropped) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const int lines_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

// LogLine through `limit`: dropped when it says so, else written with
// "(N similar lines dropped)" appended when some were. Level filtering comes
// first: a line below the log level neither writes nor uses the budget.
void LogLineLimited(LogRateLimit* limit, LogLevel level, absl::string_view message);

// Routes protobuf's own log output (google::protobuf::SetLogHandler) into
// LogLine, prefixed "protobuf: ", cut to 512 bytes, through one LogRateLimit
// of 5 lines per 10 s. A string field with invalid UTF-8 in a request (which
// protobuf reports as an ERROR on every parse) is the client's fault, not the
// server's: it is logged at kWarning, so --log_level=error hides it; other
// messages keep protobuf's level (FATAL as kError). Call once, at startup.
void RouteProtobufLogs();

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_LOG_H_
