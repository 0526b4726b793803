// Runner::Act with rows_per_forward: one Forward call per piece of the rows
// (on a Session all in flight at once, unary one after another) gives
// exactly the outputs of one call with every row, at the same version, on a
// real server on loopback. Runner::SubmitAsync with submits_in_flight: the
// simulator acts on while its submissions are held by the server's learner
// (a closed HeldGate), at most submits_in_flight are unanswered, every one
// is counted once answered and a failed one is reported by Drain.
#include "deltaserve/sim/runner.h"

#include <memory>
#include <string>
#include <tuple>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

constexpr char kConfig[] = R"pb(
  models {
    name: "m"
    input_dim: 4
    seed: 3
    layers { units: 8 activation: ACTIVATION_TANH }
    layers { units: 2 activation: ACTIVATION_IDENTITY }
  }
)pb";

// Forward calls the server answered OK for model "m", unary and Session.
double ForwardCalls(const server::DeltaServer& server) {
  const std::string text = server.metrics()->Scrape();
  double calls = 0;
  for (const char* rpc : {"Forward", "SessionForward"}) {
    calls += server::testing::Sample(text, "deltaserve_rpc_requests_total",
                                     {{"model", "m"}, {"rpc", rpc}, {"code", "OK"}})
                 .value_or(0);
  }
  return calls;
}

// GetParameters calls the server answered OK for model "m".
double ParameterFetches(const server::DeltaServer& server) {
  return server::testing::Sample(server.metrics()->Scrape(), "deltaserve_rpc_requests_total",
                                 {{"model", "m"}, {"rpc", "GetParameters"}, {"code", "OK"}})
      .value_or(0);
}

class RowsPerForwardTest : public ::testing::TestWithParam<std::tuple<Transport, int>> {};

TEST_P(RowsPerForwardTest, PiecesGiveTheOutputsOfOneCallWithEveryRow) {
  const auto [transport, rows_per_forward] = GetParam();
  auto config = server::ParseServerConfig(kConfig);
  ASSERT_TRUE(config.ok()) << config.status();
  auto server = server::DeltaServer::Start(*config, {});
  ASSERT_TRUE(server.ok()) << server.status();

  RunnerOptions whole;
  whole.server = (*server)->address();
  whole.transport = transport;
  RunnerOptions pieces = whole;
  pieces.rows_per_forward = rows_per_forward;
  auto one_call = Runner::Connect(whole);
  ASSERT_TRUE(one_call.ok()) << one_call.status();
  auto split = Runner::Connect(pieces);
  ASSERT_TRUE(split.ok()) << split.status();

  model::Matrix inputs(5, 4);
  for (Eigen::Index i = 0; i < inputs.size(); ++i) {
    inputs.data()[i] = 0.1f * static_cast<float>(i) - 0.9f;
  }
  model::Matrix expected, got;
  auto expected_version = (*one_call)->Act(inputs, &expected);
  const double before = ForwardCalls(**server);
  auto got_version = (*split)->Act(inputs, &got);
  // One call per piece: 5 rows in pieces of rows_per_forward (a call may be
  // counted just after its answer left, so the count is awaited).
  const double want = before + (5 + rows_per_forward - 1) / rows_per_forward;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (ForwardCalls(**server) < want && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));  // Polls the counter; not a synchronisation.
  }
  EXPECT_EQ(ForwardCalls(**server), want);
  ASSERT_TRUE(expected_version.ok()) << expected_version.status();
  ASSERT_TRUE(got_version.ok()) << got_version.status();
  EXPECT_EQ(*got_version, *expected_version);
  ASSERT_EQ(got.rows(), 5);
  ASSERT_EQ(got.cols(), 2);
  // Bit for bit: the server computes each row on its own, whatever it is
  // batched with (Mlp::ForwardRowInvariant).
  EXPECT_TRUE(got == expected) << "pieces:\n" << got << "\none call:\n" << expected;
}

INSTANTIATE_TEST_SUITE_P(Transports, RowsPerForwardTest,
                         ::testing::Combine(::testing::Values(Transport::kSession,
                                                              Transport::kUnary),
                                            ::testing::Values(1, 2)),
                         [](const ::testing::TestParamInfo<RowsPerForwardTest::ParamType>& info) {
                           return std::string(TransportName(std::get<0>(info.param))) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "_rows";
                         });

model::Matrix Inputs(Eigen::Index rows, Eigen::Index cols) {
  model::Matrix inputs(rows, cols);
  for (Eigen::Index i = 0; i < inputs.size(); ++i) {
    inputs.data()[i] = 0.1f * static_cast<float>(i % 17) - 0.8f;
  }
  return inputs;
}

