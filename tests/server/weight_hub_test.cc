#include "server/core/weight_hub.h"

#include <atomic>
#include <memory>

#include "gtest/gtest.h"
#include "tests/server/test_util.h"

namespace deltaserve::server {
namespace {

using testing::MakeSnapshot;

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

TEST(WeightHub, SlowSubscriberSkipsToTheNewestVersion) {
  WeightHub hub("m", MakeSnapshot(0));
  std::atomic<int> pokes{0};
  auto subscription = hub.Subscribe([&] { ++pokes; });
  // The subscriber is "busy" while ten versions are published: it only
  // counts pokes. When it pulls, it gets the newest version only.
  for (uint64_t v = 1; v <= 10; ++v) hub.Publish(MakeSnapshot(v));
  EXPECT_EQ(pokes.load(), 10);
  EXPECT_EQ(hub.latest()->version, 10u);
}

TEST(WeightHub, DroppedSubscriptionIsNoLongerCalled) {
  WeightHub hub("m", MakeSnapshot(0));
  std::atomic<int> pokes{0};
  auto subscription = hub.Subscribe([&] { ++pokes; });
  EXPECT_EQ(hub.subscriber_count(), 1u);
  hub.Publish(MakeSnapshot(1));
  subscription.reset();
  EXPECT_EQ(hub.subscriber_count(), 0u);
  hub.Publish(MakeSnapshot(2));
  EXPECT_EQ(pokes.load(), 1);
}

TEST(WeightHub, CloseTellsSubscribers) {
  WeightHub hub("m", MakeSnapshot(0));
  bool saw_closed = false;
  auto subscription = hub.Subscribe([&] { saw_closed = hub.closed(); });
  EXPECT_FALSE(hub.closed());
  hub.Close();
  EXPECT_TRUE(saw_closed);
}

}  // namespace
}  // namespace deltaserve::server
