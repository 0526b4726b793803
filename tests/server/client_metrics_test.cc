// Metrics that simulators report (SubmitDeltaRequest.metrics): kept for
// applied submissions only, the gauge deltaserve_client_metric{model,name}
// is the mean of a name's last 100 reports, and a metric that breaks a rule
// is dropped and counted by reason without failing its submission or
// leaving any other trace. The ModelMetrics unit tests drive the recorder
// directly; the rest drive a real DeltaServer on loopback over gRPC and read
// its /metrics over HTTP.
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "deltaserve/proto/client_metrics.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using ::testing::HasSubstr;
using testing::HttpGet;
using ::testing::MatchesRegex;
using testing::Sample;
using testing::WireMatrix;
using Labels = std::map<std::string, std::string>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Labels Metric(const std::string& name) { return {{"model", "m"}, {"name", name}}; }
Labels Dropped(const std::string& reason) { return {{"model", "m"}, {"reason", reason}}; }

// The mean of a, a+1, ..., b.
double MeanOfRange(int a, int b) { return (a + b) / 2.0; }

// Lines of the exposition that are samples of `family` (any labels).
int SeriesOf(const std::string& text, absl::string_view family) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, absl::StrCat(family, "{"))) ++n;
  }
  return n;
}

// Lines of the exposition that contain `text`.
int LinesWith(const std::string& page, absl::string_view text) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StrContains(line, text)) ++n;
  }
  return n;
}

// ---- ModelMetrics, without a server ----

std::vector<ClientMetric> One(const std::string& name, double value) { return {{name, value}}; }

TEST(ClientMetricsRecorder, GaugeIsTheMeanOfTheLast100Reports) {
  auto created = ServerMetrics::Create({});
  ASSERT_TRUE(created.ok()) << created.status();
  ModelMetrics* m = (*created)->ForModel("m");
  for (int i = 1; i <= 250; ++i) m->RecordClientMetrics(One("episode_return", i));

  EXPECT_DOUBLE_EQ(
      *Sample((*created)->Scrape(), "deltaserve_client_metric", Metric("episode_return")),
      MeanOfRange(151, 250));
  const std::vector<ClientMetricSummary> summary = m->ClientMetrics();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].name, "episode_return");
  EXPECT_DOUBLE_EQ(summary[0].mean, MeanOfRange(151, 250));
  EXPECT_EQ(summary[0].count, wire::kMetricWindow);
  EXPECT_EQ(summary[0].total, 250u);
}

TEST(ClientMetricsRecorder, FewerThan100ReportsAreAveragedAsTheyAre) {
  auto created = ServerMetrics::Create({});
  ASSERT_TRUE(created.ok()) << created.status();
  ModelMetrics* m = (*created)->ForModel("m");
  m->RecordClientMetrics({{"a", 1.0}, {"b", -4.0}});
  m->RecordClientMetrics({{"a", 2.0}});
  const std::vector<ClientMetricSummary> summary = m->ClientMetrics();
  ASSERT_EQ(summary.size(), 2u);  // Sorted by name.
  EXPECT_EQ(summary[0].name, "a");
  EXPECT_DOUBLE_EQ(summary[0].mean, 1.5);
  EXPECT_EQ(summary[0].count, 2u);
  EXPECT_EQ(summary[1].name, "b");
  EXPECT_DOUBLE_EQ(summary[1].mean, -4.0);
  EXPECT_EQ(summary[1].count, 1u);
}

TEST(ClientMetricsRecorder, EveryRuleHasItsOwnDropReason) {
  auto created = ServerMetrics::Create({});
  ASSERT_TRUE(created.ok()) << created.status();
  ModelMetrics* m = (*created)->ForModel("m");
  const std::string longest(wire::kMaxMetricNameBytes, 'x');
  m->RecordClientMetrics({{"", 1.0},
                          {"9lives", 1.0},
                          {"has space", 1.0},
                          {"dash-ed", 1.0},
                          {"caf\xc3\xa9", 1.0},
                          {std::string("nul\0l", 5), 1.0},
                          {longest + "x", 1.0},
                          {"nan", kNaN},
                          {"inf", kInf},
                          {"minus_inf", -kInf},
                          {longest, 7.0},
                          {"_ok9", 3.0}});
  const std::string text = (*created)->Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_client_metrics_dropped_total", Dropped("invalid_name")), 7.0);
  EXPECT_EQ(Sample(text, "deltaserve_client_metrics_dropped_total", Dropped("not_finite")), 3.0);
  EXPECT_EQ(Sample(text, "deltaserve_client_metrics_dropped_total", Dropped("too_many_names")),
            0.0);
  EXPECT_EQ(Sample(text, "deltaserve_client_metric", Metric(longest)), 7.0);
  EXPECT_EQ(Sample(text, "deltaserve_client_metric", Metric("_ok9")), 3.0);
  EXPECT_EQ(SeriesOf(text, "deltaserve_client_metric"), 2);
}

