#include "deltaserve/client/trainer_client.h"

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/tests/client/fake_trainer_stub.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::deltaserve::client::testing::FakeTrainerStub;
namespace v1 = ::deltaserve::v1;

v1::Matrix WireMatrix(uint32_t rows, uint32_t cols, const std::vector<float>& data) {
  v1::Matrix m;
  m.set_rows(rows);
  m.set_cols(cols);
  for (float x : data) m.add_data(x);
  return m;
}

std::vector<float> Data(const v1::Matrix& m) { return {m.data().begin(), m.data().end()}; }

v1::ParameterUpdate Update(uint64_t version, const std::vector<float>& params) {
  v1::ParameterUpdate u;
  u.set_model("policy");
  u.set_version(version);
  for (float x : params) u.add_parameters(x);
  return u;
}

// δ = 1 for one all-ones input row of width 2.
DeltaSubmission OnesSubmission() {
  DeltaSubmission submission;
  submission.inputs = model::Matrix::Ones(1, 2);
  submission.deltas = model::Matrix::Ones(1, 1);
  return submission;
}

struct Fixture {
  explicit Fixture(ClientOptions options = {})
      : stub(std::make_shared<FakeTrainerStub>()), client(stub, options) {}
  std::shared_ptr<FakeTrainerStub> stub;
  TrainerClient client;
};

