// TD3 on Pendulum learns through a real server (sim/td3_learner.h): the
// models of Td3ServerConfig on 127.0.0.1 port 0, a short budget with faster
// settings than the benchmark's (those of tests/python/test_rl_examples.py's
// td3short, but 8,000 env steps: 400 random ones, lr 2e-3, τ 0.02, minibatch 64).
// Uniformly random actions score about −1,200 to −1,500 per episode; the
// median of the last 10 episodes must be above kThreshold, which a negated actor δ or a
// critic that does not learn its TD target misses by far (docs/algorithms.md,
// "TD3 in C++", has the measurements). Also: the models all stepped, models
// of the wrong shape or a critic without the ANCHORED/MEAN surrogate are
// refused by name before anything is trained, and the first episodes score
// like the random policy (a run that starts good by accident does not pass).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/sim/td3_learner.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

constexpr double kThreshold = -600;

Td3Options ShortOptions() {
  Td3Options o;
  o.steps = 8000;
  o.learning_starts = 400;
  o.lr = 2e-3;
  o.tau = 0.02;
  o.batch = 64;
  o.window = 5;
  o.print_every = 0;
  o.seed = 2;
  return o;
}

std::unique_ptr<server::DeltaServer> StartServer(const std::string& config_text) {
  auto config = server::ParseServerConfig(config_text);
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return nullptr;
  auto server = server::DeltaServer::Start(*config, {});
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  return std::move(*server);
}

uint64_t Version(const std::string& address, const std::string& model) {
  auto client = client::TrainerClient::Connect(address);
  EXPECT_TRUE(client.ok()) << client.status();
  if (!client.ok()) return 0;
  auto info = (*client)->GetModelInfo(model);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? info->version() : 0;
}

// One short run with `seed` on a fresh server: checks what must hold on any
// run and returns the median of the last 10 returns.
double ShortRunMedian(uint64_t seed) {
  Td3Options o = ShortOptions();
  o.seed = seed;
  auto server = StartServer(Td3ServerConfig(o));
  EXPECT_NE(server, nullptr);
  if (server == nullptr) return -1e9;
  o.server = server->address();
  absl::StatusOr<Td3Result> r = RunTd3(o);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok() || r->returns.size() != 40u) {
    ADD_FAILURE() << "expected 40 episodes";
    return -1e9;
  }
  std::vector<double> last(r->returns.end() - 10, r->returns.end());
  std::sort(last.begin(), last.end());
  const double median = (last[4] + last[5]) / 2;  // of the last 10
  std::printf(
      "td3_learning: seed %llu: median of the last 10 returns %.1f (mean of the last 5: %.1f) "
      "after %lld env steps, %.1f s\n",
      static_cast<unsigned long long>(seed), median, r->average,
      static_cast<long long>(r->env_steps), r->seconds);
  EXPECT_EQ(r->env_steps, o.steps);
  // The two random-action episodes score like a random policy.
  EXPECT_LT((r->returns[0] + r->returns[1]) / 2, -700);
  EXPECT_EQ(r->critic_submits, o.steps - o.learning_starts);
  EXPECT_EQ(r->actor_submits, (o.steps - o.learning_starts) / o.policy_delay);
  EXPECT_GT(r->fetch_rounds, 0);
  // Import (1 version) + one step per submission (samples_per_step = batch).
  EXPECT_EQ(Version(o.server, "q1"), 1u + static_cast<uint64_t>(r->critic_submits));
  EXPECT_EQ(Version(o.server, "q2"), 1u + static_cast<uint64_t>(r->critic_submits));
  EXPECT_EQ(Version(o.server, "actor"), 1u + static_cast<uint64_t>(r->actor_submits));
  return median;
}

TEST(Td3Learning, ShortRunBeatsARandomPolicyClearly) {
  // The median, not the mean: a policy that swings up from most starts still
  // fails from a few (about -1,000 each), and two of those among five would
  // drag a mean down to the threshold. The learner keeps 2 steps in flight,
  // so a run also depends on timing: one CI run of seed 2 ended at -961. A
  // second seed is run when the first misses; a negated actor delta or a
  // critic that does not learn misses with every seed.
  const double first = ShortRunMedian(2);
  if (first > kThreshold) return;
  EXPECT_GT(ShortRunMedian(3), kThreshold) << "seed 2's median was " << first << " too";
}

