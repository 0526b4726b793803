// The trainer's Prometheus metrics, end to end: a real DeltaServer on
// loopback with its metrics endpoint on an OS-picked port, driven over gRPC;
// every scrape is an HTTP GET of /metrics, and the counters must move exactly
// with the traffic the test sent.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using ::testing::HasSubstr;
using testing::HttpGet;
using ::testing::MatchesRegex;
using testing::ParseText;
using testing::Sample;
using testing::WireMatrix;
using Labels = std::map<std::string, std::string>;

using testing::kWait;
using testing::PendingSubmit;

// input 4 → 8 tanh → 2 identity; one row per step; a submission computed
// more than one version ago is stale; one submission may wait in the queue.
const std::string kModel = testing::SmallModelConfig("max_staleness: 1 queue_capacity: 1");

class MetricsScrapeTest : public testing::LoopbackServerTest {
 protected:
  void SetUp() override { Start(); }

  void Start() {
    ServerOptions options;
    options.metrics_listen_address = "127.0.0.1:0";
    StartServer(kModel, options);
    ASSERT_THAT(server_->metrics_address(), MatchesRegex("127\\.0\\.0\\.1:[0-9]+"));
    const std::vector<std::string> parts = absl::StrSplit(server_->metrics_address(), ':');
    ASSERT_TRUE(absl::SimpleAtoi(parts.back(), &metrics_port_));
  }

  // GET /metrics; fails the test (and returns "") unless it answers 200.
  std::string Scrape() const {
    auto response = HttpGet(metrics_port_, "/metrics");
    if (!response.has_value()) {
      ADD_FAILURE() << "GET /metrics on port " << metrics_port_ << " failed";
      return "";
    }
    EXPECT_THAT(response->first, HasSubstr("200"));
    return response->second;
  }

  // Scrapes until `name{labels}` equals `want` or kWait passes; the last
  // value seen. For effects recorded after the client already has its answer
  // (a stream's end is recorded in the server's OnDone).
  std::optional<double> ScrapeUntil(const std::string& name, const Labels& labels, double want) {
    const absl::Time deadline = absl::Now() + kWait;
    std::optional<double> value = Sample(Scrape(), name, labels);
    while (value != want && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
      value = Sample(Scrape(), name, labels);
    }
    return value;
  }

  grpc::Status Forward(const std::string& model, uint32_t rows, uint32_t cols) {
    v1::ForwardRequest request;
    request.set_model(model);
    *request.mutable_inputs() = WireMatrix(rows, cols, std::vector<float>(rows * cols, 0.25f));
    v1::ForwardResponse response;
    return stub_->Forward(Context().get(), request, &response);
  }

  // δ = 1 on `rows` rows of model "m", claimed to come from `version`.
  static v1::SubmitDeltaRequest Submission(uint32_t rows, uint64_t version) {
    v1::SubmitDeltaRequest request;
    request.set_model("m");
    *request.mutable_inputs() = WireMatrix(rows, 4, std::vector<float>(rows * 4, 0.5f));
    *request.mutable_deltas() = WireMatrix(rows, 2, std::vector<float>(rows * 2, 1.0f));
    request.set_version(version);
    return request;
  }

  int metrics_port_ = 0;
};

const Labels kModelM = {{"model", "m"}};

Labels RpcLabels(const std::string& model, const std::string& rpc, const std::string& code) {
  return {{"model", model}, {"rpc", rpc}, {"code", code}};
}

Labels Reason(const std::string& reason) { return {{"model", "m"}, {"reason", reason}}; }

TEST_F(MetricsScrapeTest, EveryModelSeriesExistsAtZeroOnceServing) {
  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "Forward", "OK")), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_forward_rows_total", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_model_version", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_optimizer_steps_total", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_queue_depth", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_watchers", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_rejected_total", Reason("stale")), 0.0);
  // The HTTP endpoint serves what the in-process registry holds.
  EXPECT_EQ(Sample(server_->metrics()->Scrape(), "deltaserve_model_version", kModelM), 0.0);
}

TEST_F(MetricsScrapeTest, ForwardCountsCallsByCodeAndRows) {
  const std::vector<uint32_t> batches = {1, 3, 5};
  uint32_t rows = 0;
  for (uint32_t n : batches) {
    grpc::Status status = Forward("m", n, 4);
    ASSERT_TRUE(status.ok()) << status.error_message();
    rows += n;
  }
  EXPECT_EQ(Forward("m", 2, 3).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Forward("nope", 1, 4).error_code(), grpc::StatusCode::NOT_FOUND);

  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "Forward", "OK")),
            static_cast<double>(batches.size()));
  EXPECT_EQ(
      Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "Forward", "INVALID_ARGUMENT")),
      1.0);
  // A model the server does not serve is counted under model="".
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("", "Forward", "NOT_FOUND")),
            1.0);
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "Forward", "NOT_FOUND")),
            0.0);
  // Only evaluated rows count; the refused call's rows do not.
  EXPECT_EQ(Sample(text, "deltaserve_forward_rows_total", kModelM), static_cast<double>(rows));
  EXPECT_EQ(
      Sample(text, "deltaserve_rpc_latency_seconds_count", {{"model", "m"}, {"rpc", "Forward"}}),
      static_cast<double>(batches.size() + 1));
}

