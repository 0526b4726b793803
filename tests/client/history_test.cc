// The metrics history over gRPC (GetMetricsHistory) against a real server:
// the learner's per-step series, the sampled ones, and persistence in
// --state_dir across a restart (docs/operations.md, "Metrics history").
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/client/test_server.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using testing::kInputDim;
using testing::kModelName;
using testing::kOutputDim;

DeltaSubmission Submission(double report) {
  DeltaSubmission s;
  s.inputs = model::Matrix::Constant(1, kInputDim, 0.5f);
  s.deltas = model::Matrix::Ones(1, kOutputDim);
  s.metrics = {{"episode_return", report}};
  return s;
}

std::map<std::string, deltaserve::v1::MetricSeries> ByName(
    const deltaserve::v1::GetMetricsHistoryResponse& response) {
  std::map<std::string, deltaserve::v1::MetricSeries> out;
  for (const auto& series : response.series()) out[series.name()] = series;
  return out;
}

std::unique_ptr<server::DeltaServer> Start(const std::string& state_dir) {
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.state_dir = state_dir;
  auto started = server::DeltaServer::Start(testing::SmallConfig(), options);
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? *std::move(started) : nullptr;
}

std::shared_ptr<TrainerClient> Connect(const server::DeltaServer& server) {
  auto connected = TrainerClient::Connect(server.address());
  EXPECT_TRUE(connected.ok()) << connected.status();
  return connected.ok() ? *connected : nullptr;
}

class MetricsHistory : public testing::ServerTest {};

TEST_F(MetricsHistory, LearnerSeriesArriveOnePointPerStep) {
  for (int i = 0; i < 3; ++i) {
    auto result = client->SubmitDelta(Submission(i), kModelName);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->stepped);
  }
  auto history = client->GetMetricsHistory();  // "" = the default model.
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_EQ(history->model(), kModelName);
  auto series = ByName(*history);
  for (const char* name : {"loss", "grad_norm", "grad_norm_clipped", "update_norm", "learning_rate",
                           "rows", "staleness_mean", "staleness_max"}) {
    ASSERT_EQ(series[name].values_size(), 3) << name;
    ASSERT_EQ(series[name].unix_ms_size(), 3) << name;
  }
  EXPECT_EQ(series["rows"].values(0), 1.0);
  EXPECT_EQ(series["learning_rate"].values(2), double{0.05f});
  EXPECT_GT(series["grad_norm"].values(0), 0.0);
  // l_s = ½‖δ‖² with δ = ones(2) (CURRENT, SUM).
  EXPECT_DOUBLE_EQ(series["loss"].values(0), 1.0);
  // Steps of one submission pair up for the noise scale: one estimate
  // from steps 1+2 and one from 2+3, if the averaged |G|² is positive.
  EXPECT_LE(series["noise_scale"].values_size(), 2);

  // since_unix_ms: only newer points.
  const int64_t last = series["loss"].unix_ms(2);
  auto newer = client->GetMetricsHistory(kModelName, last);
  ASSERT_TRUE(newer.ok()) << newer.status();
  EXPECT_EQ(ByName(*newer)["loss"].values_size(), 0);
}

TEST_F(MetricsHistory, UnknownModelIsNotFound) {
  auto history = client->GetMetricsHistory("no_such_model");
  EXPECT_EQ(history.status().code(), absl::StatusCode::kNotFound) << history.status();
}

// The shutdown takes a last sample and saves; the next server on the same
// state directory starts with those curves and continues them.
TEST(MetricsHistoryPersistence, CurvesContinueAcrossARestart) {
  deltaserve::testing::TempDir dir;
  {
    auto server = Start(dir.path());
    ASSERT_NE(server, nullptr);
    auto client = Connect(*server);
    ASSERT_NE(client, nullptr);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->SubmitDelta(Submission(3.0)).ok());
    server->Shutdown();
  }
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/" + kModelName + "/history.pb"));
  auto server = Start(dir.path());
  ASSERT_NE(server, nullptr);
  auto client = Connect(*server);
  ASSERT_NE(client, nullptr);
  auto before = client->GetMetricsHistory();
  ASSERT_TRUE(before.ok()) << before.status();
  auto series = ByName(*before);
  ASSERT_EQ(series["loss"].values_size(), 3);
  // The samples of the first run (at least the one its shutdown took): the
  // mean of that second's reports (all 3.0), one simulator (this test's
  // connection) at most, no watchers.
  ASSERT_GE(series["client/episode_return"].values_size(), 1);
  for (double v : series["client/episode_return"].values()) EXPECT_EQ(v, 3.0);
  ASSERT_GE(series["simulators"].values_size(), 1);
  double simulators = 0.0;
  for (double v : series["simulators"].values()) simulators = std::max(simulators, v);
  EXPECT_EQ(simulators, 1.0);
  ASSERT_GE(series["watchers"].values_size(), 1);
  EXPECT_EQ(series["watchers"].values(0), 0.0);

  ASSERT_TRUE(client->SubmitDelta(Submission(1.0)).ok());
  auto after = client->GetMetricsHistory();
  ASSERT_TRUE(after.ok()) << after.status();
  auto loss = ByName(*after)["loss"];
  ASSERT_EQ(loss.values_size(), 4);
  EXPECT_GE(loss.unix_ms(3), loss.unix_ms(2));
}

TEST(MetricsHistoryPersistence, ACorruptFileStartsAnEmptyHistory) {
  deltaserve::testing::TempDir dir;
  const std::string model_dir = dir.path() + "/" + kModelName;
  std::filesystem::create_directories(model_dir);
  {
    std::ofstream out(model_dir + "/history.pb", std::ios::binary);
    out << "\xff\xff\xff not a history";
  }
  auto server = Start(dir.path());
  ASSERT_NE(server, nullptr) << "a corrupt history must not fail the start";
  auto client = Connect(*server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SubmitDelta(Submission(1.0)).ok());
  auto history = client->GetMetricsHistory();
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_EQ(ByName(*history)["loss"].values_size(), 1);
}

}  // namespace
}  // namespace deltaserve::client