TEST(ClientMetricsRecorder, A65thNameIsDroppedAndTheFirst64KeepReporting) {
  auto created = ServerMetrics::Create({});
  ASSERT_TRUE(created.ok()) << created.status();
  ModelMetrics* m = (*created)->ForModel("m");
  std::vector<ClientMetric> first64;
  for (size_t i = 0; i < wire::kMaxMetricNames; ++i) {
    first64.push_back({absl::StrCat("name_", i), 1.0});
  }
  m->RecordClientMetrics(first64);
  m->RecordClientMetrics({{"one_too_many", 5.0}, {"name_0", 3.0}});
  const std::string text = (*created)->Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_client_metrics_dropped_total", Dropped("too_many_names")),
            1.0);
  EXPECT_EQ(Sample(text, "deltaserve_client_metric", Metric("one_too_many")), std::nullopt);
  EXPECT_EQ(Sample(text, "deltaserve_client_metric", Metric("name_0")), 2.0);
  EXPECT_EQ(m->ClientMetrics().size(), wire::kMaxMetricNames);
}

TEST(ClientMetricsRecorder, ModelsKeepSeparateNamesAndLimits) {
  auto created = ServerMetrics::Create({});
  ASSERT_TRUE(created.ok()) << created.status();
  (*created)->ForModel("a")->RecordClientMetrics(One("r", 1.0));
  (*created)->ForModel("b")->RecordClientMetrics(One("r", 9.0));
  const std::string text = (*created)->Scrape();
  EXPECT_EQ(Sample(text, "deltaserve_client_metric", {{"model", "a"}, {"name", "r"}}), 1.0);
  EXPECT_EQ(Sample(text, "deltaserve_client_metric", {{"model", "b"}, {"name", "r"}}), 9.0);
}

// ---- A real server ----

// input 4 → 8 tanh → 2 identity, one row per step (every submission steps);
// a submission more than one version behind is stale.
const std::string kModel = testing::SmallModelConfig("max_staleness: 1");

class ClientMetricsTest : public testing::LoopbackServerTest {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.metrics_listen_address = "127.0.0.1:0";
    StartServer(kModel, options);
    ASSERT_THAT(server_->metrics_address(), MatchesRegex("127\\.0\\.0\\.1:[0-9]+"));
    const std::vector<std::string> parts = absl::StrSplit(server_->metrics_address(), ':');
    ASSERT_TRUE(absl::SimpleAtoi(parts.back(), &metrics_port_));
  }

  std::string Scrape() const {
    auto response = HttpGet(metrics_port_, "/metrics");
    if (!response.has_value()) {
      ADD_FAILURE() << "GET /metrics on port " << metrics_port_ << " failed";
      return "";
    }
    EXPECT_THAT(response->first, HasSubstr("200"));
    return response->second;
  }

  // One row of δ = 1 for model "m" at the model's current version, with
  // `metrics`.
  v1::SubmitDeltaRequest Request(const std::map<std::string, double>& metrics) const {
    v1::SubmitDeltaRequest request;
    request.set_model("m");
    *request.mutable_inputs() = WireMatrix(1, 4, {0.5f, -0.5f, 0.25f, 1.0f});
    *request.mutable_deltas() = WireMatrix(1, 2, {1.0f, -1.0f});
    request.set_version(version_);
    request.mutable_metrics()->insert(metrics.begin(), metrics.end());
    return request;
  }

  // Sends `request`; expects it applied (or answered as a duplicate) and
  // follows the model's version.
  v1::SubmitDeltaResponse Applied(const v1::SubmitDeltaRequest& request) {
    v1::SubmitDeltaResponse response;
    const grpc::Status status = Submit(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    version_ = response.version();
    return response;
  }

  std::optional<double> Gauge(const std::string& text, const std::string& name) const {
    return Sample(text, "deltaserve_client_metric", Metric(name));
  }
  std::optional<double> DroppedCount(const std::string& text, const std::string& reason) const {
    return Sample(text, "deltaserve_client_metrics_dropped_total", Dropped(reason));
  }

  int metrics_port_ = 0;
  uint64_t version_ = 0;
};

