#include "deltaserve/server/core/weight_hub.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/tests/server/test_util.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using testing::MakeSnapshot;

constexpr absl::Duration kWait = absl::Seconds(30);

// A subscriber that records the newest version it was poked for and lets a
// test wait until it has seen one.
class Recorder {
 public:
  explicit Recorder(WeightHub& hub) : hub_(hub) {}
  std::function<void()> Callback() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++pokes_;
      seen_ = hub_.closed() ? kClosed : hub_.latest()->version;
    };
  }
  // True once a poke saw `version` (kClosed: the hub closed).
  bool AwaitSeen(uint64_t version) {
    absl::MutexLock lock(&mu_);
    auto seen = [this, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_ == version; };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), kWait);
  }
  int pokes() {
    absl::MutexLock lock(&mu_);
    return pokes_;
  }
  static constexpr uint64_t kClosed = ~uint64_t{0};

 private:
  WeightHub& hub_;
  absl::Mutex mu_;
  int pokes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seen_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(WeightHub, LatestIsTheNewestPublishedVersion) {
  WeightHub hub("m", MakeSnapshot(0));
  for (uint64_t v = 1; v <= 5; ++v) hub.Publish(MakeSnapshot(v));
  EXPECT_EQ(hub.latest()->version, 5u);
  EXPECT_EQ(hub.latest()->parameters[0], 5.0f);
}

TEST(WeightHub, OlderVersionsAreIgnored) {
  WeightHub hub("m", MakeSnapshot(3));
  hub.Publish(MakeSnapshot(2));
  EXPECT_EQ(hub.latest()->version, 3u);
}

TEST(WeightHub, SubscribersArePokedUntilTheySeeTheNewestVersion) {
  WeightHub hub("m", MakeSnapshot(0));
  Recorder recorder(hub);
  auto subscription = hub.Subscribe(recorder.Callback());
  ASSERT_TRUE(subscription.ok());
  for (uint64_t v = 1; v <= 10; ++v) hub.Publish(MakeSnapshot(v));
  EXPECT_TRUE(recorder.AwaitSeen(10));
  EXPECT_LE(recorder.pokes(), 10);  // Pokes coalesce; never more than changes.
}

// Versions published while nobody watches wait undelivered (the notifier
// does not wake for them); a subscriber that comes later is poked for what
// follows, and for a Close made while nobody was subscribed. (That the
// notifier stays asleep is measured, not tested: docs/benchmarks.md.)
TEST(WeightHub, ASubscriberAfterUnwatchedVersionsIsPokedForTheNextOnes) {
  WeightHub hub("m", MakeSnapshot(0));
  for (uint64_t v = 1; v <= 5; ++v) hub.Publish(MakeSnapshot(v));
  Recorder recorder(hub);
  auto subscription = hub.Subscribe(recorder.Callback());
  ASSERT_TRUE(subscription.ok());
  hub.Publish(MakeSnapshot(6));
  EXPECT_TRUE(recorder.AwaitSeen(6));
  subscription->reset();
  hub.Publish(MakeSnapshot(7));
  hub.Close();  // Nobody subscribed: pending.
  Recorder late(hub);
  auto late_subscription = hub.Subscribe(late.Callback());
  ASSERT_TRUE(late_subscription.ok());
  EXPECT_TRUE(late.AwaitSeen(Recorder::kClosed));
}

// The learner publishes; a subscriber that blocks in its callback must not
// hold it: Publish only stores and wakes the hub's notifier thread.
TEST(WeightHub, PublishNeverWaitsForASubscriber) {
  WeightHub hub("m", MakeSnapshot(0));
  absl::Notification entered, release;
  std::atomic<int> pokes{0};
  auto blocking = hub.Subscribe([&] {
    if (pokes.fetch_add(1) == 0) {
      entered.Notify();
      release.WaitForNotification();
    }
  });
  ASSERT_TRUE(blocking.ok());
  hub.Publish(MakeSnapshot(1));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kWait));
  // The callback is blocked on the notifier thread; 1000 more publishes
  // return regardless.
  for (uint64_t v = 2; v <= 1000; ++v) hub.Publish(MakeSnapshot(v));
  EXPECT_EQ(hub.latest()->version, 1000u);
  EXPECT_EQ(pokes.load(), 1);
  release.Notify();
}

TEST(WeightHub, ADroppedSubscriptionIsNoLongerCalled) {
  WeightHub hub("m", MakeSnapshot(0));
  Recorder dropped(hub), kept(hub);
  auto dropped_subscription = hub.Subscribe(dropped.Callback());
  auto kept_subscription = hub.Subscribe(kept.Callback());
  ASSERT_TRUE(dropped_subscription.ok() && kept_subscription.ok());
  EXPECT_EQ(hub.subscriber_count(), 2u);
  hub.Publish(MakeSnapshot(1));
  ASSERT_TRUE(dropped.AwaitSeen(1));
  dropped_subscription->reset();
  EXPECT_EQ(hub.subscriber_count(), 1u);
  const int pokes = dropped.pokes();
  hub.Publish(MakeSnapshot(2));
  ASSERT_TRUE(kept.AwaitSeen(2));  // The notifier has delivered version 2.
  EXPECT_EQ(dropped.pokes(), pokes);
}

TEST(WeightHub, CloseTellsSubscribers) {
  WeightHub hub("m", MakeSnapshot(0));
  Recorder recorder(hub);
  auto subscription = hub.Subscribe(recorder.Callback());
  ASSERT_TRUE(subscription.ok());
  EXPECT_FALSE(hub.closed());
  hub.Close();
  EXPECT_TRUE(recorder.AwaitSeen(Recorder::kClosed));
}

TEST(WeightHub, SubscribersBeyondTheLimitAreResourceExhausted) {
  WeightHub hub("m", MakeSnapshot(0));
  auto first = hub.Subscribe([] {}, /*max_subscribers=*/2);
  auto second = hub.Subscribe([] {}, /*max_subscribers=*/2);
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = hub.Subscribe([] {}, /*max_subscribers=*/2);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("max_watchers_per_model"), absl::string_view::npos);
  first->reset();
  EXPECT_TRUE(hub.Subscribe([] {}, /*max_subscribers=*/2).ok());
}

}  // namespace
}  // namespace deltaserve::server
