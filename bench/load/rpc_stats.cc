#include "deltaserve/bench/load/rpc_stats.h"

#include "absl/strings/str_cat.h"

namespace deltaserve::load {

void RpcStats::Record(absl::StatusCode code, absl::Duration latency) {
  RecordCount(code);
  if (code == absl::StatusCode::kOk) latency_.Record(latency);
}

void RpcStats::RecordCount(absl::StatusCode code) {
  int index = static_cast<int>(code);
  if (index < 0 || index >= kStatusCodes) index = static_cast<int>(absl::StatusCode::kUnknown);
  codes_[index].fetch_add(1, std::memory_order_relaxed);
}

RpcStats::Snapshot RpcStats::Take() const {
  Snapshot snapshot;
  for (int i = 0; i < kStatusCodes; ++i) {
    snapshot.codes[i] = codes_[i].load(std::memory_order_relaxed);
  }
  snapshot.bad_responses = bad_responses_.load(std::memory_order_relaxed);
  snapshot.latency = latency_.Take();
  snapshot.max_ms = latency_.MaxMs();
  return snapshot;
}

RpcStats::Snapshot RpcStats::Snapshot::Minus(const Snapshot& earlier) const {
  Snapshot diff;
  for (int i = 0; i < kStatusCodes; ++i) diff.codes[i] = codes[i] - earlier.codes[i];
  diff.bad_responses = bad_responses - earlier.bad_responses;
  diff.latency = latency.Minus(earlier.latency);
  diff.max_ms = max_ms;
  return diff;
}

uint64_t RpcStats::Snapshot::Calls() const {
  uint64_t calls = 0;
  for (uint64_t count : codes) calls += count;
  return calls;
}

bool ExpectedCodes::IsExpected(absl::StatusCode code) const {
  return code == absl::StatusCode::kAborted ||
         (resource_exhausted && code == absl::StatusCode::kResourceExhausted);
}

uint64_t UnexpectedErrors(const RpcStats::Snapshot& snapshot, const ExpectedCodes& expected) {
  uint64_t errors = snapshot.bad_responses;
  for (int i = 1; i < kStatusCodes; ++i) {
    if (!expected.IsExpected(static_cast<absl::StatusCode>(i))) errors += snapshot.codes[i];
  }
  return errors;
}

std::string FormatCodes(const RpcStats::Snapshot& snapshot) {
  std::string out;
  for (int i = 1; i < kStatusCodes; ++i) {
    if (snapshot.codes[i] == 0) continue;
    absl::StrAppend(&out, out.empty() ? "" : " ",
                    absl::StatusCodeToString(static_cast<absl::StatusCode>(i)), "=",
                    snapshot.codes[i]);
  }
  if (snapshot.bad_responses > 0) {
    absl::StrAppend(&out, out.empty() ? "" : " ", "bad_response=", snapshot.bad_responses);
  }
  return out.empty() ? "none" : out;
}

}  // namespace deltaserve::load