TEST_F(ClientMetricsTest, DropCountersExistAtZeroAndNoMetricSeriesBeforeAnyReport) {
  const std::string text = Scrape();
  // An empty family is not exposed at all (prometheus-cpp writes no # TYPE).
  EXPECT_FALSE(absl::StrContains(text, "deltaserve_client_metric "));
  EXPECT_TRUE(absl::StrContains(text, "# TYPE deltaserve_client_metrics_dropped_total counter"));
  for (const char* reason : {"invalid_name", "not_finite", "too_many_names"}) {
    EXPECT_EQ(DroppedCount(text, reason), 0.0) << reason;
  }
  EXPECT_EQ(SeriesOf(text, "deltaserve_client_metric"), 0);
}

TEST_F(ClientMetricsTest, GaugeIsTheMeanOfTheLast100AppliedReports) {
  for (int i = 1; i <= 130; ++i) {
    Applied(Request({{"episode_return", i}, {"episode_length", 2.0 * i}}));
  }
  const std::string text = Scrape();
  EXPECT_DOUBLE_EQ(Gauge(text, "episode_return").value_or(kNaN), MeanOfRange(31, 130));
  EXPECT_DOUBLE_EQ(Gauge(text, "episode_length").value_or(kNaN), 2.0 * MeanOfRange(31, 130));
  EXPECT_EQ(Sample(text, "deltaserve_submissions_applied_total", {{"model", "m"}}), 130.0);

  const std::vector<ClientMetricSummary> summary =
      server_->metrics()->ForModel("m")->ClientMetrics();
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(summary[1].name, "episode_return");
  EXPECT_DOUBLE_EQ(summary[1].mean, MeanOfRange(31, 130));
  EXPECT_EQ(summary[1].count, 100u);
  EXPECT_EQ(summary[1].total, 130u);
}

TEST_F(ClientMetricsTest, BrokenRulesAreDroppedByReasonAndTheSubmissionStillApplies) {
  const v1::SubmitDeltaResponse response = Applied(
      Request({{"bad-name", 1.0}, {"nan_value", kNaN}, {"inf_value", -kInf}, {"kept", 2.0}}));
  EXPECT_EQ(response.version(), 1u);  // Applied, and stepped.
  EXPECT_TRUE(response.stepped());

  std::string text = Scrape();
  EXPECT_TRUE(absl::StrContains(text, "# TYPE deltaserve_client_metric gauge"));
  EXPECT_EQ(DroppedCount(text, "invalid_name"), 1.0);
  EXPECT_EQ(DroppedCount(text, "not_finite"), 2.0);
  EXPECT_EQ(Gauge(text, "kept"), 2.0);
  EXPECT_EQ(Gauge(text, "bad-name"), std::nullopt);
  EXPECT_EQ(Gauge(text, "nan_value"), std::nullopt);
  EXPECT_EQ(Sample(text, "deltaserve_model_version", {{"model", "m"}}), 1.0);

  // 63 more names fill the model's 64; the 65th is dropped, the others go on.
  std::map<std::string, double> more;
  for (int i = 1; i < static_cast<int>(wire::kMaxMetricNames); ++i) {
    more[absl::StrCat("name_", i)] = i;
  }
  Applied(Request(more));
  const v1::SubmitDeltaResponse last = Applied(Request({{"name_65", 1.0}, {"kept", 4.0}}));
  EXPECT_EQ(last.version(), 3u);
  text = Scrape();
  EXPECT_EQ(DroppedCount(text, "too_many_names"), 1.0);
  EXPECT_EQ(Gauge(text, "name_65"), std::nullopt);
  EXPECT_EQ(Gauge(text, "kept"), 3.0);
  EXPECT_EQ(SeriesOf(text, "deltaserve_client_metric"), static_cast<int>(wire::kMaxMetricNames));
}

