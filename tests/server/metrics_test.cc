// ServerMetrics: what the trainer records is what a Prometheus scrape of the
// HTTP endpoint (loopback, OS-picked port) reads back.
#include "deltaserve/server/core/metrics.h"

#include <iterator>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using ::testing::HasSubstr;
using testing::HttpGet;
using testing::Sample;

std::string ScrapeOverHttp(const ServerMetrics& metrics) {
  auto response = HttpGet(metrics.port(), "/metrics");
  if (!response.has_value()) {
    ADD_FAILURE() << "GET /metrics on port " << metrics.port() << " failed";
    return "";
  }
  EXPECT_THAT(response->first, HasSubstr("200"));
  return response->second;
}

TEST(ServerMetrics, ServesOnAnOsPickedLoopbackPort) {
  auto metrics = ServerMetrics::Create({/*listen_address=*/"127.0.0.1:0"});
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_GT((*metrics)->port(), 0);
  (*metrics)->ForModel("cartpole");
  const std::string body = ScrapeOverHttp(**metrics);
  EXPECT_THAT(body, HasSubstr("# TYPE deltaserve_rpc_requests_total counter"));
  EXPECT_THAT(body, HasSubstr("# TYPE deltaserve_rpc_latency_seconds histogram"));
  EXPECT_EQ(Sample(body, "deltaserve_model_version", {{"model", "cartpole"}}), 0.0);
}

TEST(ServerMetrics, RecordedEventsMoveTheScrapedSeries) {
  auto created = ServerMetrics::Create({/*listen_address=*/"127.0.0.1:0"});
  ASSERT_TRUE(created.ok()) << created.status();
  ServerMetrics& metrics = **created;
  ModelMetrics* m = metrics.ForModel("cartpole");

  const std::string before = ScrapeOverHttp(metrics);
  const std::map<std::string, std::string> forward_ok = {
      {"model", "cartpole"}, {"rpc", "Forward"}, {"code", "OK"}};
  EXPECT_EQ(Sample(before, "deltaserve_rpc_requests_total", forward_ok), 0.0);

  m->RecordRpc(Rpc::kForward, /*code=*/0, /*seconds=*/0.002);
  m->RecordRpc(Rpc::kForward, /*code=*/0, /*seconds=*/0.004);
  m->RecordRpc(Rpc::kSubmitDelta, /*code=*/10 /*ABORTED*/, /*seconds=*/0.001);
  m->AddForwardRows(32);
  m->RecordSubmissionApplied(/*rows=*/8, /*staleness=*/1, /*surrogate_loss=*/0.5);
  m->RecordSubmissionApplied(/*rows=*/8, /*staleness=*/3, /*surrogate_loss=*/0.25);
  m->RecordSubmissionRejected(RejectReason::kStale);
  m->RecordOptimizerStep(/*version=*/7, /*gradient_norm=*/1.5);
  m->SetQueueDepth(4);
  m->AddWatchers(+1);
  m->AddWatchers(+1);
  m->AddWatchers(-1);

  const std::string after = ScrapeOverHttp(metrics);
  const std::map<std::string, std::string> model = {{"model", "cartpole"}};
  EXPECT_EQ(Sample(after, "deltaserve_rpc_requests_total", forward_ok), 2.0);
  EXPECT_EQ(Sample(after, "deltaserve_rpc_requests_total",
                   {{"model", "cartpole"}, {"rpc", "SubmitDelta"}, {"code", "ABORTED"}}),
            1.0);
  EXPECT_EQ(Sample(after, "deltaserve_rpc_latency_seconds_count",
                   {{"model", "cartpole"}, {"rpc", "Forward"}}),
            2.0);
  EXPECT_NEAR(*Sample(after, "deltaserve_rpc_latency_seconds_sum",
                      {{"model", "cartpole"}, {"rpc", "Forward"}}),
              0.006, 1e-9);
  // 0.002 and 0.004 both fall at or below the 5 ms bucket, neither below 1 ms.
  EXPECT_EQ(Sample(after, "deltaserve_rpc_latency_seconds_bucket",
                   {{"model", "cartpole"}, {"rpc", "Forward"}, {"le", "0.005"}}),
            2.0);
  EXPECT_EQ(Sample(after, "deltaserve_rpc_latency_seconds_bucket",
                   {{"model", "cartpole"}, {"rpc", "Forward"}, {"le", "0.001"}}),
            0.0);
  EXPECT_EQ(Sample(after, "deltaserve_forward_rows_total", model), 32.0);
  EXPECT_EQ(Sample(after, "deltaserve_submissions_applied_total", model), 2.0);
  EXPECT_EQ(Sample(after, "deltaserve_submitted_rows_total", model), 16.0);
  EXPECT_EQ(Sample(after, "deltaserve_submissions_rejected_total",
                   {{"model", "cartpole"}, {"reason", "stale"}}),
            1.0);
  EXPECT_EQ(Sample(after, "deltaserve_submissions_rejected_total",
                   {{"model", "cartpole"}, {"reason", "queue_full"}}),
            0.0);
  EXPECT_EQ(Sample(after, "deltaserve_optimizer_steps_total", model), 1.0);
  EXPECT_EQ(Sample(after, "deltaserve_model_version", model), 7.0);
  EXPECT_EQ(Sample(after, "deltaserve_gradient_norm", model), 1.5);
  EXPECT_EQ(Sample(after, "deltaserve_queue_depth", model), 4.0);
  EXPECT_EQ(Sample(after, "deltaserve_watchers", model), 1.0);
  EXPECT_EQ(Sample(after, "deltaserve_submission_staleness_count", model), 2.0);
  EXPECT_EQ(Sample(after, "deltaserve_submission_staleness_sum", model), 4.0);
  EXPECT_EQ(
      Sample(after, "deltaserve_submission_staleness_bucket", {{"model", "cartpole"}, {"le", "2"}}),
      1.0);
  EXPECT_EQ(Sample(after, "deltaserve_surrogate_loss_count", model), 2.0);
  EXPECT_EQ(Sample(after, "deltaserve_surrogate_loss_sum", model), 0.75);
}

