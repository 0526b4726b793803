// LatencyHistogram: a lock-free, log-linear histogram of call latencies for
// the load tool (bench/load/main.cc).
//
// Values are recorded in whole microseconds into buckets of 16 per power of
// two (exact below 16 µs, otherwise within 1/16 ≈ 6% of the true value), so
// quantiles are accurate to about ±3% (bucket midpoints). Counters are
// cumulative: an interval's histogram is Take() now Minus() Take() before.
//
// Thread-safety: Record may be called from any number of threads at once;
// Take may run concurrently with them (it sees each counter at some moment
// during the call, which is all a periodic report needs).
#ifndef DELTASERVE_BENCH_LOAD_LATENCY_HISTOGRAM_H_
#define DELTASERVE_BENCH_LOAD_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace deltaserve::load {

class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 16;  // per power of two
  static constexpr int kBuckets = 61 * kSubBuckets;

  // Counts of one moment, or the difference of two moments.
  struct Snapshot {
    std::array<uint64_t, kBuckets> counts{};
    uint64_t total = 0;

    // Counts recorded between `earlier` and this snapshot.
    Snapshot Minus(const Snapshot& earlier) const;
    // The q-quantile (0 < q ≤ 1) in milliseconds, as its bucket's midpoint;
    // 0 if the snapshot is empty.
    double QuantileMs(double q) const;
  };

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // Adds one value; negative durations count as 0.
  void Record(absl::Duration latency);
  Snapshot Take() const;
  // Largest value recorded so far, in milliseconds (not per interval).
  double MaxMs() const;

  // Bucket of a value in microseconds, and a bucket's [low, high) bounds.
  static int BucketOf(uint64_t micros);
  static uint64_t BucketLow(int bucket);
  static uint64_t BucketHigh(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> max_micros_{0};
};

}  // namespace deltaserve::load

#endif  // DELTASERVE_BENCH_LOAD_LATENCY_HISTOGRAM_H_
