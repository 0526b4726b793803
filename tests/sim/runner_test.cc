// Runner::Act with rows_per_forward: one Forward call per piece of the rows
// (on a Session all in flight at once, unary one after another) gives
// exactly the outputs of one call with every row, at the same version, on a
// real server on loopback.
#include "deltaserve/sim/runner.h"

#include <memory>
#include <string>
#include <tuple>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/service/server.h"
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

}  // namespace
}  // namespace deltaserve::sim
