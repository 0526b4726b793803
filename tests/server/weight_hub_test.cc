#include "deltaserve/server/core/weight_hub.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <utility>

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

// A relay whose upstream restarted lower (Snapshot::generation): the newer
// generation wins whatever its version; within it, versions order as before.
TEST(WeightHub, ANewerGenerationReplacesAHigherVersion) {
  WeightHub hub("m", MakeSnapshot(9));
  auto restarted = std::make_shared<Snapshot>(*MakeSnapshot(0));
  restarted->generation = 1;
  hub.Publish(restarted);
  EXPECT_EQ(hub.latest()->version, 0u);
  EXPECT_EQ(hub.latest()->generation, 1u);
  hub.Publish(MakeSnapshot(10));  // Generation 0: older, ignored.
  EXPECT_EQ(hub.latest()->version, 0u);
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

// A timed poke comes without any publish, not before its time, and once.
TEST(WeightHub, PokeAtCallsTheSubscriberAtItsTimeWithoutAChange) {
  WeightHub hub("m", MakeSnapshot(4));
  absl::Mutex mu;
  int pokes = 0;          // guarded by mu
  absl::Time first_poke;  // guarded by mu
  auto subscription = hub.Subscribe([&] {
    absl::MutexLock lock(&mu);
    if (++pokes == 1) first_poke = absl::Now();
  });
  ASSERT_TRUE(subscription.ok()) << subscription.status();
  const absl::Time when = absl::Now() + absl::Milliseconds(20);
  (*subscription)->PokeAt(when);
  absl::MutexLock lock(&mu);
  auto poked = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return pokes >= 1; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&poked), kWait)) << "the timed poke never came";
  EXPECT_GE(first_poke, when);
}

// A subscriber that asked for a poke later is not called for changes before
// it (they are left to the poke), while one that did not is; Close() calls it
// at once all the same.
TEST(WeightHub, ChangesBeforeAPokeAreLeftToThePokeButCloseIsNot) {
  WeightHub hub("m", MakeSnapshot(0));
  absl::Mutex mu;
  int waiting_calls = 0;   // guarded by mu
  uint64_t other_saw = 0;  // guarded by mu: the newest version `other` was called for
  auto waiting = hub.Subscribe([&] {
    absl::MutexLock lock(&mu);
    ++waiting_calls;
  });
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  (*waiting)->PokeAt(absl::Now() + absl::Hours(1));
  // Subscribed second: in each round of calls it comes after `waiting`.
  auto other = hub.Subscribe([&] {
    const uint64_t version = hub.latest()->version;
    absl::MutexLock lock(&mu);
    other_saw = std::max(other_saw, version);
  });
  ASSERT_TRUE(other.ok()) << other.status();
  for (uint64_t version = 1; version <= 3; ++version) {
    hub.Publish(MakeSnapshot(version));
    absl::MutexLock lock(&mu);
    auto called = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return other_saw >= version; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&called), kWait)) << "version " << version;
    EXPECT_EQ(waiting_calls, 0) << "called for version " << version << " before its poke";
  }
  hub.Close();
  absl::MutexLock lock(&mu);
  auto poked = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return waiting_calls >= 1; };
  EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&poked), kWait))
      << "Close() waited for the poke an hour away";
}

// A later PokeAt for an earlier time is not held up by the pending later one.
TEST(WeightHub, AnEarlierPokeAtIsNotHeldUpByALaterOne) {
  WeightHub hub("m", MakeSnapshot(0));
  absl::Notification poked;
  auto subscription = hub.Subscribe([&] {
    if (!poked.HasBeenNotified()) poked.Notify();
  });
  ASSERT_TRUE(subscription.ok()) << subscription.status();
  (*subscription)->PokeAt(absl::Now() + absl::Hours(1));
  (*subscription)->PokeAt(absl::Now());
  EXPECT_TRUE(poked.WaitForNotificationWithTimeout(kWait))
      << "the due poke waited for the one an hour away";
}

