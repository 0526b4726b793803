#include "deltaserve/bench/load/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::load {
namespace {

constexpr int kSubBits = 4;  // log2(kSubBuckets)
static_assert(LatencyHistogram::kSubBuckets == 1 << kSubBits);

int HighestBit(uint64_t value) { return 63 - __builtin_clzll(value); }

}  // namespace

int LatencyHistogram::BucketOf(uint64_t micros) {
  if (micros < kSubBuckets) return static_cast<int>(micros);
  const int exponent = HighestBit(micros);  // ≥ kSubBits
  const int sub = static_cast<int>((micros >> (exponent - kSubBits)) & (kSubBuckets - 1));
  return std::min((exponent - kSubBits + 1) * kSubBuckets + sub, kBuckets - 1);
}

uint64_t LatencyHistogram::BucketLow(int bucket) {
  if (bucket < kSubBuckets) return static_cast<uint64_t>(bucket);
  const int exponent = bucket / kSubBuckets + kSubBits - 1;
  const uint64_t sub = static_cast<uint64_t>(bucket % kSubBuckets);
  return (kSubBuckets + sub) << (exponent - kSubBits);
}

uint64_t LatencyHistogram::BucketHigh(int bucket) {
  if (bucket < kSubBuckets) return static_cast<uint64_t>(bucket) + 1;
  const int exponent = bucket / kSubBuckets + kSubBits - 1;
  return BucketLow(bucket) + (uint64_t{1} << (exponent - kSubBits));
}

void LatencyHistogram::Record(absl::Duration latency) {
  const int64_t micros = std::max<int64_t>(0, absl::ToInt64Microseconds(latency));
  const auto value = static_cast<uint64_t>(micros);
  counts_[BucketOf(value)].fetch_add(1, std::memory_order_relaxed);
  uint64_t seen = max_micros_.load(std::memory_order_relaxed);
  while (value > seen && !max_micros_.compare_exchange_weak(seen, value)) {
  }
}

LatencyHistogram::Snapshot LatencyHistogram::Take() const {
  Snapshot snapshot;
  for (int i = 0; i < kBuckets; ++i) {
    snapshot.counts[i] = counts_[i].load(std::memory_order_relaxed);
    snapshot.total += snapshot.counts[i];
  }
  return snapshot;
}

double LatencyHistogram::MaxMs() const {
  return static_cast<double>(max_micros_.load(std::memory_order_relaxed)) / 1000.0;
}

LatencyHistogram::Snapshot LatencyHistogram::Snapshot::Minus(const Snapshot& earlier) const {
  Snapshot diff;
  for (int i = 0; i < kBuckets; ++i) {
    diff.counts[i] = counts[i] - earlier.counts[i];
    diff.total += diff.counts[i];
  }
  return diff;
}

double LatencyHistogram::Snapshot::QuantileMs(double q) const {
  if (total == 0) return 0.0;
  const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts[i];
    if (seen >= std::max<uint64_t>(rank, 1)) {
      const double mid = (static_cast<double>(BucketLow(i)) + BucketHigh(i)) / 2.0;
      return (i < kSubBuckets ? static_cast<double>(i) : mid) / 1000.0;
    }
  }
  return static_cast<double>(BucketLow(kBuckets - 1)) / 1000.0;
}

}  // namespace deltaserve::load
