// What the load tool prints: one line per report interval, and at the end a
// human-readable summary followed by one machine-readable line
//   DELTASERVE_LOAD_SUMMARY {json}
// (field names in docs/reliability.md). RSS statistics "after warm-up" use
// the samples taken at or after the warm-up time.
#ifndef DELTASERVE_BENCH_LOAD_REPORT_H_
#define DELTASERVE_BENCH_LOAD_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "deltaserve/bench/load/rpc_stats.h"
#include "deltaserve/bench/load/workload.h"

namespace deltaserve::load {

// Every counter at one moment (or the difference of two moments).
struct Totals {
  RpcStats::Snapshot forward;
  RpcStats::Snapshot submit;
  RpcStats::Snapshot watch;
  uint64_t watch_streams = 0;
  uint64_t duplicates = 0;

  Totals Minus(const Totals& earlier) const;
  uint64_t UnexpectedErrors(const ExpectedCodes& expected) const;
};
Totals TakeTotals(const LoadStats& stats);

struct RssSample {
  double seconds = 0;  // since the load started
  int64_t kib = 0;
};

struct RssSummary {
  std::optional<RssSample> first, last;
  int64_t min_kib = 0, max_kib = 0;  // over every sample
  double warmup_seconds = 0;
  int samples_after_warmup = 0;
  // Over samples at t ≥ warmup_seconds; meaningful if samples_after_warmup > 0.
  int64_t warm_min_kib = 0, warm_max_kib = 0;
  double warm_mean_kib = 0;
  double band_low_pct = 0, band_high_pct = 0;  // (min − mean)/mean, (max − mean)/mean
  double criterion_pct = 0;                    // ±; 0 = not checked
  // nullopt when not checked or there is no sample after warm-up.
  std::optional<bool> within_band;
};
RssSummary SummarizeRss(const std::vector<RssSample>& samples, double warmup_seconds,
                        double criterion_pct);

// "[  10.0s] forward 1523.4/s p50 1.02 p99 4.88 ms | submit ... | watch ... |
//  aborted N | errors N | rss 48.3 MiB" for the interval `delta` of length
// `interval_seconds` ending at `at_seconds`; rss_kib < 0 prints "rss n/a".
std::string IntervalLine(double at_seconds, double interval_seconds, const Totals& delta,
                         const ExpectedCodes& expected, int64_t rss_kib);

// How the run was set up and ended, for the summary.
struct RunInfo {
  std::string target;
  std::string model;
  int clients = 0, watchers = 0, rows = 0, submit_every = 0;
  double seconds = 0;  // how long the load actually ran
  bool request_ids = false;
  std::string server;  // "exit 0 after SIGTERM (clean)", "not ours (pid N)", ...
  bool server_ok = true;
  bool interrupted = false;
};

// The summary block and the DELTASERVE_LOAD_SUMMARY line; `result` is
// "PASS" or "FAIL: reasons".
std::string SummaryText(const RunInfo& run, const Totals& totals, const ExpectedCodes& expected,
                        const RssSummary& rss, const std::string& result);
std::string SummaryJson(const RunInfo& run, const Totals& totals, const ExpectedCodes& expected,
                        const RssSummary& rss, const std::string& result);

}  // namespace deltaserve::load

#endif  // DELTASERVE_BENCH_LOAD_REPORT_H_
