// RpcStats: what the load tool counts for one kind of call (Forward,
// SubmitDelta, watch updates): completed calls by status code, the latency
// of the OK ones, and the tool's own "bad response" findings (a reply that
// breaks the contract, e.g. wrong output shape or a watch version going
// backwards). Cumulative and lock-free; a report takes Snapshots and
// subtracts the previous one.
#ifndef DELTASERVE_BENCH_LOAD_RPC_STATS_H_
#define DELTASERVE_BENCH_LOAD_RPC_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "deltaserve/bench/load/latency_histogram.h"

namespace deltaserve::load {

// Canonical status codes 0 (OK) … 16 (UNAUTHENTICATED).
inline constexpr int kStatusCodes = 17;

class RpcStats {
 public:
  struct Snapshot {
    std::array<uint64_t, kStatusCodes> codes{};
    uint64_t bad_responses = 0;
    LatencyHistogram::Snapshot latency;  // OK calls only
    double max_ms = 0;                   // largest OK latency since the start (Minus keeps it)

    Snapshot Minus(const Snapshot& earlier) const;
    uint64_t Calls() const;  // every completed call, any code
    uint64_t Count(absl::StatusCode code) const { return codes[static_cast<int>(code)]; }
  };

  RpcStats() = default;
  RpcStats(const RpcStats&) = delete;
  RpcStats& operator=(const RpcStats&) = delete;

  // One completed call; `latency` is kept only when `code` is OK. Codes
  // outside 0..16 are counted as UNKNOWN.
  void Record(absl::StatusCode code, absl::Duration latency);
  // One completed call whose latency is not known (or not meaningful).
  void RecordCount(absl::StatusCode code);
  // A reply that broke the contract (counted as an error, not as a call).
  void RecordBadResponse() { bad_responses_.fetch_add(1, std::memory_order_relaxed); }

  Snapshot Take() const;
  double MaxMs() const { return latency_.MaxMs(); }

 private:
  std::array<std::atomic<uint64_t>, kStatusCodes> codes_{};
  std::atomic<uint64_t> bad_responses_{0};
  LatencyHistogram latency_;
};

// Which codes are expected under load rather than errors: ABORTED always
// (a stale submission), RESOURCE_EXHAUSTED only when the caller allows it.
struct ExpectedCodes {
  bool resource_exhausted = false;
  bool IsExpected(absl::StatusCode code) const;
};

// Calls that ended with a code that is neither OK nor expected, plus bad
// responses.
uint64_t UnexpectedErrors(const RpcStats::Snapshot& snapshot, const ExpectedCodes& expected);

// "UNAVAILABLE=3 DEADLINE_EXCEEDED=1" for every non-OK code with a count, in
// code order, plus "bad_response=N"; "none" if there are none.
std::string FormatCodes(const RpcStats::Snapshot& snapshot);

}  // namespace deltaserve::load

#endif  // DELTASERVE_BENCH_LOAD_RPC_STATS_H_
