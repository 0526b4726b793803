// ppo_sim: PPO on Pendulum through a deltaserve server, with --simulators
// asynchronous simulator threads (sim/ppo_worker.h: what each one does, and
// where the three models' weights live). Each thread has its own Sessions;
// none waits for another. Run it against configs/ppo_pendulum.textproto:
//
//   deltaserve --config=configs/ppo_pendulum.textproto --port=50051 &
//   deltaserve-ppo-sim --server=127.0.0.1:50051
//
// --server and --model (the policy mean's model): sim/runner_flags.h.
//
// stdout, one line per finished episode (unless --quiet):
//   episode=12 return=-1234.5 avg=-1300.2 steps=4096 version=37 sim=3 t=1.234
// (avg: mean of the last --window returns of all simulators; steps: env
// steps of all simulators), one line per simulator at its end:
//   simulator sim=3 rollouts=5 minibatches=400 dropped=0 clipped=0.081 max_lag=612
//             first_lag=270.5 first_ratio_dev=0.093 aborted=0 aborted_dropped=0
// (clipped: fraction of policy rows where the clip bound; max_lag: largest
// policy version minus the oldest version that acted in the rollout being
// learned from; first_lag and first_ratio_dev: that lag and the mean |r - 1|
// at a rollout's first minibatch, averaged over its rollouts; aborted:
// ABORTED submissions refetched and resent; aborted_dropped: with
// --pipeline, ABORTED submissions dropped)
// and at exit:
//   summary env_steps=81920 episodes=400 avg_last20=-240.1 target=-250 reached_at_steps=79872
//           reached_at_seconds=41.2 seconds=41.5
// (reached_at_*: -1 if the target was not reached). Exit code 0 unless an
// RPC failed for good (sim/retry.h).
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/client/replica.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/sim/ppo_worker.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/runner_flags.h"
#include "deltaserve/sim/sim_main.h"

ABSL_FLAG(std::string, value_model, "pendulum_value", "the value network's model");
ABSL_FLAG(std::string, log_std_model, "pendulum_log_std",
          "the log-std's model (input_dim 1, one identity unit, fed 0)");
ABSL_FLAG(std::string, actions, "roundtrip",
          "'roundtrip': a Forward per rollout step; 'replica': a local Replica of the policy per "
          "simulator; 'shared_replica': one Replica of the policy for all simulators");
ABSL_FLAG(int, simulators, 8, "simulator threads, each with its own environments and Sessions");
ABSL_FLAG(int, envs, 1, "Pendulums per simulator, stepped in lockstep");
ABSL_FLAG(int, rollout, 256, "steps per environment per rollout");
ABSL_FLAG(int, epochs, 10, "passes over each rollout");
ABSL_FLAG(int, minibatches, 8, "minibatches per pass (rows = rollout*envs/minibatches)");
ABSL_FLAG(double, gamma, 0.95, "discount");
ABSL_FLAG(double, lambda, 0.95, "GAE lambda");
ABSL_FLAG(double, clip, 0.2, "PPO clip epsilon");
ABSL_FLAG(double, ent_coef, 0.0, "entropy bonus coefficient");
ABSL_FLAG(double, vf_coef, 0.5, "value loss coefficient");
ABSL_FLAG(bool, reward_scaling, true, "divide rewards by the running std of the discounted return");
ABSL_FLAG(std::string, pi_old, "behaviour",
          "'behaviour': ratio against the policy version that acted; 'recompute': against the "
          "policy at the start of each learning phase");
ABSL_FLAG(uint64_t, max_policy_lag, 0,
          "drop a rollout if, when its learning starts, the policy is more than this many "
          "versions past the oldest version that acted in it; 0 = never");
ABSL_FLAG(bool, pipeline, true,
          "issue each minibatch's Forwards behind the previous minibatch's SubmitDeltas (one "
          "round trip per minibatch); false: wait for every call");
ABSL_FLAG(uint64_t, seed, 1, "seed of the environments and the action noise");
ABSL_FLAG(int64_t, max_env_steps, 300000, "stop after this many env steps (all simulators)");
ABSL_FLAG(double, max_seconds, 0, "stop after this many seconds; 0 = no limit");
ABSL_FLAG(double, target, -250, "stop once the mean of the last --window returns reaches this");
ABSL_FLAG(int, window, 20, "returns averaged for --target");
ABSL_FLAG(bool, quiet, false, "no per-episode lines");