// A critic of the wrong input width, and a critic with the default CURRENT
// surrogate (where ỹ = y, δ = 0 would train nothing): refused by name,
// FAILED_PRECONDITION, no model changed (version 0: nothing imported).
TEST(Td3Learning, ModelsTheAlgorithmCannotUseAreRefusedAndNothingChanges) {
  Td3Options o = ShortOptions();
  std::string config = Td3ServerConfig(o);
  const std::string q2_input = "name: \"q2\"\n  input_dim: 4";
  ASSERT_NE(config.find(q2_input), std::string::npos);
  config.replace(config.find(q2_input), q2_input.size(), "name: \"q2\"\n  input_dim: 5");
  {
    auto server = StartServer(config);
    ASSERT_NE(server, nullptr);
    o.server = server->address();
    absl::StatusOr<Td3Result> r = RunTd3(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    EXPECT_NE(r.status().message().find("'q2'"), std::string::npos) << r.status();
    for (const char* m : {"actor", "q1", "q2"}) EXPECT_EQ(Version(o.server, m), 0u) << m;
  }
  config = Td3ServerConfig(o);
  const std::string anchored = "  surrogate { mode: ANCHORED reduction: MEAN }\n";
  ASSERT_NE(config.find(anchored), std::string::npos);
  config.erase(config.find(anchored), anchored.size());  // q1's: CURRENT/SUM by default
  {
    auto server = StartServer(config);
    ASSERT_NE(server, nullptr);
    o.server = server->address();
    absl::StatusOr<Td3Result> r = RunTd3(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    EXPECT_NE(r.status().message().find("'q1'"), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find("ANCHORED"), std::string::npos) << r.status();
    for (const char* m : {"actor", "q1", "q2"}) EXPECT_EQ(Version(o.server, m), 0u) << m;
  }
}

TEST(Td3Learning, BadOptionsAreRefusedBeforeConnecting) {
  Td3Options o = ShortOptions();
  o.server = "127.0.0.1:1";  // never reached
  o.policy_delay = 0;
  absl::StatusOr<Td3Result> r = RunTd3(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("policy_delay"), std::string::npos) << r.status();
}

TEST(Td3Learning, AnUnwritableCsvIsRefusedBeforeAnyModelChanges) {
  Td3Options o = ShortOptions();
  auto server = StartServer(Td3ServerConfig(o));
  ASSERT_NE(server, nullptr);
  o.server = server->address();
  o.csv = "/nonexistent-directory/curve.csv";
  absl::StatusOr<Td3Result> r = RunTd3(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find(o.csv), std::string::npos) << r.status();
  for (const char* m : {"actor", "q1", "q2"}) EXPECT_EQ(Version(o.server, m), 0u) << m;
}

// The trainer shuts down in the middle of a run and a new one starts on the
// same port and state directory: the run reopens its Session, sends its
// unanswered calls again and ends with every episode, and each model's
// version is exactly its import plus one step per submission the run made,
// so no submission was lost or applied twice across the restart.
TEST(Td3OverARestart, TheRunReconnectsAndNoSubmissionIsLostOrAppliedTwice) {
  deltaserve::testing::TempDir dir;
  Td3Options o = ShortOptions();
  o.steps = 1600;  // 8 episodes.
  o.learning_starts = 200;
  auto config = server::ParseServerConfig(Td3ServerConfig(o));
  ASSERT_TRUE(config.ok()) << config.status();
  server::ServerOptions options;
  options.state_dir = dir.path();
  auto first = server::DeltaServer::Start(*config, options);
  ASSERT_TRUE(first.ok()) << first.status();
  std::unique_ptr<server::DeltaServer> running = *std::move(first);
  o.server = running->address();
  uint64_t q1_at_restart = 0;
  bool restarted = false;
  o.on_episode = [&](int episode) {
    if (episode != 4) return;
    // Calls of this run are in flight now: 4 episodes are 800 steps, 600
    // of them learning ones.
    q1_at_restart = Version(o.server, "q1");
    running.reset();  // Shutdown: the Session ends with UNAVAILABLE.
    options.listen_address = o.server;
    auto second = server::DeltaServer::Start(*config, options);
    ASSERT_TRUE(second.ok()) << second.status();
    running = *std::move(second);
    restarted = true;
  };
  absl::StatusOr<Td3Result> r = RunTd3(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(restarted);
  EXPECT_EQ(r->returns.size(), 8u);
  EXPECT_GE(r->reconnects, 1);
  EXPECT_EQ(r->critic_submits, o.steps - o.learning_starts);
  EXPECT_EQ(r->actor_submits, (o.steps - o.learning_starts) / o.policy_delay);
  EXPECT_GT(q1_at_restart, 1u);
  const uint64_t q1 = Version(o.server, "q1");
  EXPECT_GT(q1, q1_at_restart) << "no critic step after the restart";
  EXPECT_EQ(q1, 1u + static_cast<uint64_t>(r->critic_submits));
  EXPECT_EQ(Version(o.server, "q2"), 1u + static_cast<uint64_t>(r->critic_submits));
  EXPECT_EQ(Version(o.server, "actor"), 1u + static_cast<uint64_t>(r->actor_submits));
  std::printf(
      "td3 over a restart: %lld reconnects, %lld calls sent again, %lld fetch rounds skipped\n",
      static_cast<long long>(r->reconnects), static_cast<long long>(r->resent_calls),
      static_cast<long long>(r->skipped_fetch_rounds));
}

// With retry_for 0 the first UNAVAILABLE ends the run, with that status.
TEST(Td3OverARestart, RetryForZeroEndsTheRunAtTheFirstUnavailable) {
  Td3Options o = ShortOptions();
  o.steps = 1600;
  o.learning_starts = 200;
  o.retry_for = absl::ZeroDuration();
  auto running = StartServer(Td3ServerConfig(o));
  ASSERT_NE(running, nullptr);
  o.server = running->address();
  o.on_episode = [&](int episode) {
    if (episode == 2) running.reset();
  };
  absl::StatusOr<Td3Result> r = RunTd3(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

}  // namespace
}  // namespace deltaserve::sim