TEST(TrainerClient, ForwardSendsRowMajorInputsAndReturnsRowMajorOutputs) {
  Fixture f;
  f.stub->forward_response.mutable_outputs()->CopyFrom(WireMatrix(2, 2, {1, 2, 3, 4}));
  f.stub->forward_response.set_version(7);
  model::Matrix inputs(2, 3);
  inputs << 1, 2, 3,  //
      4, 5, 6;

  auto result = f.client.Forward(inputs, "policy");

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(f.stub->last_forward_request.model(), "policy");
  EXPECT_EQ(f.stub->last_forward_request.inputs().rows(), 2u);
  EXPECT_EQ(f.stub->last_forward_request.inputs().cols(), 3u);
  EXPECT_EQ(Data(f.stub->last_forward_request.inputs()), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  ASSERT_EQ(result->outputs.rows(), 2);
  ASSERT_EQ(result->outputs.cols(), 2);
  EXPECT_EQ(result->outputs(0, 1), 2.0f);
  EXPECT_EQ(result->outputs(1, 0), 3.0f);
  EXPECT_EQ(result->version, 7u);
}

TEST(TrainerClient, ForwardCopiesABlockOfALargerMatrixRowByRow) {
  Fixture f;
  f.stub->forward_response.mutable_outputs()->CopyFrom(WireMatrix(1, 1, {0}));
  model::Matrix big(3, 4);
  big << 0, 1, 2, 3,  //
      4, 5, 6, 7,     //
      8, 9, 10, 11;

  ASSERT_TRUE(f.client.Forward(big.block(1, 1, 2, 2)).ok());

  EXPECT_EQ(f.stub->last_forward_request.inputs().rows(), 2u);
  EXPECT_EQ(f.stub->last_forward_request.inputs().cols(), 2u);
  EXPECT_EQ(Data(f.stub->last_forward_request.inputs()), (std::vector<float>{5, 6, 9, 10}));
}

TEST(TrainerClient, ForwardRejectsAServerMatrixWithTheWrongValueCount) {
  Fixture f;
  f.stub->forward_response.mutable_outputs()->CopyFrom(WireMatrix(2, 2, {1, 2, 3}));
  auto result = f.client.Forward(model::Matrix::Zero(2, 1));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(result.status().message().find("= 4 values, got 3"), absl::string_view::npos)
      << result.status();
}

TEST(TrainerClient, SubmitDeltaSendsEveryFieldAndReturnsTheServerAnswer) {
  Fixture f;
  f.stub->submit_response.set_version(12);
  f.stub->submit_response.set_surrogate_loss(0.25);
  f.stub->submit_response.set_staleness(2);
  f.stub->submit_response.set_stepped(true);
  DeltaSubmission submission;
  submission.inputs = model::Matrix(1, 2);
  submission.inputs << 1, 2;
  submission.acted_outputs = model::Matrix(1, 3);
  *submission.acted_outputs << 3, 4, 5;
  submission.deltas = model::Matrix(1, 3);
  submission.deltas << -1, 0.5, 2;
  submission.version = 10;
  submission.objective = model::Objective::kMaximize;

  auto result = f.client.SubmitDelta(submission, "policy");

  ASSERT_TRUE(result.ok()) << result.status();
  const v1::SubmitDeltaRequest& sent = f.stub->last_submit_request;
  EXPECT_EQ(sent.model(), "policy");
  EXPECT_EQ(Data(sent.inputs()), (std::vector<float>{1, 2}));
  EXPECT_EQ(sent.outputs().rows(), 1u);
  EXPECT_EQ(sent.outputs().cols(), 3u);
  EXPECT_EQ(Data(sent.outputs()), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(Data(sent.deltas()), (std::vector<float>{-1, 0.5, 2}));
  EXPECT_EQ(sent.deltas().cols(), 3u);
  EXPECT_EQ(sent.version(), 10u);
  EXPECT_EQ(sent.objective(), v1::MAXIMIZE);
  EXPECT_EQ(result->version, 12u);
  EXPECT_DOUBLE_EQ(result->surrogate_loss, 0.25);
  EXPECT_EQ(result->staleness, 2u);
  EXPECT_TRUE(result->stepped);
}

TEST(TrainerClient, SubmitDeltaWithoutActedOutputsLeavesThemUnset) {
  Fixture f;
  DeltaSubmission submission;
  submission.inputs = model::Matrix::Ones(2, 2);
  submission.deltas = model::Matrix::Ones(2, 1);

  ASSERT_TRUE(f.client.SubmitDelta(submission).ok());

  EXPECT_FALSE(f.stub->last_submit_request.has_outputs());
  EXPECT_EQ(f.stub->last_submit_request.objective(), v1::MINIMIZE);
  EXPECT_EQ(f.stub->last_submit_request.model(), "");
}

TEST(TrainerClient, EverySubmissionGetsItsOwnRequestId) {
  Fixture f;
  DeltaSubmission submission = OnesSubmission();
  ASSERT_TRUE(f.client.SubmitDelta(submission).ok());
  ASSERT_TRUE(f.client.SubmitDelta(submission).ok());
  ASSERT_EQ(f.stub->submit_requests.size(), 2u);
  EXPECT_EQ(f.stub->submit_requests[0].request_id().size(), 32u);
  EXPECT_NE(f.stub->submit_requests[0].request_id(), f.stub->submit_requests[1].request_id());
  submission.request_id = "mine";
  ASSERT_TRUE(f.client.SubmitDelta(submission).ok());
  EXPECT_EQ(f.stub->last_submit_request.request_id(), "mine");
}

// The first call timed out after the server applied it; the retry carries the
// same id, so the server answers with the original result.
TEST(TrainerClient, ATimedOutSubmitIsRetriedWithTheSameRequestId) {
  Fixture f;
  f.stub->scripted_submit_statuses = {grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow"),
                                      grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting")};
  f.stub->submit_response.set_version(4);
  f.stub->submit_response.set_duplicate(true);

  absl::StatusOr<SubmitDeltaResult> result = f.client.SubmitDelta(OnesSubmission());

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->duplicate);
  EXPECT_EQ(result->version, 4u);
  ASSERT_EQ(f.stub->submit_requests.size(), 3u);
  EXPECT_FALSE(f.stub->submit_requests[0].request_id().empty());
  for (const auto& request : f.stub->submit_requests) {
    EXPECT_EQ(request.request_id(), f.stub->submit_requests[0].request_id());
  }
}

TEST(TrainerClient, SubmitRetriesStopAtTheLimitAndOtherCodesAreNotRetried) {
  ClientOptions options;
  options.submit_retries = 1;
  Fixture f(options);
  f.stub->status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
  const DeltaSubmission submission = OnesSubmission();
  EXPECT_EQ(f.client.SubmitDelta(submission).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(f.stub->submit_requests.size(), 2u);
  f.stub->status = grpc::Status(grpc::StatusCode::ABORTED, "stale");
  EXPECT_EQ(f.client.SubmitDelta(submission).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(f.stub->submit_requests.size(), 3u);
}

TEST(TrainerClient, GetParametersReturnsTheFlatBufferAndVersion) {
  Fixture f;
  f.stub->parameters = Update(3, {0.5f, -1.5f, 2.0f});

  auto params = f.client.GetParameters("policy");

  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(f.stub->last_parameters_request.model(), "policy");
  EXPECT_EQ(params->model, "policy");
  EXPECT_EQ(params->version, 3u);
  EXPECT_EQ(params->parameters, (std::vector<float>{0.5f, -1.5f, 2.0f}));
}

TEST(TrainerClient, GetModelInfoPassesTheModelNameAndReturnsTheMessage) {
  Fixture f;
  f.stub->model_info.mutable_spec()->set_name("policy");
  f.stub->model_info.set_parameter_count(42);

  auto info = f.client.GetModelInfo("policy");

  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(f.stub->last_info_request.model(), "policy");
  EXPECT_EQ(info->parameter_count(), 42u);
}

TEST(TrainerClient, EveryUnaryCallCarriesTheConfiguredDeadline) {
  ClientOptions options;
  options.timeout = absl::Seconds(3);
  Fixture f(options);
  f.stub->forward_response.mutable_outputs()->CopyFrom(WireMatrix(1, 1, {0}));
  DeltaSubmission submission;
  submission.inputs = model::Matrix::Ones(1, 1);
  submission.deltas = model::Matrix::Ones(1, 1);

  const auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(f.client.GetModelInfo().ok());
  ASSERT_TRUE(f.client.Forward(model::Matrix::Ones(1, 1)).ok());
  ASSERT_TRUE(f.client.SubmitDelta(submission).ok());
  ASSERT_TRUE(f.client.GetParameters().ok());
  const auto after = std::chrono::system_clock::now();

  const std::vector<FakeTrainerStub::TimePoint> deadlines = f.stub->Deadlines();
  ASSERT_EQ(deadlines.size(), 4u);
  const auto slack = std::chrono::milliseconds(1);
  for (const auto& deadline : deadlines) {
    EXPECT_NE(deadline, FakeTrainerStub::TimePoint::max());
    EXPECT_GE(deadline, before + std::chrono::seconds(3) - slack);
    EXPECT_LE(deadline, after + std::chrono::seconds(3) + slack);
  }
}

TEST(TrainerClient, WatchHasNoDeadlineUnlessWatchTimeoutIsSet) {
  Fixture unbounded;
  ASSERT_TRUE(unbounded.client.WatchParameters("", [](Parameters) { return true; }).ok());
  ASSERT_EQ(unbounded.stub->Deadlines().size(), 1u);
  EXPECT_EQ(unbounded.stub->Deadlines()[0], FakeTrainerStub::TimePoint::max());

  ClientOptions options;
  options.watch_timeout = absl::Minutes(5);
  Fixture bounded(options);
  ASSERT_TRUE(bounded.client.WatchParameters("", [](Parameters) { return true; }).ok());
  ASSERT_EQ(bounded.stub->Deadlines().size(), 1u);
  EXPECT_LT(bounded.stub->Deadlines()[0], FakeTrainerStub::TimePoint::max());
}

class StatusMapping : public ::testing::TestWithParam<grpc::StatusCode> {};

TEST_P(StatusMapping, EveryCallKeepsTheServerCodeAndMessage) {
  Fixture f;
  f.stub->status = grpc::Status(GetParam(), "model \"x\" not found; expected one of: policy");
  const auto expected_code = static_cast<absl::StatusCode>(GetParam());
  DeltaSubmission submission;

  const std::vector<absl::Status> statuses = {
      f.client.GetModelInfo("x").status(),
      f.client.Forward(model::Matrix::Ones(1, 1), "x").status(),
      f.client.SubmitDelta(submission, "x").status(),
      f.client.GetParameters("x").status(),
  };
  for (const absl::Status& status : statuses) {
    EXPECT_EQ(status.code(), expected_code) << status;
    EXPECT_EQ(status.message(), "model \"x\" not found; expected one of: policy");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Codes, StatusMapping,
    ::testing::Values(grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::NOT_FOUND,
                      grpc::StatusCode::ABORTED, grpc::StatusCode::RESOURCE_EXHAUSTED,
                      grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::DEADLINE_EXCEEDED,
                      grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::PERMISSION_DENIED));

TEST(FromGrpcStatus, MapsEveryCanonicalCodeToTheSameAbslCode) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  const std::vector<std::pair<grpc::StatusCode, absl::StatusCode>> pairs = {
      {grpc::StatusCode::CANCELLED, absl::StatusCode::kCancelled},
      {grpc::StatusCode::UNKNOWN, absl::StatusCode::kUnknown},
      {grpc::StatusCode::INVALID_ARGUMENT, absl::StatusCode::kInvalidArgument},
      {grpc::StatusCode::DEADLINE_EXCEEDED, absl::StatusCode::kDeadlineExceeded},
      {grpc::StatusCode::NOT_FOUND, absl::StatusCode::kNotFound},
      {grpc::StatusCode::ALREADY_EXISTS, absl::StatusCode::kAlreadyExists},
      {grpc::StatusCode::PERMISSION_DENIED, absl::StatusCode::kPermissionDenied},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, absl::StatusCode::kResourceExhausted},
      {grpc::StatusCode::FAILED_PRECONDITION, absl::StatusCode::kFailedPrecondition},
      {grpc::StatusCode::ABORTED, absl::StatusCode::kAborted},
      {grpc::StatusCode::OUT_OF_RANGE, absl::StatusCode::kOutOfRange},
      {grpc::StatusCode::UNIMPLEMENTED, absl::StatusCode::kUnimplemented},
      {grpc::StatusCode::INTERNAL, absl::StatusCode::kInternal},
      {grpc::StatusCode::UNAVAILABLE, absl::StatusCode::kUnavailable},
      {grpc::StatusCode::DATA_LOSS, absl::StatusCode::kDataLoss},
      {grpc::StatusCode::UNAUTHENTICATED, absl::StatusCode::kUnauthenticated},
  };
  for (const auto& [grpc_code, absl_code] : pairs) {
    const absl::Status status = FromGrpcStatus(grpc::Status(grpc_code, "why"));
    EXPECT_EQ(status.code(), absl_code) << status;
    EXPECT_EQ(status.message(), "why");
  }
}

TEST(TrainerClient, WatchParametersDeliversUpdatesInOrderThenTheServerStatus) {
  Fixture f;
  f.stub->watch_updates = {Update(1, {1.0f}), Update(2, {2.0f}), Update(3, {3.0f})};
  f.stub->watch_status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down");
  std::vector<uint64_t> versions;
  std::vector<float> firsts;

  const absl::Status status = f.client.WatchParameters("policy", [&](Parameters p) {
    versions.push_back(p.version);
    firsts.push_back(p.parameters.at(0));
    return true;
  });

  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "server shutting down");
  EXPECT_EQ(f.stub->last_watch_request.model(), "policy");
  EXPECT_EQ(versions, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(firsts, (std::vector<float>{1.0f, 2.0f, 3.0f}));
}

TEST(TrainerClient, WatchParametersStopsWithOkWhenTheCallbackReturnsFalse) {
  Fixture f;
  f.stub->watch_updates = {Update(1, {1.0f}), Update(2, {2.0f}), Update(3, {3.0f})};
  f.stub->watch_status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  int calls = 0;

  const absl::Status status = f.client.WatchParameters("", [&](Parameters) {
    ++calls;
    return calls < 2;
  });

  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(calls, 2);
}

TEST(TrainerClient, WatchRunsTheCallbackOnItsOwnThreadAndReportsTheEnd) {
  Fixture f;
  f.stub->watch_updates = {Update(4, {1.0f}), Update(5, {2.0f})};
  f.stub->watch_status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no model \"nope\"");
  std::vector<uint64_t> versions;
  std::thread::id callback_thread;

  auto handle = f.client.Watch("nope", [&](Parameters p) {
    callback_thread = std::this_thread::get_id();
    versions.push_back(p.version);
  });
  ASSERT_TRUE(handle.ok()) << handle.status();
  const absl::Status status = (*handle)->Wait();

  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "no model \"nope\"");
  EXPECT_EQ(versions, (std::vector<uint64_t>{4, 5}));
  EXPECT_NE(callback_thread, std::this_thread::get_id());
  EXPECT_EQ(f.stub->last_watch_request.model(), "nope");
}

TEST(TrainerClient, ConnectRejectsBadTargetsAndOptions) {
  EXPECT_EQ(TrainerClient::Connect("").status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions zero_timeout;
  zero_timeout.timeout = absl::ZeroDuration();
  EXPECT_EQ(TrainerClient::Connect("127.0.0.1:1", zero_timeout).status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions infinite_timeout;
  infinite_timeout.timeout = absl::InfiniteDuration();
  EXPECT_EQ(TrainerClient::Connect("127.0.0.1:1", infinite_timeout).status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions no_bytes;
  no_bytes.max_message_bytes = 0;
  EXPECT_EQ(TrainerClient::Connect("127.0.0.1:1", no_bytes).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(TrainerClient::Connect("unix:/tmp/deltaserve-test.sock").ok());
}

TEST(TrainerClient, UnreachableServerIsUnavailableWithinTheDeadline) {
  ClientOptions options;
  options.timeout = absl::Seconds(5);
  // Nothing listens on a Unix socket in a directory that does not exist.
  auto client = TrainerClient::Connect("unix:/nonexistent-deltaserve-dir/s.sock", options);
  ASSERT_TRUE(client.ok());
  const absl::Status status = (*client)->GetModelInfo().status();
  EXPECT_TRUE(status.code() == absl::StatusCode::kUnavailable ||
              status.code() == absl::StatusCode::kDeadlineExceeded)
      << status;
}

}  // namespace
}  // namespace deltaserve::client
