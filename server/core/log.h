// A tiny leveled logger: one line per event to stderr, e.g.
//   2026-11-27T12:00:00.123Z I deltaserve: model "cartpole" loaded (450 parameters)
// Thread-safe (each line is written with a single fwrite). Abseil 20220623 has
// no absl/log, and the server only needs a handful of lines: start, config
// summary, models loaded, rejected config, shutdown, errors.
#ifndef DELTASERVE_SERVER_CORE_LOG_H_
#define DELTASERVE_SERVER_CORE_LOG_H_

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

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

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_LOG_H_
