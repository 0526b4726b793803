// WatchPacer: when a WatchParameters stream may start its next write.
//
// gRPC completes a write once its bytes fit the receiver's HTTP/2 window, not
// when the client's application has read them, and a client with gRPC's
// default settings grows that window (BDP probing) to megabytes: thousands of
// small updates. A reader slower than the learner then reads a backlog
// seconds old (docs/reliability.md, "Slow watchers get the newest version").
// The server cannot see the client's reads, only writes that wait because
// the window is full, and by then the window holds that backlog. So each
// stream paces itself:
//
// - Writes start at least kMin (10 ms) apart, each with the newest version
//   (versions published in between are skipped): at most 100 updates a
//   second per stream, so a default client's window neither grows nor fills
//   unless its reader takes more than kMin per update. A version published
//   after a quiet kMin goes out at once.
// - kStreak writes in a row that each waited more than kBlocked mean the
//   reader is slower still (one slow completion can be the machine's noise;
//   a full window delays every write by about one read of the client). The
//   interval becomes twice the longest of them (the client's time per read,
//   so the server writes at most half as often as the client reads and what
//   its window holds drains), at most kMax.
// - That interval halves every kHalfLife towards kMin: slowly, so the
//   backlog drains before the pace rises again.
// - A model's streams share a budget of kFanOut writes a second: with N
//   watchers each stream's writes start at least N / kFanOut apart (3,000 a
//   second: 10 ms up to 30 watchers, 100 ms at 300). A write costs the
//   server's CPU whether or not its client reads it, and a client with
//   gRPC's default window keeps accepting writes it never reads, so without
//   a shared budget 300 watchers that never read took a third of a 2-core
//   machine from the learner (docs/reliability.md). More watchers than the
//   budget serves fresh enough: relays (docs/operations.md).
//
// Not thread-safe: the owner (WatchReactor) calls it under its mutex.
#ifndef DELTASERVE_SERVER_SERVICE_WATCH_PACER_H_
#define DELTASERVE_SERVER_SERVICE_WATCH_PACER_H_

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "absl/time/time.h"

namespace deltaserve::server {

struct WatchPacing {
  absl::Duration min_interval = absl::Milliseconds(10);   // kMin
  absl::Duration blocked = absl::Milliseconds(2);         // kBlocked
  int streak = 2;                                         // kStreak
  absl::Duration max_interval = absl::Milliseconds(250);  // kMax
  absl::Duration half_life = absl::Seconds(10);           // kHalfLife
  double fan_out_per_second = 3000;                       // kFanOut, per model
};

class WatchPacer {
 public:
  explicit WatchPacer(const WatchPacing& pacing = WatchPacing()) : pacing_(pacing) {}

  // The earliest start of the next write, while `watchers` streams
  // (this one included) share the model's kFanOut.
  absl::Time next_write(size_t watchers) const {
    return started_ + std::max(interval(started_), share(watchers));
  }

  // The least interval of each of `watchers` streams that share kFanOut.
  absl::Duration share(size_t watchers) const {
    return absl::Seconds(static_cast<double>(watchers) / pacing_.fan_out_per_second);
  }

  // The interval in force at `now`.
  absl::Duration interval(absl::Time now) const {
    if (backoff_ <= pacing_.min_interval) return pacing_.min_interval;
    const double halvings = absl::FDivDuration(now - backed_off_at_, pacing_.half_life);
    return std::max(pacing_.min_interval,
                    halvings >= 30 ? absl::ZeroDuration() : backoff_ / std::exp2(halvings));
  }

  // A write started at `now`.
  void Started(absl::Time now) { started_ = now; }

  // The write started last completed at `now`.
  void Done(absl::Time now) {
    const absl::Duration took = now - started_;
    if (took <= pacing_.blocked) {
      streak_ = 0;
      streak_longest_ = absl::ZeroDuration();
      return;
    }
    streak_longest_ = std::max(streak_longest_, took);
    if (++streak_ < pacing_.streak) return;
    backoff_ = std::min(pacing_.max_interval, 2 * streak_longest_);
    backed_off_at_ = now;
    streak_ = 0;
    streak_longest_ = absl::ZeroDuration();
  }

 private:
  const WatchPacing pacing_;
  absl::Time started_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::ZeroDuration();  // The interval set at backed_off_at_.
  absl::Time backed_off_at_ = absl::InfinitePast();
  int streak_ = 0;
  absl::Duration streak_longest_ = absl::ZeroDuration();
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_WATCH_PACER_H_