namespace deltaserve::sim {
namespace {

absl::StatusOr<int> Run() {
  PpoModels models;
  models.policy = RunnerOptionsFromFlags();
  const std::string actions = absl::GetFlag(FLAGS_actions);
  models.policy.actions = actions == "shared_replica" ? "roundtrip" : actions;
  if (actions == "shared_replica") {
    DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<client::TrainerClient> client,
                                client::TrainerClient::Connect(models.policy.server, [&] {
                                  client::ClientOptions o;
                                  o.security = models.policy.security;
                                  return o;
                                }()));
    DELTASERVE_ASSIGN_OR_RETURN(models.shared_replica,
                                client::Replica::Create(client, models.policy.model));
  }
  models.value = models.policy;
  models.value.model = absl::GetFlag(FLAGS_value_model);
  models.log_std = models.policy;
  models.log_std.model = absl::GetFlag(FLAGS_log_std_model);

  PpoOptions options;
  options.envs = absl::GetFlag(FLAGS_envs);
  options.rollout = absl::GetFlag(FLAGS_rollout);
  options.epochs = absl::GetFlag(FLAGS_epochs);
  options.minibatches = absl::GetFlag(FLAGS_minibatches);
  options.gamma = absl::GetFlag(FLAGS_gamma);
  options.lambda = absl::GetFlag(FLAGS_lambda);
  options.policy.clip = absl::GetFlag(FLAGS_clip);
  options.policy.ent_coef = absl::GetFlag(FLAGS_ent_coef);
  options.vf_coef = absl::GetFlag(FLAGS_vf_coef);
  options.reward_scaling = absl::GetFlag(FLAGS_reward_scaling);
  DELTASERVE_ASSIGN_OR_RETURN(options.pi_old, ParsePiOld(absl::GetFlag(FLAGS_pi_old)));
  options.max_policy_lag = absl::GetFlag(FLAGS_max_policy_lag);
  options.pipeline = absl::GetFlag(FLAGS_pipeline);
  options.seed = absl::GetFlag(FLAGS_seed);

  const double target = absl::GetFlag(FLAGS_target);
  PpoProgress progress(absl::GetFlag(FLAGS_max_env_steps), absl::GetFlag(FLAGS_max_seconds), target,
                       absl::GetFlag(FLAGS_window), absl::GetFlag(FLAGS_quiet));
  const int simulators = std::max(1, absl::GetFlag(FLAGS_simulators));
  std::vector<absl::StatusOr<PpoWorkerCounts>> results(simulators, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int sim = 0; sim < simulators; ++sim) {
    threads.emplace_back(
        [&, sim] { results[sim] = RunPpoSimulator(sim, models, options, progress); });
  }
  for (std::thread& thread : threads) thread.join();
  absl::Status status;
  for (int sim = 0; sim < simulators; ++sim) {
    if (!results[sim].ok()) {
      status.Update(results[sim].status());
      continue;
    }
    const PpoWorkerCounts& c = *results[sim];
    Report(
        "simulator sim=%d rollouts=%d minibatches=%d dropped=%d clipped=%.3f max_lag=%d "
        "first_lag=%.1f first_ratio_dev=%.3f aborted=%d aborted_dropped=%d\n",
        sim, c.rollouts, c.minibatches, c.dropped_rollouts,
        c.rows > 0 ? static_cast<double>(c.clipped_rows) / static_cast<double>(c.rows) : 0.0,
        c.max_lag, c.rollouts > 0 ? static_cast<double>(c.sum_first_lag) / c.rollouts : 0.0,
        c.rollouts > 0 ? c.sum_first_ratio_dev / c.rollouts : 0.0, c.refetches, c.aborted_dropped);
  }
  Report(
      "summary env_steps=%d episodes=%d avg_last%d=%.1f target=%.0f reached_at_steps=%d "
      "reached_at_seconds=%.1f seconds=%.1f\n",
      progress.env_steps(), progress.episodes(), absl::GetFlag(FLAGS_window), progress.average(),
      target, progress.steps_at_target(), progress.seconds_at_target(), progress.seconds());
  DELTASERVE_RETURN_IF_ERROR(status);
  return 0;
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  return deltaserve::sim::SimulatorMain(argc, argv, "ppo_sim", deltaserve::sim::Run);
}
