// PPO on Pendulum learns through a real server: configs/ppo_pendulum.textproto
// on 127.0.0.1 port 0, eight asynchronous simulators (sim/ppo_worker.h) of
// one environment each, a fixed env-step budget. A random policy averages
// about −1200 to −1500 per episode; the test asks the last 20 episodes to
// average above kThreshold, which a wrong δ sign (the policy pushed away from
// its good actions) or a value network that does not learn cannot reach in
// the budget. It also checks that the simulators really ran concurrently on
// stale data (ratios ≠ 1 at a rollout's first minibatch) and that every
// model stepped.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "deltaserve/server/core/config.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/sim/ppo_worker.h"
#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

constexpr int kSimulators = 8;
constexpr int64_t kEnvSteps = 50000;
constexpr double kThreshold = -600;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(PpoLearning, EightAsynchronousSimulatorsBeatARandomPolicyClearly) {
  const std::string text = ReadFile(DELTASERVE_PPO_CONFIG);
  ASSERT_FALSE(text.empty()) << "cannot read " << DELTASERVE_PPO_CONFIG;
  auto config = server::ParseServerConfig(text);
  ASSERT_TRUE(config.ok()) << config.status();
  auto server = server::DeltaServer::Start(*config, {});
  ASSERT_TRUE(server.ok()) << server.status();

  PpoModels models;
  models.policy.server = (*server)->address();
  models.policy.model = "pendulum_policy";
  models.value = models.policy;
  models.value.model = "pendulum_value";
  models.log_std = models.policy;
  models.log_std.model = "pendulum_log_std";
  PpoOptions options;
  options.seed = 5;
  PpoProgress progress(kEnvSteps, /*max_seconds=*/0, /*target=*/-250, /*window=*/20,
                       /*quiet=*/true);
  std::vector<absl::StatusOr<PpoWorkerCounts>> results(kSimulators, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int sim = 0; sim < kSimulators; ++sim) {
    threads.emplace_back(
        [&, sim] { results[sim] = RunPpoSimulator(sim, models, options, progress); });
  }
  for (std::thread& thread : threads) thread.join();

  double first_ratio_dev = 0;
  int rollouts = 0;
  for (int sim = 0; sim < kSimulators; ++sim) {
    ASSERT_TRUE(results[sim].ok()) << "simulator " << sim << ": " << results[sim].status();
    EXPECT_GT(results[sim]->minibatches, 0) << "simulator " << sim << " never learned";
    first_ratio_dev += results[sim]->sum_first_ratio_dev;
    rollouts += results[sim]->rollouts;
  }
  // Other simulators moved the policy while each one collected: its first
  // minibatch sees ratios away from 1.
  EXPECT_GT(first_ratio_dev / rollouts, 1e-3);
  // For the record (not asserted): where the run ended.
  std::printf("ppo_learning: average of the last 20 returns %.1f after %lld env steps, %.1f s\n",
              progress.average(), static_cast<long long>(progress.env_steps()), progress.seconds());
  EXPECT_GT(progress.episodes(), 20);
  EXPECT_GT(progress.average(), kThreshold)
      << "after " << progress.env_steps() << " env steps in " << progress.seconds() << " s";
}

}  // namespace
}  // namespace deltaserve::sim