// δ = 0.1 for every output at the outputs acted on (a valid submission).
SubmissionBuilder Build(model::Matrix inputs) {
  return [inputs](const client::ForwardResult& at) {
    return client::DeltaSubmission{inputs, at.outputs,
                                   model::Matrix::Constant(at.outputs.rows(), 2, 0.1f), at.version};
  };
}

class SubmitsInFlightTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    auto config = server::ParseServerConfig(kConfig);
    ASSERT_TRUE(config.ok()) << config.status();
    gate_ = std::make_shared<server::testing::HeldGate>();
    gate_->Close();  // Before the learner starts: it takes nothing until opened.
    server::ServerOptions options;
    options.learner_gate = gate_;
    auto server = server::DeltaServer::Start(*config, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    if (gate_ != nullptr) gate_->Open();  // Nothing stays held when a check failed.
  }

  absl::StatusOr<std::unique_ptr<Runner>> Connect(
      int submits_in_flight, const std::string& actions = "roundtrip",
      ReplicaCatchUp catch_up = ReplicaCatchUp::kAnswer) {
    RunnerOptions options;
    options.server = server_->address();
    options.transport = GetParam();
    options.submits_in_flight = submits_in_flight;
    options.actions = actions;
    options.replica_catch_up = catch_up;
    return Runner::Connect(options);
  }

  std::shared_ptr<server::testing::HeldGate> gate_;
  std::unique_ptr<server::DeltaServer> server_;
};

TEST_P(SubmitsInFlightTest, KeepsActingWhileSubmissionsAreHeldAndBoundsThem) {
  auto connected = Connect(2);
  ASSERT_TRUE(connected.ok()) << connected.status();
  std::unique_ptr<Runner>& runner = *connected;
  const model::Matrix inputs = Inputs(3, 4);
  auto acted = runner->Fetch(inputs);
  ASSERT_TRUE(acted.ok()) << acted.status();

  // The learner is held: no submission can be answered, yet two are sent
  // and the simulator goes on acting.
  ASSERT_TRUE(runner->SubmitAsync(*acted, Build(inputs)).ok());
  ASSERT_TRUE(runner->SubmitAsync(*acted, Build(inputs)).ok());
  EXPECT_EQ(runner->submits_in_flight(), 2);
  EXPECT_EQ(runner->counts().submits, 0);
  model::Matrix outputs;
  for (int step = 0; step < 20; ++step) {
    auto version = runner->Act(inputs, &outputs);
    ASSERT_TRUE(version.ok()) << "step " << step << ": " << version.status();
    EXPECT_EQ(*version, acted->version);  // Nothing applied while the learner is held.
  }
  EXPECT_EQ(runner->counts().submits, 0);

  // A third may be sent only once the oldest is answered: the learner takes
  // one batch, and SubmitAsync returns after taking at least that answer.
  gate_->PassOnce();
  ASSERT_TRUE(runner->SubmitAsync(*acted, Build(inputs)).ok());
  EXPECT_GE(runner->counts().submits, 1);
  EXPECT_LE(runner->submits_in_flight(), 2);

  // Every submission is answered and counted once, none lost.
  gate_->Open();
  const absl::Status drained = runner->Drain();
  EXPECT_TRUE(drained.ok()) << drained;
  EXPECT_EQ(runner->submits_in_flight(), 0);
  EXPECT_EQ(runner->counts().submits, 3);
  auto after = runner->Fetch(inputs);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GT(after->version, acted->version);
}

TEST_P(SubmitsInFlightTest, AFailedSubmissionIsReportedByDrain) {
  gate_->Open();
  auto connected = Connect(1);
  ASSERT_TRUE(connected.ok()) << connected.status();
  std::unique_ptr<Runner>& runner = *connected;
  auto acted = runner->Fetch(Inputs(2, 4));
  ASSERT_TRUE(acted.ok()) << acted.status();
  // Three input columns for a model of four: the server refuses it, after
  // SubmitAsync has returned; Drain reports it and nothing is counted.
  ASSERT_TRUE(runner->SubmitAsync(*acted, Build(Inputs(2, 3))).ok());
  const absl::Status drained = runner->Drain();
  EXPECT_EQ(drained.code(), absl::StatusCode::kInvalidArgument) << drained;
  EXPECT_EQ(runner->counts().submits, 0);
  EXPECT_EQ(runner->submits_in_flight(), 0);
}