TEST(ServerMetrics, ModelsAreSeparateSeriesAndResolvedOnce) {
  auto created = ServerMetrics::Create({/*listen_address=*/""});
  ASSERT_TRUE(created.ok()) << created.status();
  ServerMetrics& metrics = **created;
  EXPECT_EQ(metrics.port(), 0);
  ModelMetrics* a = metrics.ForModel("a");
  ModelMetrics* b = metrics.ForModel("b");
  EXPECT_EQ(metrics.ForModel("a"), a);
  EXPECT_NE(a, b);
  a->RecordOptimizerStep(/*version=*/3, /*gradient_norm=*/0.1);
  metrics.UnknownModel()->RecordRpc(Rpc::kGetModelInfo, /*code=*/5 /*NOT_FOUND*/, 0.0001);

  const std::string text = metrics.Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_model_version", {{"model", "a"}}), 3.0);
  EXPECT_EQ(Sample(text, "deltaserve_model_version", {{"model", "b"}}), 0.0);
  EXPECT_EQ(Sample(text, "deltaserve_rpc_requests_total",
                   {{"model", ""}, {"rpc", "GetModelInfo"}, {"code", "NOT_FOUND"}}),
            1.0);
}

TEST(ServerMetrics, OutOfRangeStatusCodeCountsAsUnknown) {
  auto created = ServerMetrics::Create({/*listen_address=*/""});
  ASSERT_TRUE(created.ok()) << created.status();
  (*created)->ForModel("m")->RecordRpc(Rpc::kForward, /*code=*/99, 0.001);
  EXPECT_EQ(Sample((*created)->Scrape(), "deltaserve_rpc_requests_total",
                   {{"model", "m"}, {"rpc", "Forward"}, {"code", "UNKNOWN"}}),
            1.0);
}

// The code label values dashboards and alerts query: StatusCodeName
// (absl::StatusCodeToString) must keep producing exactly these.
TEST(ServerMetrics, StatusCodeLabelsAreTheCanonicalNames) {
  const char* const labels[] = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  ASSERT_EQ(std::size(labels), static_cast<size_t>(kNumStatusCodes));
  for (int code = 0; code < kNumStatusCodes; ++code) {
    EXPECT_EQ(StatusCodeName(code), labels[code]) << code;
  }
  EXPECT_EQ(StatusCodeName(kNumStatusCodes), "UNKNOWN");
}

TEST(ServerMetrics, MalformedAddressIsInvalidArgument) {
  for (const char* address : {"9464", "localhost:http", ":9464", "127.0.0.1:70000"}) {
    auto metrics = ServerMetrics::Create({address});
    EXPECT_EQ(metrics.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(std::string(metrics.status().message()), HasSubstr("host:port")) << address;
  }
}

TEST(ServerMetrics, PortInUseIsUnavailable) {
  auto first = ServerMetrics::Create({/*listen_address=*/"127.0.0.1:0"});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = ServerMetrics::Create({taken});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(taken));
}

TEST(ServerMetrics, RejectReasonsFollowTheDesignsStatusCodes) {
  EXPECT_EQ(RejectReasonFromStatus(absl::StatusCode::kInvalidArgument), RejectReason::kInvalid);
  EXPECT_EQ(RejectReasonFromStatus(absl::StatusCode::kAborted), RejectReason::kStale);
  EXPECT_EQ(RejectReasonFromStatus(absl::StatusCode::kResourceExhausted), RejectReason::kQueueFull);
  EXPECT_EQ(RejectReasonFromStatus(absl::StatusCode::kUnavailable), RejectReason::kShuttingDown);
  EXPECT_EQ(RejectReasonFromStatus(absl::StatusCode::kInternal), RejectReason::kOther);
  EXPECT_EQ(RejectReasonName(RejectReason::kQueueFull), "queue_full");
  EXPECT_EQ(RpcName(Rpc::kWatchParameters), "WatchParameters");
  EXPECT_EQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(-1), "UNKNOWN");
}

}  // namespace
}  // namespace deltaserve::server