TEST_F(MetricsScrapeTest, SubmissionsCountStepsVersionAndRejectionsByReason) {
  constexpr int kSteps = 4;
  constexpr uint32_t kRows = 2;
  uint64_t version = 0;
  for (int i = 0; i < kSteps; ++i) {
    v1::SubmitDeltaResponse response;
    grpc::Status status = Submit(Submission(kRows, version), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_TRUE(response.stepped());
    version = response.version();
  }
  ASSERT_EQ(version, static_cast<uint64_t>(kSteps));

  // Computed at version 0, now kSteps (> 1) behind with max_staleness 1.
  EXPECT_EQ(Submit(Submission(1, 0)).error_code(), grpc::StatusCode::ABORTED);
  // δ with the wrong width.
  v1::SubmitDeltaRequest bad = Submission(1, version);
  *bad.mutable_deltas() = WireMatrix(1, 3, {1, 1, 1});
  EXPECT_EQ(Submit(bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A version the model has not reached.
  EXPECT_EQ(Submit(Submission(1, version + 5)).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // An unknown model.
  v1::SubmitDeltaRequest unknown = Submission(1, version);
  unknown.set_model("nope");
  EXPECT_EQ(Submit(unknown).error_code(), grpc::StatusCode::NOT_FOUND);

  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "SubmitDelta", "OK")),
            kSteps);
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "SubmitDelta", "ABORTED")),
            1.0);
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total",
                   RpcLabels("m", "SubmitDelta", "INVALID_ARGUMENT")),
            2.0);
  EXPECT_EQ(Sample(text, "deltaserve_rpc_latency_seconds_count",
                   {{"model", "m"}, {"rpc", "SubmitDelta"}}),
            kSteps + 3);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_applied_total", kModelM), kSteps);
  EXPECT_EQ(Sample(text, "deltaserve_submitted_rows_total", kModelM), kSteps * kRows);
  EXPECT_EQ(Sample(text, "deltaserve_optimizer_steps_total", kModelM), kSteps);
  EXPECT_EQ(Sample(text, "deltaserve_model_version", kModelM), static_cast<double>(version));
  EXPECT_EQ(Sample(text, "deltaserve_submissions_rejected_total", Reason("stale")), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_rejected_total", Reason("invalid")), 2.0);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_rejected_total", Reason("queue_full")), 0.0);
  EXPECT_EQ(
      Sample(text, "deltaserve_submissions_rejected_total", {{"model", ""}, {"reason", "other"}}),
      1.0);
  // Every applied submission was at the current version.
  EXPECT_EQ(Sample(text, "deltaserve_submission_staleness_count", kModelM), kSteps);
  EXPECT_EQ(Sample(text, "deltaserve_submission_staleness_sum", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_surrogate_loss_count", kModelM), kSteps);
  // δ = 1 everywhere: l_s = ½‖ε·δ‖² > 0 and the gradient is not zero.
  EXPECT_GT(Sample(text, "deltaserve_surrogate_loss_sum", kModelM).value_or(0), 0.0);
  EXPECT_GT(Sample(text, "deltaserve_gradient_norm", kModelM).value_or(0), 0.0);
}

TEST_F(MetricsScrapeTest, QueueDepthAndFullQueueRejections) {
  // A server whose learner is held from the start (SetUp's is not).
  server_.reset();
  gate_ = std::make_shared<testing::HeldGate>();  // The old server abandoned its gate.
  gate_->Close();
  Start();
  Trainer* trainer = server_->trainer("m");
  ASSERT_NE(trainer, nullptr);

  const v1::SubmitDeltaRequest request = Submission(1, 0);
  std::unique_ptr<PendingSubmit> queued = SubmitAsync(request);
  ASSERT_TRUE(trainer->AwaitQueued(1, kWait));
  ASSERT_EQ(trainer->queued(), 1u);
  EXPECT_EQ(Submit(request).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  std::string text = Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_queue_depth", kModelM), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_rejected_total", Reason("queue_full")), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total",
                   RpcLabels("m", "SubmitDelta", "RESOURCE_EXHAUSTED")),
            1.0);

  gate_->Open();
  ASSERT_TRUE(queued->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(queued->status.ok()) << queued->status.error_message();
  text = Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_queue_depth", kModelM), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_submissions_applied_total", kModelM), 1.0);
}

TEST_F(MetricsScrapeTest, WatchersGaugeFollowsOpenStreams) {
  auto context = Context();
  v1::WatchParametersRequest request;
  request.set_model("m");
  auto reader = stub_->WatchParameters(context.get(), request);
  v1::ParameterUpdate update;
  ASSERT_TRUE(reader->Read(&update));  // The server has counted the stream by now.
  EXPECT_EQ(Sample(Scrape(), "deltaserve_watchers", kModelM), 1.0);

  context->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server records a stream's end once it is done with it, after the
  // client has seen the status: poll.
  EXPECT_EQ(ScrapeUntil("deltaserve_watchers", kModelM, 0.0), 0.0);
  EXPECT_EQ(ScrapeUntil("deltaserve_rpc_requests_total",
                        RpcLabels("m", "WatchParameters", "CANCELLED"), 1.0),
            1.0);
}

TEST_F(MetricsScrapeTest, GetModelInfoAndGetParametersAreCounted) {
  v1::GetModelInfoRequest info_request;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(Context().get(), info_request, &info).ok());
  v1::GetParametersRequest parameters_request;
  parameters_request.set_model("nope");
  v1::ParameterUpdate parameters;
  EXPECT_EQ(stub_->GetParameters(Context().get(), parameters_request, &parameters).error_code(),
            grpc::StatusCode::NOT_FOUND);

  const std::string text = Scrape();
  // "" names the default model, which is "m".
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total", RpcLabels("m", "GetModelInfo", "OK")),
            1.0);
  EXPECT_EQ(
      Sample(text, "deltaserve_rpc_requests_total", RpcLabels("", "GetParameters", "NOT_FOUND")),
      1.0);
}

}  // namespace
}  // namespace deltaserve::server