// A poke still pending when its Subscription is destroyed is dropped (the
// subscriber may be freed right after), and the hub still closes cleanly.
TEST(WeightHub, APendingPokeOfADroppedSubscriptionIsNeverDelivered) {
  WeightHub hub("m", MakeSnapshot(0));
  std::atomic<int> calls{0};
  auto subscription = hub.Subscribe([&] { ++calls; });
  ASSERT_TRUE(subscription.ok()) << subscription.status();
  (*subscription)->PokeAt(absl::Now() + absl::Milliseconds(30));
  subscription->reset();
  Recorder other(hub);
  auto witness = hub.Subscribe(other.Callback());
  ASSERT_TRUE(witness.ok()) << witness.status();
  (*witness)->PokeAt(absl::Now() + absl::Milliseconds(60));  // due after the dropped one
  hub.Publish(MakeSnapshot(1));
  ASSERT_TRUE(other.AwaitSeen(1));
  // The notifier handles pokes in time order: once the later one was
  // delivered, the dropped one's time has passed too.
  const int before = other.pokes();
  absl::Notification later;
  auto last = hub.Subscribe([&] {
    if (!later.HasBeenNotified()) later.Notify();
  });
  ASSERT_TRUE(last.ok()) << last.status();
  (*last)->PokeAt(absl::Now() + absl::Milliseconds(80));
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(kWait));
  EXPECT_GE(other.pokes(), before);
  EXPECT_EQ(calls.load(), 0) << "a dropped subscription was called";
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

// Records the one answer a parked AwaitVersion gets.
class WaitRecorder {
 public:
  WeightHub::WaitDone Callback() {
    return [this](absl::StatusOr<std::shared_ptr<const Snapshot>> answer) {
      absl::MutexLock lock(&mu_);
      ++calls_;
      answer_ = std::move(answer);
    };
  }
  // The answer, once there is one (nullopt after kWait).
  std::optional<absl::StatusOr<std::shared_ptr<const Snapshot>>> Await() {
    absl::MutexLock lock(&mu_);
    auto answered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ > 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&answered), kWait)) return std::nullopt;
    return answer_;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::StatusOr<std::shared_ptr<const Snapshot>> answer_ ABSL_GUARDED_BY(mu_);
};

TEST(WeightHubWait, AVersionAlreadyReachedIsReadyAtOnce) {
  WeightHub hub("m", MakeSnapshot(3));
  WaitRecorder recorder;
  for (uint64_t min_version : {0u, 3u}) {
    absl::StatusOr<WeightHub::Wait> wait = hub.AwaitVersion(min_version, recorder.Callback());
    ASSERT_TRUE(wait.ok()) << wait.status();
    ASSERT_NE(wait->ready, nullptr);
    EXPECT_EQ(wait->ready->version, 3u);
    EXPECT_EQ(wait->ticket, 0u);
  }
  EXPECT_EQ(hub.waiter_count(), 0u);
  EXPECT_EQ(recorder.calls(), 0);  // `done` is dropped when ready.
}

TEST(WeightHubWait, AParkedWaiterGetsTheVersionOnceReached) {
  WeightHub hub("m", MakeSnapshot(0));
  WaitRecorder recorder;
  absl::StatusOr<WeightHub::Wait> wait = hub.AwaitVersion(2, recorder.Callback());
  ASSERT_TRUE(wait.ok()) << wait.status();
  EXPECT_EQ(wait->ready, nullptr);
  EXPECT_GT(wait->ticket, 0u);
  EXPECT_EQ(hub.waiter_count(), 1u);
  hub.Publish(MakeSnapshot(1));  // Not enough: the waiter stays.
  hub.Publish(MakeSnapshot(2));
  auto answer = recorder.Await();
  ASSERT_TRUE(answer.has_value()) << "no answer within " << kWait;
  ASSERT_TRUE(answer->ok()) << answer->status();
  EXPECT_GE((**answer)->version, 2u);
  EXPECT_EQ(hub.waiter_count(), 0u);
  EXPECT_FALSE(hub.CancelWait(wait->ticket));  // Already answered.
}

// The answer is the newest version when the notifier runs, not the one that
// first reached min_version: the notifier is held (by a subscriber's
// callback) while versions 2 and 3 are published.
TEST(WeightHubWait, TheAnswerIsTheNewestVersionNeverABacklog) {
  WeightHub hub("m", MakeSnapshot(0));
  absl::Notification entered, release;
  std::atomic<bool> first{true};
  auto subscription = hub.Subscribe([&] {
    if (first.exchange(false)) {
      entered.Notify();
      release.WaitForNotification();
    }
  });
  ASSERT_TRUE(subscription.ok());
  hub.Publish(MakeSnapshot(1));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kWait));  // The notifier is held.
  WaitRecorder recorder;
  absl::StatusOr<WeightHub::Wait> wait = hub.AwaitVersion(2, recorder.Callback());
  ASSERT_TRUE(wait.ok()) << wait.status();
  ASSERT_EQ(wait->ready, nullptr);
  hub.Publish(MakeSnapshot(2));
  hub.Publish(MakeSnapshot(3));
  EXPECT_EQ(recorder.calls(), 0);
  release.Notify();
  auto answer = recorder.Await();
  ASSERT_TRUE(answer.has_value()) << "no answer within " << kWait;
  ASSERT_TRUE(answer->ok()) << answer->status();
  EXPECT_EQ((**answer)->version, 3u);
  EXPECT_EQ((**answer)->parameters[0], 3.0f);
  subscription->reset();
}

