#include "deltaserve/server/service/encoded_update.h"

#include <memory>

#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using testing::MakeSnapshot;

deltaserve::v1::ParameterUpdate Decode(const EncodedUpdate& encoded) {
  grpc::ByteBuffer copy = encoded.bytes;
  deltaserve::v1::ParameterUpdate update;
  EXPECT_TRUE(
      grpc::SerializationTraits<deltaserve::v1::ParameterUpdate>::Deserialize(&copy, &update).ok());
  return update;
}

TEST(EncodedUpdateCache, EncodesTheSnapshotAsAParameterUpdate) {
  EncodedUpdateCache cache("m");
  std::shared_ptr<const EncodedUpdate> encoded = cache.Encode(MakeSnapshot(5));
  EXPECT_EQ(encoded->version, 5u);
  deltaserve::v1::ParameterUpdate update = Decode(*encoded);
  EXPECT_EQ(update.model(), "m");
  EXPECT_EQ(update.version(), 5u);
  ASSERT_EQ(update.parameters_size(), 3);
  EXPECT_EQ(update.parameters(0), 5.0f);
}

TEST(EncodedUpdateCache, EachVersionIsEncodedOnceForAllReaders) {
  EncodedUpdateCache cache("m");
  std::shared_ptr<const Snapshot> v1 = MakeSnapshot(1);
  std::shared_ptr<const EncodedUpdate> first = cache.Encode(v1);
  EXPECT_EQ(cache.Encode(v1).get(), first.get());
  std::shared_ptr<const EncodedUpdate> second = cache.Encode(MakeSnapshot(2));
  EXPECT_NE(second.get(), first.get());
  EXPECT_EQ(second->version, 2u);
}

TEST(EncodedUpdateCache, AnOlderSnapshotGetsTheNewerEncodingAlreadyCached) {
  EncodedUpdateCache cache("m");
  std::shared_ptr<const EncodedUpdate> newer = cache.Encode(MakeSnapshot(7));
  EXPECT_EQ(cache.Encode(MakeSnapshot(6)).get(), newer.get());
}

TEST(EncodedUpdateCache, ANewerGenerationIsEncodedEvenAtALowerVersion) {
  EncodedUpdateCache cache("m");
  std::shared_ptr<const EncodedUpdate> before = cache.Encode(MakeSnapshot(7));
  auto restarted = std::make_shared<Snapshot>(*MakeSnapshot(2));
  restarted->generation = 1;
  std::shared_ptr<const EncodedUpdate> after = cache.Encode(restarted);
  EXPECT_NE(after.get(), before.get());
  EXPECT_EQ(after->version, 2u);
  EXPECT_EQ(after->generation, 1u);
  EXPECT_EQ(Decode(*after).version(), 2u);
  EXPECT_EQ(cache.Encode(MakeSnapshot(8)).get(), after.get()) << "generation 0 is older";
}

}  // namespace
}  // namespace deltaserve::server
