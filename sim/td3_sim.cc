// td3_sim: TD3 on Pendulum through a deltaserve server, in C++
// (sim/td3_learner.h: the algorithm, the three models, what runs
// asynchronously). The server must serve the models --print_config prints
// (the same as client/python/examples/td3_pendulum.py --print-config):
//
//   td3_sim --print_config > /tmp/td3.textproto
//   deltaserve --config=/tmp/td3.textproto --listen=127.0.0.1:50051 &
//   td3_sim --server=127.0.0.1:50051 --seed=1 --csv=/tmp/td3_cpp_1.csv
//
// tools/td3_cpp.py does both. --server and the TLS/token flags:
// sim/runner_flags.h (--model names the actor; --transport and
// --rows_per_forward are not used: every call goes over one Session;
// --retry_for is how long the run waits for a trainer that has become
// unreachable, sim/td3_learner.h).
//
// stdout: every --print_every episodes
//   episode 10  steps 2000  wall 1.2s  return -1234.5  avg10 -1300.2
// then one line of counts and the summary line (the format of the Python
// example's and tools/torch_td3.py's, which tools/bench_algorithms.py reads):
//   counts critic_submits=19000 actor_submits=9500 fetch_rounds=4100
//          max_critic_staleness=3 max_actor_staleness=2 reconnects=0
//          resent_calls=0 skipped_fetch_rounds=0
//   TD3 (deltaserve, C++) seed 1 hidden 64: average of the last 10 returns
//          -190.3 after 20000 env steps, 20.1 s wall, 9.0 s CPU
// (wall and CPU: the training loop, after connecting and importing the
// initial weights; CPU is this process's). --csv gets one row per episode
// in tools/torch_rl.py's columns.
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/runner_flags.h"
#include "deltaserve/sim/sim_main.h"
#include "deltaserve/sim/td3_learner.h"

ABSL_FLAG(std::string, q1_model, "q1", "the first critic's model");
ABSL_FLAG(std::string, q2_model, "q2", "the second critic's model");
ABSL_FLAG(uint64_t, seed, 1,
          "seed of the environment, the noise, the replay and the initial weights");
ABSL_FLAG(int64_t, steps, 20000, "env steps");
ABSL_FLAG(int, hidden, 64, "hidden width of the three networks (--print_config, initial weights)");
ABSL_FLAG(int, learning_starts, 1000, "uniformly random actions, no learning, before this step");
ABSL_FLAG(int, batch, 256, "minibatch rows (the models' samples_per_step)");
ABSL_FLAG(double, lr, 3e-4, "Adam's learning rate (--print_config only: the server has it)");
ABSL_FLAG(double, gamma, 0.99, "discount");
ABSL_FLAG(double, tau, 0.005, "Polyak rate of the target networks");
ABSL_FLAG(int, policy_delay, 2, "critic steps per actor step and target update");
ABSL_FLAG(double, exploration_noise, 0.1, "action noise std, in units of the action scale (2)");
ABSL_FLAG(double, target_noise, 0.2, "target policy smoothing noise std (action-scale units)");
ABSL_FLAG(double, target_noise_clip, 0.5, "clip of the smoothing noise (action-scale units)");
ABSL_FLAG(int, buffer_capacity, 0, "replay buffer capacity; 0 = --steps");
ABSL_FLAG(int, in_flight, 2,
          "steps of critic submissions, and actor steps, left unanswered at most");
ABSL_FLAG(bool, import_initial_weights, true,
          "start from torch.nn.Linear's default initialisation drawn from --seed "
          "(Admin.ImportParameters), as the references do; false: the server's weights");
ABSL_FLAG(std::string, csv, "",
          "learning curve CSV (episode,env_steps,wall_seconds,return,average)");
ABSL_FLAG(int, print_every, 10, "episodes between progress lines; 0 = none");
ABSL_FLAG(bool, print_config, false, "print the server config of the three models and exit");

namespace deltaserve::sim {
namespace {

absl::StatusOr<int> Run() {
  const RunnerOptions connection = RunnerOptionsFromFlags();
  Td3Options o;
  o.server = connection.server;
  o.security = connection.security;
  o.retry_for = connection.retry.retry_for;
  if (!connection.model.empty()) o.actor_model = connection.model;
  o.q1_model = absl::GetFlag(FLAGS_q1_model);
  o.q2_model = absl::GetFlag(FLAGS_q2_model);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.hidden = absl::GetFlag(FLAGS_hidden);
  o.learning_starts = absl::GetFlag(FLAGS_learning_starts);
  o.batch = absl::GetFlag(FLAGS_batch);
  o.lr = absl::GetFlag(FLAGS_lr);
  o.gamma = absl::GetFlag(FLAGS_gamma);
  o.tau = absl::GetFlag(FLAGS_tau);
  o.policy_delay = absl::GetFlag(FLAGS_policy_delay);
  o.exploration_noise = absl::GetFlag(FLAGS_exploration_noise);
  o.target_noise = absl::GetFlag(FLAGS_target_noise);
  o.target_noise_clip = absl::GetFlag(FLAGS_target_noise_clip);
  o.buffer_capacity = absl::GetFlag(FLAGS_buffer_capacity);
  o.in_flight = absl::GetFlag(FLAGS_in_flight);
  o.import_initial_weights = absl::GetFlag(FLAGS_import_initial_weights);
  o.csv = absl::GetFlag(FLAGS_csv);
  o.print_every = absl::GetFlag(FLAGS_print_every);
  DELTASERVE_RETURN_IF_ERROR(ValidateTd3Options(o));
  if (absl::GetFlag(FLAGS_print_config)) {
    Report("%s", Td3ServerConfig(o));
    return 0;
  }
  DELTASERVE_ASSIGN_OR_RETURN(const Td3Result r, RunTd3(o));
  Report(
      "counts critic_submits=%d actor_submits=%d fetch_rounds=%d max_critic_staleness=%d "
      "max_actor_staleness=%d reconnects=%d resent_calls=%d skipped_fetch_rounds=%d\n",
      r.critic_submits, r.actor_submits, r.fetch_rounds, r.max_critic_staleness,
      r.max_actor_staleness, r.reconnects, r.resent_calls, r.skipped_fetch_rounds);
  Report(
      "TD3 (deltaserve, C++) seed %d hidden %d: average of the last %d returns %.1f after %d env "
      "steps, %.1f s wall, %.1f s CPU\n",
      o.seed, o.hidden, o.window, r.average, r.env_steps, r.seconds, r.cpu_seconds);
  return 0;
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  return deltaserve::sim::SimulatorMain(argc, argv, "td3_sim", deltaserve::sim::Run);
}
