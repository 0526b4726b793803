// Replica over a fake stub: local forward with the model core, updates from
// the watch stream, rejection of malformed updates.
#include "deltaserve/client/replica.h"

#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/tests/client/fake_trainer_stub.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::deltaserve::client::testing::FakeTrainerStub;
namespace v1 = ::deltaserve::v1;

constexpr absl::Duration kWait = absl::Seconds(20);

v1::ModelSpec Spec() {
  v1::ModelSpec spec;
  spec.set_name("policy");
  spec.set_input_dim(2);
  spec.set_seed(3);
  auto* hidden = spec.add_layers();
  hidden->set_units(4);
  hidden->set_activation(v1::ACTIVATION_TANH);
  auto* out = spec.add_layers();
  out->set_units(1);
  out->set_activation(v1::ACTIVATION_IDENTITY);
  return spec;
}

constexpr size_t kParameterCount = 4 * 3 + 1 * 5;

v1::ParameterUpdate Update(uint64_t version, float fill, size_t count = kParameterCount) {
  v1::ParameterUpdate update;
  update.set_model("policy");
  update.set_version(version);
  for (size_t i = 0; i < count; ++i) update.add_parameters(fill * static_cast<float>(i + 1) / 10);
  return update;
}

std::vector<float> Flat(const v1::ParameterUpdate& update) {
  return {update.parameters().begin(), update.parameters().end()};
}

// A fake serving Spec() at `initial`, whose watch replays `watched`.
std::shared_ptr<FakeTrainerStub> FakeServer(v1::ParameterUpdate initial,
                                            std::vector<v1::ParameterUpdate> watched) {
  auto stub = std::make_shared<FakeTrainerStub>();
  *stub->model_info.mutable_spec() = Spec();
  stub->model_info.set_version(initial.version());
  stub->model_info.set_parameter_count(kParameterCount);
  stub->parameters = std::move(initial);
  stub->watch_updates = std::move(watched);
  stub->watch_status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream over");
  return stub;
}

model::Matrix Inputs() {
  model::Matrix x(3, 2);
  x << 0.1f, 0.2f,  //
      -1.0f, 0.5f,  //
      2.0f, -2.0f;
  return x;
}

TEST(Replica, ForwardUsesTheFetchedParametersAndReportsTheirVersion) {
  auto stub = FakeServer(Update(4, 1.0f), {});
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub), "policy");
  ASSERT_TRUE(replica.ok()) << replica.status();

  auto result = (*replica)->Forward(Inputs());

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 4u);
  auto expected = (*replica)->mlp().Forward(Flat(Update(4, 1.0f)), Inputs());
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(result->outputs, *expected);
  EXPECT_EQ((*replica)->model_name(), "policy");
  EXPECT_EQ((*replica)->mlp().parameter_count(), kParameterCount);
}

TEST(Replica, SwapsInWatchedVersions) {
  auto stub = FakeServer(Update(0, 1.0f), {Update(0, 1.0f), Update(1, 2.0f), Update(2, -1.0f)});
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub));
  ASSERT_TRUE(replica.ok()) << replica.status();

  ASSERT_TRUE((*replica)->WaitForVersion(2, kWait));

  const std::shared_ptr<const Parameters> snapshot = (*replica)->snapshot();
  EXPECT_EQ(snapshot->version, 2u);
  EXPECT_EQ(snapshot->parameters, Flat(Update(2, -1.0f)));
  model::Mlp::Workspace workspace;
  auto version = (*replica)->Forward(Inputs(), workspace);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, 2u);
  auto expected = (*replica)->mlp().Forward(snapshot->parameters, Inputs());
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(workspace.output(), *expected);
}

TEST(Replica, WaitForVersionTimesOutBelowTheTarget) {
  auto stub = FakeServer(Update(1, 1.0f), {});
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub));
  ASSERT_TRUE(replica.ok()) << replica.status();
  EXPECT_TRUE((*replica)->WaitForVersion(1, absl::ZeroDuration()));
  EXPECT_FALSE((*replica)->WaitForVersion(2, absl::Milliseconds(10)));
  EXPECT_EQ((*replica)->version(), 1u);
}

TEST(Replica, IgnoresAnUpdateOfTheWrongSize) {
  // The bad update comes first; the good one after it proves the bad one was
  // processed (updates are applied in order).
  auto stub = FakeServer(Update(0, 1.0f), {Update(1, 5.0f, kParameterCount - 1), Update(2, 3.0f)});
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub));
  ASSERT_TRUE(replica.ok()) << replica.status();

  ASSERT_TRUE((*replica)->WaitForVersion(2, kWait));
  EXPECT_EQ((*replica)->snapshot()->parameters, Flat(Update(2, 3.0f)));
}

TEST(Replica, CreateFailsWhenTheServerSendsTheWrongParameterCount) {
  auto stub = FakeServer(Update(0, 1.0f, kParameterCount + 1), {});
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub));
  EXPECT_EQ(replica.status().code(), absl::StatusCode::kInternal);
}

TEST(Replica, CreatePropagatesTheServerStatus) {
  auto stub = FakeServer(Update(0, 1.0f), {});
  stub->status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no model \"x\"");
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub), "x");
  EXPECT_EQ(replica.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(replica.status().message(), "no model \"x\"");
  EXPECT_EQ(Replica::Create(nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Replica, CreateRejectsASpecTheCoreCannotBuild) {
  auto stub = FakeServer(Update(0, 1.0f), {});
  stub->model_info.mutable_spec()->mutable_layers(0)->set_activation(v1::ACTIVATION_UNSPECIFIED);
  EXPECT_EQ(Replica::Create(std::make_shared<TrainerClient>(stub)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Replica, ConcurrentForwardsAgreeWithTheSnapshotTheyReport) {
  auto stub = FakeServer(Update(0, 1.0f), {Update(1, 2.0f), Update(2, -1.0f)});
  auto replica = Replica::Create(std::make_shared<TrainerClient>(stub));
  ASSERT_TRUE(replica.ok()) << replica.status();
  const Replica& r = **replica;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, &mismatches, t] {
      for (int i = 0; i < 200; ++i) {
        auto result = r.Forward(Inputs());
        if (!result.ok()) {
          ++mismatches[t];
          continue;
        }
        const float fill = result->version == 0 ? 1.0f : result->version == 1 ? 2.0f : -1.0f;
        auto expected = r.mlp().Forward(Flat(Update(result->version, fill)), Inputs());
        if (!expected.ok() || result->outputs != *expected) ++mismatches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace deltaserve::client
