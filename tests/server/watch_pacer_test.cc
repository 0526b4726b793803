// WatchPacer: when a WatchParameters stream may start its next write — at
// least the minimum interval after the last start, at least its share of the
// model's fan-out budget, and the backed-off interval of a slow reader.
#include "deltaserve/server/service/watch_pacer.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

// Milliseconds from kStart.
double Ms(absl::Time t) { return absl::ToDoubleMilliseconds(t - kStart); }

TEST(WatchPacer, AFewWatchersWriteAtTheMinimumInterval) {
  WatchPacer pacer;
  pacer.Started(kStart);
  pacer.Done(kStart + absl::Microseconds(100));  // Written at once: the reader keeps up.
  EXPECT_NEAR(Ms(pacer.next_write(1)), 10, 1e-6);
  EXPECT_NEAR(Ms(pacer.next_write(30)), 10, 1e-6);  // 30 / 3000 s
}

TEST(WatchPacer, ManyWatchersShareTheModelsFanOut) {
  EXPECT_NEAR(absl::ToDoubleMilliseconds(WatchPacer().share(300)), 100, 1e-6);  // The default.
  WatchPacing pacing;
  pacing.fan_out_per_second = 1000;
  WatchPacer pacer(pacing);
  pacer.Started(kStart);
  pacer.Done(kStart);
  EXPECT_NEAR(Ms(pacer.next_write(300)), 300, 1e-6);
  EXPECT_NEAR(Ms(pacer.next_write(5)), 10, 1e-6);  // The minimum still holds.
}

TEST(WatchPacer, ASlowReadersBackOffAppliesWhenLongerThanItsShare) {
  WatchPacer pacer;
  // Two writes in a row that each waited 40 ms for the window: twice the
  // longer wait, 80 ms, from then on (above the 10 ms share of 30 watchers,
  // below the 100 ms of 300).
  pacer.Started(kStart);
  pacer.Done(kStart + absl::Milliseconds(40));
  const absl::Time second = kStart + absl::Milliseconds(50);
  pacer.Started(second);
  pacer.Done(second + absl::Milliseconds(40));
  EXPECT_NEAR(Ms(pacer.next_write(30)), 50 + 80, 0.5);  // 80 ms, decaying with a 10 s half-life
  EXPECT_NEAR(Ms(pacer.next_write(300)), 50 + 100, 1e-6);
}

}  // namespace
}  // namespace deltaserve::server