TEST_F(ClientMetricsTest, AStaleSubmissionsMetricsAreNotKept) {
  Applied(Request({}));
  Applied(Request({}));
  ASSERT_EQ(version_, 2u);
  v1::SubmitDeltaRequest stale = Request({{"from_stale", 1.0}, {"bad name", 1.0}});
  stale.set_version(0);  // Two versions behind; max_staleness is 1.
  const grpc::Status status = Submit(stale);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED) << status.error_message();

  const std::string text = Scrape();
  EXPECT_EQ(Gauge(text, "from_stale"), std::nullopt);
  EXPECT_EQ(DroppedCount(text, "invalid_name"), 0.0);  // Neither kept nor counted.
  EXPECT_EQ(SeriesOf(text, "deltaserve_client_metric"), 0);
  EXPECT_TRUE(server_->metrics()->ForModel("m")->ClientMetrics().empty());
}

TEST_F(ClientMetricsTest, AnInvalidSubmissionsMetricsAreNotKept) {
  v1::SubmitDeltaRequest bad = Request({{"from_invalid", 1.0}});
  *bad.mutable_deltas() = WireMatrix(1, 3, {1.0f, 1.0f, 1.0f});  // The model has 2 outputs.
  EXPECT_EQ(Submit(bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Gauge(Scrape(), "from_invalid"), std::nullopt);
}

TEST_F(ClientMetricsTest, ADuplicateIsNotCountedTwice) {
  v1::SubmitDeltaRequest first = Request({{"score", 10.0}});
  first.set_request_id("once");
  Applied(first);
  // The retry of the same submission (same id, whatever it carries now).
  v1::SubmitDeltaRequest again = first;
  (*again.mutable_metrics())["score"] = 1000.0;
  EXPECT_TRUE(Applied(again).duplicate());
  EXPECT_TRUE(Applied(first).duplicate());
  Applied(Request({{"score", 20.0}}));

  EXPECT_EQ(Gauge(Scrape(), "score"), 15.0);  // (10 + 20) / 2: each applied one once.
  const std::vector<ClientMetricSummary> summary =
      server_->metrics()->ForModel("m")->ClientMetrics();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].total, 2u);
}

TEST_F(ClientMetricsTest, AFloodOfDistinctNamesLeavesThePageAndTheSeriesBounded) {
  Applied(Request({{"episode_return", 1.0}}));
  const int lines_before = LinesWith(Scrape(), "client_metric");

  // 10,000 distinct bad names and 10,000 distinct good ones beyond the 64th,
  // 1,000 per submission; the model's 64 names fill up on the way.
  constexpr int kPerSubmission = 1000;
  for (int batch = 0; batch < 10; ++batch) {
    std::map<std::string, double> bad, good;
    for (int i = 0; i < kPerSubmission; ++i) {
      const int n = batch * kPerSubmission + i;
      bad[absl::StrCat("bad-", n)] = 1.0;
      good[absl::StrCat("good_", n)] = 1.0;
    }
    Applied(Request(bad));
    Applied(Request(good));
  }

  const std::string after = Scrape();
  EXPECT_EQ(DroppedCount(after, "invalid_name"), 10000.0);
  EXPECT_EQ(DroppedCount(after, "too_many_names"), 10000.0 - (wire::kMaxMetricNames - 1));
  EXPECT_EQ(SeriesOf(after, "deltaserve_client_metric"), static_cast<int>(wire::kMaxMetricNames));
  EXPECT_FALSE(absl::StrContains(after, "bad-"));
  EXPECT_EQ(LinesWith(after, "good_"), static_cast<int>(wire::kMaxMetricNames) - 1);
  // The two families grew by the 63 names kept, nothing else.
  EXPECT_EQ(LinesWith(after, "client_metric"),
            lines_before + static_cast<int>(wire::kMaxMetricNames) - 1);
  EXPECT_EQ(server_->metrics()->ForModel("m")->ClientMetrics().size(), wire::kMaxMetricNames);
  EXPECT_EQ(Gauge(after, "episode_return"), 1.0);
}

}  // namespace
}  // namespace deltaserve::server
