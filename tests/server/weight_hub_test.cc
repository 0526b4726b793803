#include "server/weight_hub.h"

#include <atomic>
#include <memory>

#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

std::shared_ptr<const Snapshot> MakeSnapshot(uint64_t version) {
  auto s = std::make_shared<Snapshot>();
  s->version = version;
  s->parameters = {1.0f * version, 2.0f, 3.0f};
  return s;
}

deltaserve::v1::ParameterUpdate Decode(const EncodedUpdate& encoded) {
  grpc::ByteBuffer copy = encoded.bytes;
  deltaserve::v1::ParameterUpdate update;
  EXPECT_TRUE(
      grpc::SerializationTraits<deltaserve::v1::ParameterUpdate>::Deserialize(&copy, &update).ok());
  return update;
}

TEST(WeightHub, LatestIsTheNewestPublishedVersionEncoded) {
  WeightHub hub("m", MakeSnapshot(0));
  for (uint64_t v = 1; v <= 5; ++v) hub.Publish(MakeSnapshot(v));
  std::shared_ptr<const EncodedUpdate> latest = hub.Latest();
  EXPECT_EQ(latest->version, 5u);
  deltaserve::v1::ParameterUpdate update = Decode(*latest);
  EXPECT_EQ(update.model(), "m");
  EXPECT_EQ(update.version(), 5u);
  ASSERT_EQ(update.parameters_size(), 3);
  EXPECT_EQ(update.parameters(0), 5.0f);
}

TEST(WeightHub, EachVersionIsEncodedOnceForAllReaders) {
  WeightHub hub("m", MakeSnapshot(0));
  hub.Publish(MakeSnapshot(1));
  EXPECT_EQ(hub.Latest().get(), hub.Latest().get());
  std::shared_ptr<const EncodedUpdate> v1 = hub.Latest();
  hub.Publish(MakeSnapshot(2));
  EXPECT_NE(hub.Latest().get(), v1.get());
  EXPECT_EQ(hub.Latest()->version, 2u);
}

TEST(WeightHub, OlderVersionsAreIgnored) {
  WeightHub hub("m", MakeSnapshot(3));
  hub.Publish(MakeSnapshot(2));
  EXPECT_EQ(hub.latest_snapshot()->version, 3u);
}

TEST(WeightHub, SlowSubscriberSkipsToTheNewestVersion) {
  WeightHub hub("m", MakeSnapshot(0));
  std::atomic<int> pokes{0};
  auto subscription = hub.Subscribe([&] { ++pokes; });
  // The subscriber is "busy" while ten versions are published: it only
  // counts pokes. When it pulls, it gets the newest version only.
  for (uint64_t v = 1; v <= 10; ++v) hub.Publish(MakeSnapshot(v));
  EXPECT_EQ(pokes.load(), 10);
  EXPECT_EQ(hub.Latest()->version, 10u);
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
