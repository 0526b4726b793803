// DeltaSubmission::metrics from the C++ client: metrics that follow the
// rules reach the server with the submission (unary and Session); one that
// breaks a rule is refused before anything is sent, with INVALID_ARGUMENT
// naming the rule.
#include <chrono>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/tests/client/fake_trainer_stub.h"
#include "deltaserve/tests/client/test_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::testing::HasSubstr;
using testing::kInputDim;
using testing::kModelName;
using testing::kOutputDim;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

DeltaSubmission Submission(std::map<std::string, double> metrics, uint64_t version = 0) {
  DeltaSubmission s;
  s.inputs = model::Matrix::Constant(1, kInputDim, 0.5f);
  s.deltas = model::Matrix::Ones(1, kOutputDim);
  s.version = version;
  s.metrics = std::move(metrics);
  return s;
}

std::map<std::string, double> ManyNames(int n) {
  std::map<std::string, double> metrics;
  for (int i = 0; i < n; ++i) metrics[absl::StrCat("m", i)] = i;
  return metrics;
}

// A metric that breaks a rule and the words the refusal must contain.
struct Broken {
  std::map<std::string, double> metrics;
  std::string rule;
};

std::vector<Broken> BrokenMetrics() {
  return {
      {{{"episode-return", 1.0}}, "must match [A-Za-z_][A-Za-z0-9_]{0,63}"},
      {{{"", 1.0}}, "must match [A-Za-z_][A-Za-z0-9_]{0,63}"},
      {{{"1st", 1.0}}, "must match [A-Za-z_][A-Za-z0-9_]{0,63}"},
      {{{std::string(65, 'a'), 1.0}}, "(65 bytes)"},
      {{{"caf\xc3\xa9", 1.0}}, "must match"},
      {{{"loss", kNaN}}, "value of \"loss\" must be finite"},
      {{{"loss", -std::numeric_limits<double>::infinity()}}, "must be finite, got -inf"},
      {ManyNames(65), "at most 64 names per model, got 65"},
  };
}

TEST(ClientMetricsRefusal, TrainerClientSendsNothingAndNamesTheRule) {
  auto stub = std::make_shared<testing::FakeTrainerStub>();
  TrainerClient client(stub);
  for (const Broken& broken : BrokenMetrics()) {
    const absl::StatusOr<SubmitDeltaResult> result = client.SubmitDelta(Submission(broken.metrics));
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << broken.rule;
    EXPECT_THAT(result.status().message(), HasSubstr(broken.rule));
    EXPECT_THAT(result.status().message(), HasSubstr("nothing was sent"));
  }
  EXPECT_TRUE(stub->submit_requests.empty());
}

TEST(ClientMetricsRefusal, SixtyFourGoodNamesAreSentAsTheyAre) {
  auto stub = std::make_shared<testing::FakeTrainerStub>();
  TrainerClient client(stub);
  std::map<std::string, double> metrics = ManyNames(64);
  metrics.erase("m0");
  metrics[std::string(64, 'z')] = -2.5;
  ASSERT_TRUE(client.SubmitDelta(Submission(metrics)).ok());
  ASSERT_EQ(stub->submit_requests.size(), 1u);
  const auto& sent = stub->submit_requests[0].metrics();
  EXPECT_EQ(sent.size(), 64);
  EXPECT_EQ(sent.at(std::string(64, 'z')), -2.5);
  EXPECT_EQ(sent.at("m63"), 63.0);
}

class ClientMetricsTest : public testing::ServerTest {
 protected:
  // What the server keeps for the model (ModelMetrics::ClientMetrics).
  std::vector<server::ClientMetricSummary> Kept() const {
    return server->metrics()->ForModel(kModelName)->ClientMetrics();
  }
};

TEST_F(ClientMetricsTest, UnaryAndSessionMetricsReachTheServer) {
  auto unary = client->SubmitDelta(Submission({{"episode_return", 10.0}}), kModelName);
  ASSERT_TRUE(unary.ok()) << unary.status();
  auto session = client->OpenSession();
  ASSERT_TRUE(session.ok()) << session.status();
  auto streamed = (*session)->SubmitDeltaSync(
      Submission({{"episode_return", 30.0}, {"episode_length", 7.0}}, unary->version), kModelName);
  ASSERT_TRUE(streamed.ok()) << streamed.status();

  const std::vector<server::ClientMetricSummary> kept = Kept();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].name, "episode_length");
  EXPECT_EQ(kept[0].mean, 7.0);
  EXPECT_EQ(kept[1].name, "episode_return");
  EXPECT_EQ(kept[1].mean, 20.0);
  EXPECT_EQ(kept[1].total, 2u);
}

TEST_F(ClientMetricsTest, SessionRefusesBeforeSendingAndTheServerSeesNothing) {
  auto session = client->OpenSession();
  ASSERT_TRUE(session.ok()) << session.status();
  for (const Broken& broken : BrokenMetrics()) {
    std::promise<absl::Status> answered;
    (*session)->SubmitDelta(
        Submission(broken.metrics),
        [&answered](absl::StatusOr<SubmitDeltaResult> r) { answered.set_value(r.status()); },
        kModelName);
    // Refused on the calling thread: the answer is there when the call returns.
    std::future<absl::Status> answer = answered.get_future();
    ASSERT_EQ(answer.wait_for(std::chrono::seconds(0)), std::future_status::ready) << broken.rule;
    const absl::Status status = answer.get();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << broken.rule;
    EXPECT_THAT(status.message(), HasSubstr(broken.rule));
  }
  EXPECT_EQ((*session)->in_flight(), 0u);
  // The stream goes on: a good submission after the refusals is applied.
  auto ok = (*session)->SubmitDeltaSync(Submission({{"after", 1.0}}), kModelName);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->version, 1u);  // The refused ones never reached the learner.
  ASSERT_EQ(Kept().size(), 1u);
  EXPECT_EQ(Kept()[0].name, "after");
}

}  // namespace
}  // namespace deltaserve::client