TEST_P(SubmitsInFlightTest, WithNoneInFlightSubmitAsyncWaitsForTheAnswer) {
  gate_->Open();
  auto connected = Connect(0);
  ASSERT_TRUE(connected.ok()) << connected.status();
  std::unique_ptr<Runner>& runner = *connected;
  const model::Matrix inputs = Inputs(2, 4);
  auto acted = runner->Fetch(inputs);
  ASSERT_TRUE(acted.ok()) << acted.status();
  ASSERT_TRUE(runner->SubmitAsync(*acted, Build(inputs)).ok());
  EXPECT_EQ(runner->counts().submits, 1);
  EXPECT_EQ(runner->submits_in_flight(), 0);
}

// A replica's weight push trails the SubmitDelta answer (the server paces
// each watch stream); a simulator that acted on before its replica had the
// answer's weights sent several δs from the same old weights, which made the
// CartPole demo's policy saturate (docs/demo.md). With none in flight, once
// SubmitAsync returns the replica acts with the weights of the answer,
// sent with the answer, fetched or awaited from the push. Only the fetch
// costs GetParameters calls: with kAnswer the weights came with the answers.
TEST_P(SubmitsInFlightTest, AReplicaActsWithTheWeightsOfItsAnswer) {
  gate_->Open();
  for (ReplicaCatchUp catch_up :
       {ReplicaCatchUp::kAnswer, ReplicaCatchUp::kFetch, ReplicaCatchUp::kPush}) {
    SCOPED_TRACE(AbslUnparseFlag(catch_up));
    auto connected = Connect(0, "replica", catch_up);
    ASSERT_TRUE(connected.ok()) << connected.status();
    std::unique_ptr<Runner>& runner = *connected;
    const model::Matrix inputs = Inputs(3, 4);
    model::Matrix outputs;
    const double fetches_before = ParameterFetches(*server_);
    for (int round = 0; round < 10; ++round) {
      auto acted_version = runner->Act(inputs, &outputs);
      ASSERT_TRUE(acted_version.ok()) << acted_version.status();
      ASSERT_TRUE(runner->SubmitAsync({outputs, *acted_version}, Build(inputs)).ok());
      auto version = runner->Act(inputs, &outputs);  // At once: no time for a late push.
      ASSERT_TRUE(version.ok()) << version.status();
      // Nothing else submits: the server's latest version is the answer's,
      // and its outputs are the ones the replica acts with.
      auto latest = runner->Fetch(inputs);
      ASSERT_TRUE(latest.ok()) << latest.status();
      EXPECT_GT(latest->version, *acted_version) << "round " << round;
      EXPECT_EQ(*version, latest->version) << "round " << round;
      EXPECT_TRUE(outputs.isApprox(latest->outputs, 1e-5f)) << "round " << round;
    }
    EXPECT_EQ(runner->counts().submits, 10);
    // GetParameters answers are counted before they are sent, and each
    // fetch was answered before its round went on. A fetch round whose push
    // came first needs none (9 of 10 fetched in a loaded CI run).
    const double fetches = ParameterFetches(*server_) - fetches_before;
    if (catch_up == ReplicaCatchUp::kFetch) {
      EXPECT_GE(fetches, 1);
      EXPECT_LE(fetches, 10);
    } else {
      EXPECT_EQ(fetches, 0);
    }
  }
}

TEST(ReplicaCatchUpFlag, ParsesItsThreeNamesAndRefusesOthers) {
  ReplicaCatchUp catch_up = ReplicaCatchUp::kPush;
  std::string error;
  EXPECT_TRUE(AbslParseFlag("answer", &catch_up, &error));
  EXPECT_EQ(catch_up, ReplicaCatchUp::kAnswer);
  EXPECT_EQ(AbslUnparseFlag(catch_up), "answer");
  EXPECT_TRUE(AbslParseFlag("fetch", &catch_up, &error));
  EXPECT_EQ(catch_up, ReplicaCatchUp::kFetch);
  EXPECT_TRUE(AbslParseFlag("push", &catch_up, &error));
  EXPECT_EQ(catch_up, ReplicaCatchUp::kPush);
  EXPECT_FALSE(AbslParseFlag("pull", &catch_up, &error));
  EXPECT_EQ(catch_up, ReplicaCatchUp::kPush);  // Unchanged.
  EXPECT_NE(error.find("'answer', 'fetch' or 'push'"), std::string::npos) << error;
}

TEST_P(SubmitsInFlightTest, ConnectRefusesABoundOutOfRange) {
  for (int bad : {-1, kMaxSubmitsInFlight + 1}) {
    auto connected = Connect(bad);
    EXPECT_EQ(connected.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(connected.status().message().find("submits_in_flight"), absl::string_view::npos)
        << connected.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, SubmitsInFlightTest,
                         ::testing::Values(Transport::kSession, Transport::kUnary),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return std::string(TransportName(info.param));
                         });

}  // namespace
}  // namespace deltaserve::sim
