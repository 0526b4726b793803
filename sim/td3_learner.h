// TD3 on Pendulum through a deltaserve server, in C++: the algorithm of
// tools/torch_td3.py and client/python/examples/td3_pendulum.py (same
// hyperparameters, same models, same δ), with no Python in the loop
// (sim/td3_sim.cc is the binary; tests/sim/td3_learning_test.cc runs it
// against an in-process server). docs/algorithms.md, "TD3 in C++".
//
// Three models on one server (Td3ServerConfig):
//   actor  [3 → h → h → 1, ReLU, tanh]      the action is s_a·π(s), s_a = 2
//   q1, q2 [4 → h → h → 1, ReLU]           surrogate ANCHORED, reduction MEAN
// each Adam(lr), samples_per_step = the minibatch, so every SubmitDelta is one
// optimizer step. The client keeps the target networks (Polyak averages of
// the weights it fetches) and computes every forward pass it needs with the
// model core (model/mlp.h): acting, π(s), π'(s'), Q1'(s', ã), Q2'(s', ã).
//
// Per env step after the warm-up (learning_starts uniformly random actions):
//   1. act: a = clip(s_a·π(s) + N(0, (s_a·exploration_noise)²), −s_a, s_a),
//      π at the actor's newest fetched weights;
//   2. a minibatch from the replay buffer; y = r + γ·min(Q1', Q2')(s', ã)
//      with target policy smoothing (sim/algorithms/td3.h);
//   3. critics: SubmitDelta to q1 and q2 with ỹ = y, δ = 0 (the server forms
//      (Q_k(s, a) − y)/N at its current critic);
//   4. every policy_delay steps: InputGradient on q1 at (s, s_a·π(s)) with
//      δ = 1 per row; once it answers, SubmitDelta to the actor with
//      δ = −s_a·∂Q1/∂a/N (CURRENT surrogate: applied at the server's current
//      actor); then the targets move by τ towards the newest fetched weights
//      and the next GetParameters round of all three models is asked for
//      (answered on a thread of its own, taken at a later update).
// Every SubmitDelta and InputGradient goes over one Session stream without
// waiting; the loop waits only when more than in_flight steps of critic
// submissions, or more than in_flight actor steps (gradient + submission),
// are unanswered. What this changes against the in-process reference:
// docs/algorithms.md. The actor's first SubmitDelta after an episode ends
// carries its episode_return and episode_length (the server's /metrics).
//
// A trainer that becomes unreachable (restarted, rescheduled, requeued) does
// not end the run: a call answered UNAVAILABLE makes the learner wait (with
// sim/retry.h's backoff), open a new Session and send every unanswered call
// again, each SubmitDelta with the request_id it had, so the server applies
// none twice; a GetParameters round that fails so is skipped (the targets
// move towards the weights fetched before). The replay buffer, the targets
// and the episode go on. Only when the trainer stays unreachable for
// retry_for in all does the run end with the last UNAVAILABLE.
#ifndef DELTASERVE_SIM_TD3_LEARNER_H_
#define DELTASERVE_SIM_TD3_LEARNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "deltaserve/client/channel_security.h"

namespace deltaserve::sim {

struct Td3Options {
  std::string server = "127.0.0.1:50051";
  client::SecurityOptions security;
  std::string actor_model = "actor";
  std::string q1_model = "q1";
  std::string q2_model = "q2";

  int64_t steps = 20000;           // env steps
  int hidden = 64;                 // hidden width (Td3ServerConfig, the initial weights)
  int learning_starts = 1000;      // uniformly random actions, no learning, before this step
  int batch = 256;                 // minibatch rows (= the models' samples_per_step)
  double lr = 3e-4;                // Adam's learning rate (Td3ServerConfig only)
  double gamma = 0.99;             // discount
  double tau = 0.005;              // Polyak rate of the targets
  int policy_delay = 2;            // critic steps per actor step and target update
  double exploration_noise = 0.1;  // action noise std, in units of the action scale
  double target_noise = 0.2;       // target policy smoothing noise std (same units)
  double target_noise_clip = 0.5;  // its clip (same units)
  int buffer_capacity = 0;         // replay capacity; 0 = steps (the reference's)

  // Steps of critic submissions, and actor steps, left unanswered at most.
  int in_flight = 2;
  uint64_t seed = 1;
  // Replace each model's parameters with torch.nn.Linear's default
  // initialisation drawn from the seed (Admin.ImportParameters), as the
  // reference and the Python example start; false: the server's own.
  bool import_initial_weights = true;

  // How long the run waits for an unreachable trainer before it ends (see the
  // file comment), counted from the first UNAVAILABLE to the next answer;
  // 0: the first UNAVAILABLE ends it.
  absl::Duration retry_for = absl::Minutes(10);

  std::string csv;       // learning curve: episode,env_steps,wall_seconds,return,average
  int window = 10;       // returns averaged in the curve and the result
  int print_every = 10;  // episodes between progress lines; 0 = none
  // Called on the run's thread after each episode with its number (from 1);
  // the run waits for it. Null: none.
  std::function<void(int episode)> on_episode;
};

// INVALID_ARGUMENT saying which option is wrong unless steps, hidden, batch,
// policy_delay and in_flight are ≥ 1, learning_starts and buffer_capacity ≥ 0,
// γ in [0, 1], τ in (0, 1], lr > 0, the noises finite and ≥ 0, window ≥ 1.
absl::Status ValidateTd3Options(const Td3Options& options);

// The server config (ServerConfig text format) of the three models, exactly
// what `client/python/examples/td3_pendulum.py --print-config` prints for the
// same hidden, lr and batch.
std::string Td3ServerConfig(const Td3Options& options);

struct Td3Result {
  std::vector<double> returns;  // every finished episode's return, in order
  double average = 0;           // of the last `window` returns
  int64_t env_steps = 0;
  double seconds = 0;          // wall time of the loop (after connecting and importing weights)
  double cpu_seconds = 0;      // this process's CPU time over the same span
  int64_t critic_submits = 0;  // SubmitDelta calls per critic
  int64_t actor_submits = 0;
  int64_t fetch_rounds = 0;           // GetParameters rounds taken (three models each)
  uint64_t max_critic_staleness = 0;  // largest staleness a critic answer reported
  uint64_t max_actor_staleness = 0;
  int64_t reconnects = 0;            // Sessions opened again after UNAVAILABLE
  int64_t resent_calls = 0;          // calls sent again on them
  int64_t skipped_fetch_rounds = 0;  // GetParameters rounds lost to UNAVAILABLE
};

// Trains. Errors: ValidateTd3Options' (before connecting); FAILED_PRECONDITION
// naming the model if one is missing the shape TD3 on Pendulum needs or a
// critic's surrogate is not ANCHORED with MEAN reduction (nothing is
// trained then); otherwise the first failed call's status (UNAVAILABLE only
// once the trainer has been unreachable for retry_for).
absl::StatusOr<Td3Result> RunTd3(const Td3Options& options);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_TD3_LEARNER_H_
