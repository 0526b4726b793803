// PPO on Pendulum learns through a real server: configs/ppo_pendulum.textproto
// on 127.0.0.1 port 0, eight asynchronous simulators (sim/ppo_worker.h) of
// one environment each, a fixed env-step budget. A random policy averages
// about −1200 to −1500 per episode; the test asks the last 20 episodes to
// average above kThreshold, which a wrong δ sign (the policy pushed away from
// its good actions) or a value network that does not learn cannot reach in
// the budget. It also checks that the simulators really ran concurrently on
// stale data (ratios ≠ 1 at a rollout's first minibatch) and that every
// model stepped.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "deltaserve/client/replica.h"
#include "deltaserve/client/trainer_client.h"
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
  ASSERT_GT(rollouts, 0);
  EXPECT_GT(first_ratio_dev / rollouts, 1e-3);
  // For the record (not asserted): where the run ended.
  std::printf("ppo_learning: average of the last 20 returns %.1f after %lld env steps, %.1f s\n",
              progress.average(), static_cast<long long>(progress.env_steps()), progress.seconds());
  EXPECT_GT(progress.episodes(), 20);
  EXPECT_GT(progress.average(), kThreshold)
      << "after " << progress.env_steps() << " env steps in " << progress.seconds() << " s";
}

// The learner's variants all reach every model: the sequential learner
// (pipeline off) against a value model with the CURRENT surrogate (the
// simulator Forwards V and sends δ_V), and the pipelined learner against the
// ANCHORED value model of configs/ppo_pendulum.textproto with the simulators
// acting on one shared Replica. A short budget: this checks that each model
// took optimizer steps and nothing was refused, not that it learned.
void RunShort(const std::string& config_text, bool pipeline, bool shared_replica) {
  auto config = server::ParseServerConfig(config_text);
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
  if (shared_replica) {
    auto client = client::TrainerClient::Connect(models.policy.server);
    ASSERT_TRUE(client.ok()) << client.status();
    auto replica = client::Replica::Create(std::move(*client), "pendulum_policy");
    ASSERT_TRUE(replica.ok()) << replica.status();
    models.shared_replica = std::move(*replica);
  }
  PpoOptions options;
  options.pipeline = pipeline;
  options.seed = 2;
  constexpr int kShortSimulators = 2;
  PpoProgress progress(/*max_env_steps=*/2 * 256 * kShortSimulators, 0, -250, 20, true);
  std::vector<absl::StatusOr<PpoWorkerCounts>> results(kShortSimulators,
                                                       absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int sim = 0; sim < kShortSimulators; ++sim) {
    threads.emplace_back(
        [&, sim] { results[sim] = RunPpoSimulator(sim, models, options, progress); });
  }
  for (std::thread& thread : threads) thread.join();
  for (int sim = 0; sim < kShortSimulators; ++sim) {
    ASSERT_TRUE(results[sim].ok()) << "simulator " << sim << ": " << results[sim].status();
    EXPECT_GT(results[sim]->minibatches, 0) << "simulator " << sim;
    EXPECT_EQ(results[sim]->aborted_dropped, 0) << "simulator " << sim;
  }
  for (const char* name : {"pendulum_policy", "pendulum_value", "pendulum_log_std"}) {
    RunnerOptions runner_options = models.policy;
    runner_options.model = name;
    auto runner = Runner::Connect(runner_options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    auto parameters = (*runner)->GetParameters();
    ASSERT_TRUE(parameters.ok()) << parameters.status();
    EXPECT_GT(parameters->version, 0u) << name << " never stepped";
  }
}

TEST(PpoLearners, SequentialLearnerWithACurrentValueModelStepsEveryModel) {
  std::string text = ReadFile(DELTASERVE_PPO_CONFIG);
  ASSERT_FALSE(text.empty()) << "cannot read " << DELTASERVE_PPO_CONFIG;
  const std::string anchored = "mode: ANCHORED delta_scale: 1 reduction: MEAN";
  const size_t at = text.find(anchored);
  ASSERT_NE(at, std::string::npos) << "the config's value model is no longer ANCHORED/MEAN";
  text.replace(at, anchored.size(), "mode: CURRENT delta_scale: 1 reduction: SUM");
  RunShort(text, /*pipeline=*/false, /*shared_replica=*/false);
}

TEST(PpoLearners, PipelinedLearnerOnASharedReplicaStepsEveryModel) {
  const std::string text = ReadFile(DELTASERVE_PPO_CONFIG);
  ASSERT_FALSE(text.empty()) << "cannot read " << DELTASERVE_PPO_CONFIG;
  RunShort(text, /*pipeline=*/true, /*shared_replica=*/true);
}

TEST(PpoOptions, InconsistentOptionsAreRefusedBeforeConnecting) {
  PpoModels models;
  models.policy.server = "127.0.0.1:1";  // never reached
  models.value = models.log_std = models.policy;
  PpoProgress progress(1000, 0, -250, 20, true);
  PpoOptions options;
  options.minibatches = 7;  // 256 rows do not split into 7
  absl::StatusOr<PpoWorkerCounts> result = RunPpoSimulator(0, models, options, progress);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("multiple of minibatches"), std::string::npos)
      << result.status();
  options = PpoOptions();
  options.rollout = 0;
  EXPECT_EQ(ValidatePpoOptions(options).code(), absl::StatusCode::kInvalidArgument);
  options = PpoOptions();
  options.policy.clip = 0;
  EXPECT_EQ(ValidatePpoOptions(options).code(), absl::StatusCode::kInvalidArgument);
  options = PpoOptions();
  options.gamma = std::nan("");
  EXPECT_EQ(ValidatePpoOptions(options).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidatePpoOptions(PpoOptions()).ok());
  EXPECT_EQ(ParsePiOld("behavior").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParsePiOld("recompute"), PiOld::kRecompute);
}

// A value model of the wrong shape (4 inputs) is refused by name, and no
// model's parameters change.
TEST(PpoModels, AModelOfTheWrongShapeIsRefusedAndNothingIsTrained) {
  auto config = server::ParseServerConfig(R"pb(
    models {
      name: "policy"
      input_dim: 3
      layers { units: 1 activation: ACTIVATION_IDENTITY }
    }
    models {
      name: "value"
      input_dim: 4
      layers { units: 1 activation: ACTIVATION_IDENTITY }
    }
    models {
      name: "log_std"
      input_dim: 1
      layers { units: 1 activation: ACTIVATION_IDENTITY }
    }
  )pb");
  ASSERT_TRUE(config.ok()) << config.status();
  auto server = server::DeltaServer::Start(*config, {});
  ASSERT_TRUE(server.ok()) << server.status();
  PpoModels models;
  models.policy.server = (*server)->address();
  models.policy.model = "policy";
  models.value = models.policy;
  models.value.model = "value";
  models.log_std = models.policy;
  models.log_std.model = "log_std";
  PpoProgress progress(1000, 0, -250, 20, true);
  absl::StatusOr<PpoWorkerCounts> result = RunPpoSimulator(0, models, PpoOptions(), progress);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find("'value'"), std::string::npos) << result.status();
  EXPECT_EQ(progress.env_steps(), 0);
  for (const char* name : {"policy", "value", "log_std"}) {
    RunnerOptions options = models.policy;
    options.model = name;
    auto runner = Runner::Connect(options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    auto parameters = (*runner)->GetParameters();
    ASSERT_TRUE(parameters.ok()) << parameters.status();
    EXPECT_EQ(parameters->version, 0u) << name;
  }
}

}  // namespace
}  // namespace deltaserve::sim
