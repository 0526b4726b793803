// The Admin service and --state_dir through a real DeltaServer on loopback:
// Checkpoint and ImportParameters answer with the right codes and change
// nothing when refused; a model whose disk fails goes NOT_SERVING (so a
// liveness probe restarts the process) while reads keep working.
#include <string>
#include <vector>

#include "deltaserve/tests/persist/faulty_file_system.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/v1/admin.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using ::deltaserve::testing::FaultyFileSystem;
using ::deltaserve::testing::TempDir;
using ::testing::HasSubstr;
using testing::SmallModelConfig;

constexpr int kParameters = 8 * 4 + 8 + 2 * 8 + 2;  // SmallModelConfig: 4 → 8 → 2.

class AdminServiceTest : public testing::LoopbackServerTest {
 protected:
  void Start(bool with_state) {
    ServerOptions options;
    if (with_state) {
      options.state_dir = tmp_.path();
      options.state_fs = &fs_;
    }
    StartServer(SmallModelConfig(""), options);
    admin_ = v1::Admin::NewStub(channel_);
  }

  v1::SubmitDeltaRequest OneRow() {
    v1::SubmitDeltaRequest r;
    r.set_model("m");
    *r.mutable_inputs() = testing::WireMatrix(1, 4, {0.1f, 0.2f, -0.3f, 0.4f});
    *r.mutable_deltas() = testing::WireMatrix(1, 2, {0.5f, -0.5f});
    return r;
  }

  v1::ParameterUpdate Parameters() {
    v1::GetParametersRequest request;
    request.set_model("m");
    v1::ParameterUpdate update;
    EXPECT_TRUE(stub_->GetParameters(Context().get(), request, &update).ok());
    return update;
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health(const std::string& service) {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(health->Check(Context().get(), request, &response).ok()) << service;
    return response.status();
  }

  TempDir tmp_;
  FaultyFileSystem fs_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(AdminServiceTest, CheckpointWithoutStateDirIsFailedPrecondition) {
  Start(/*with_state=*/false);
  v1::CheckpointRequest request;
  v1::CheckpointResponse response;
  grpc::Status status = admin_->Checkpoint(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("--state_dir"));
}

TEST_F(AdminServiceTest, CheckpointReturnsTheDurableFile) {
  Start(/*with_state=*/true);
  ASSERT_TRUE(Submit(OneRow()).ok());
  v1::CheckpointRequest request;
  request.set_model("m");
  v1::CheckpointResponse response;
  ASSERT_TRUE(admin_->Checkpoint(Context().get(), request, &response).ok());
  EXPECT_EQ(response.model(), "m");
  EXPECT_EQ(response.version(), 1u);
  EXPECT_THAT(response.path(), HasSubstr(tmp_.path() + "/m/checkpoint-"));
  EXPECT_TRUE(std::filesystem::exists(response.path()));
  EXPECT_EQ(std::filesystem::file_size(response.path()), response.bytes());
  request.set_model("nope");
  EXPECT_EQ(admin_->Checkpoint(Context().get(), request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, ImportSetsParametersAsANewVersion) {
  Start(/*with_state=*/false);
  v1::ImportParametersRequest request;
  request.set_model("m");
  for (int i = 0; i < kParameters; ++i) request.add_parameters(0.01f * static_cast<float>(i));
  v1::ImportParametersResponse response;
  ASSERT_TRUE(admin_->ImportParameters(Context().get(), request, &response).ok());
  EXPECT_EQ(response.version(), 1u);
  const v1::ParameterUpdate after = Parameters();
  EXPECT_EQ(after.version(), 1u);
  EXPECT_THAT(after.parameters(), ::testing::ElementsAreArray(request.parameters()));
}

TEST_F(AdminServiceTest, BadImportsAreRefusedAndChangeNothing) {
  Start(/*with_state=*/false);
  const v1::ParameterUpdate before = Parameters();
  v1::ImportParametersRequest short_request;
  short_request.set_model("m");
  short_request.add_parameters(1.0f);
  v1::ImportParametersRequest nan_request;
  nan_request.set_model("m");
  for (int i = 0; i < kParameters; ++i) nan_request.add_parameters(i == 7 ? NAN : 0.0f);
  v1::ImportParametersResponse response;
  grpc::Status status = admin_->ImportParameters(Context().get(), short_request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("expected 58 values"));
  EXPECT_EQ(admin_->ImportParameters(Context().get(), nan_request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Bytes that are no ImportParametersRequest at all.
  grpc::GenericStub generic(channel_);
  grpc::ByteBuffer garbage_reply;
  const std::string junk = "\xff\xff\xff\xff";
  grpc::Slice slice(junk);
  grpc::ByteBuffer garbage(&slice, 1);
  grpc::Status malformed;
  absl::Notification done;
  auto context = Context();
  generic.UnaryCall(context.get(), "/deltaserve.v1.Admin/ImportParameters", {}, &garbage,
                    &garbage_reply, [&](grpc::Status s) {
                      malformed = std::move(s);
                      done.Notify();
                    });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(testing::kWait));
  EXPECT_EQ(malformed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const v1::ParameterUpdate after = Parameters();
  EXPECT_EQ(after.version(), before.version());
  EXPECT_THAT(after.parameters(), ::testing::ElementsAreArray(before.parameters()));
  ASSERT_TRUE(Submit(OneRow()).ok());  // And it still trains.
}

TEST_F(AdminServiceTest, AFailedDiskStopsTrainingAndTurnsHealthNotServing) {
  Start(/*with_state=*/true);
  ASSERT_TRUE(Submit(OneRow()).ok());
  EXPECT_EQ(Health(""), grpc::health::v1::HealthCheckResponse::SERVING);
  fs_.fail_appends = true;
  grpc::Status failed = Submit(OneRow());
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(failed.error_message(), HasSubstr("No space left on device"));
  for (const std::string service : {"", "deltaserve.v1.Trainer", "deltaserve.v1.Trainer/m"}) {
    EXPECT_EQ(Health(service), grpc::health::v1::HealthCheckResponse::NOT_SERVING) << service;
  }
  EXPECT_EQ(Parameters().version(), 1u);  // Reads go on, at the last durable version.
  fs_.fail_appends = false;
  EXPECT_EQ(Submit(OneRow()).error_code(), grpc::StatusCode::UNAVAILABLE);  // Until a restart.
}

}  // namespace
}  // namespace deltaserve::server
