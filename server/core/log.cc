#include "deltaserve/server/core/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"

namespace deltaserve::server {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

// Bytes of a protobuf log message kept (its messages name fields and types;
// a text-format parse error may quote input).
constexpr size_t kProtobufMessageBytes = 512;

void ProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                 const std::string& message) {
  static LogRateLimit* const limit = new LogRateLimit(5, absl::Seconds(10));
  LogLevel ours = LogLevel::kError;
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      ours = LogLevel::kInfo;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      ours = LogLevel::kWarning;
      break;
    default:
      break;
  }
  if (absl::StrContains(message, "invalid UTF-8")) ours = LogLevel::kWarning;
  absl::string_view kept = absl::string_view(message).substr(0, kProtobufMessageBytes);
  LogLineLimited(limit, ours,
                 absl::StrCat("protobuf: ", kept, message.size() > kept.size() ? "..." : "", " (",
                              filename, ":", line, ")"));
}

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
  }
  return '?';
}

}  // namespace

void SetLogLevel(LogLevel level) {
  g_min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed);
}

bool ParseLogLevel(absl::string_view name, LogLevel* level) {
  if (name == "debug") {
    *level = LogLevel::kDebug;
  } else if (name == "info") {
    *level = LogLevel::kInfo;
  } else if (name == "warning") {
    *level = LogLevel::kWarning;
  } else if (name == "error") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

void LogLine(LogLevel level, absl::string_view message) {
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
                   std::string(1, LevelLetter(level)), " deltaserve: ", message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

bool LogRateLimit::Allow(uint64_t* dropped) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  if (now - window_start_ >= interval_) {
    window_start_ = now;
    written_ = 0;
  }
  if (written_ >= lines_) {
    ++dropped_;
    return false;
  }
  ++written_;
  *dropped = dropped_;
  dropped_ = 0;
  return true;
}

void LogLineLimited(LogRateLimit* limit, LogLevel level, absl::string_view message) {
  if (!LogEnabled(level)) return;
  uint64_t dropped = 0;
  if (!limit->Allow(&dropped)) return;
  if (dropped == 0) return LogLine(level, message);
  LogLine(level, absl::StrCat(message, " (", dropped, " similar lines dropped)"));
}

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&ProtobufLog); }

}  // namespace deltaserve::server