TEST(WeightHubWait, CloseAnswersEveryWaiterUnavailableBeforeReturning) {
  WeightHub hub("m", MakeSnapshot(0));
  WaitRecorder a, b;
  ASSERT_TRUE(hub.AwaitVersion(1, a.Callback()).ok());
  ASSERT_TRUE(hub.AwaitVersion(5, b.Callback()).ok());
  hub.Close();
  EXPECT_EQ(a.calls(), 1);  // Answered inside Close.
  EXPECT_EQ(b.calls(), 1);
  EXPECT_EQ(hub.waiter_count(), 0u);
  auto answer = b.Await();
  ASSERT_TRUE(answer.has_value());
  EXPECT_TRUE(absl::IsUnavailable(answer->status())) << answer->status();
  // After Close a new waiter is refused at once; a reached version still answers.
  WaitRecorder c;
  absl::StatusOr<WeightHub::Wait> late = hub.AwaitVersion(1, c.Callback());
  EXPECT_TRUE(absl::IsUnavailable(late.status())) << late.status();
  absl::StatusOr<WeightHub::Wait> reached = hub.AwaitVersion(0, c.Callback());
  ASSERT_TRUE(reached.ok());
  EXPECT_EQ(reached->ready->version, 0u);
  EXPECT_EQ(c.calls(), 0);
}

TEST(WeightHubWait, ACancelledWaiterIsNeverCalled) {
  WeightHub hub("m", MakeSnapshot(0));
  WaitRecorder recorder;
  absl::StatusOr<WeightHub::Wait> wait = hub.AwaitVersion(1, recorder.Callback());
  ASSERT_TRUE(wait.ok());
  EXPECT_TRUE(hub.CancelWait(wait->ticket));
  EXPECT_FALSE(hub.CancelWait(wait->ticket));  // Once.
  EXPECT_EQ(hub.waiter_count(), 0u);
  // A later publish and close reach nobody; a second waiter still works.
  WaitRecorder other;
  ASSERT_TRUE(hub.AwaitVersion(2, other.Callback()).ok());
  hub.Publish(MakeSnapshot(2));
  auto answer = other.Await();
  ASSERT_TRUE(answer.has_value());
  ASSERT_TRUE(answer->ok());
  hub.Close();
  EXPECT_EQ(recorder.calls(), 0);
}

TEST(WeightHubWait, WaitersBeyondTheLimitAreResourceExhausted) {
  WeightHub hub("m", MakeSnapshot(0));
  WaitRecorder a, b, c;
  ASSERT_TRUE(hub.AwaitVersion(1, a.Callback(), 2).ok());
  ASSERT_TRUE(hub.AwaitVersion(1, b.Callback(), 2).ok());
  absl::StatusOr<WeightHub::Wait> third = hub.AwaitVersion(1, c.Callback(), 2);
  ASSERT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  EXPECT_NE(third.status().message().find("max_parameter_waiters_per_model"),
            absl::string_view::npos);
  // A version already reached is not a waiter: never refused.
  EXPECT_TRUE(hub.AwaitVersion(0, c.Callback(), 2).ok());
  hub.Publish(MakeSnapshot(1));
  ASSERT_TRUE(a.Await().has_value());
  ASSERT_TRUE(b.Await().has_value());
  EXPECT_EQ(c.calls(), 0);
  hub.Close();
}

// A hub destroyed without Close still answers its waiters (nothing leaks).
TEST(WeightHubWait, DestroyingTheHubAnswersItsWaiters) {
  WaitRecorder recorder;
  {
    WeightHub hub("m", MakeSnapshot(0));
    ASSERT_TRUE(hub.AwaitVersion(1, recorder.Callback()).ok());
  }
  EXPECT_EQ(recorder.calls(), 1);
  auto answer = recorder.Await();
  ASSERT_TRUE(answer.has_value());
  EXPECT_TRUE(absl::IsUnavailable(answer->status()));
}

}  // namespace
}  // namespace deltaserve::server
