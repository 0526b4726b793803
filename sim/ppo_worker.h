// One asynchronous PPO simulator on Pendulum (sim/ppo_sim.cc runs several on
// threads; tests/sim/ppo_learning_test.cc runs them against an in-process
// server). The weights live on the server in three models:
//
//   policy   [3 → μ]   the Gaussian policy's mean network (observations in)
//   value    [3 → V]   the value network
//   log_std  [1 → ℓ]   the state-independent log-std: one identity unit fed
//                      a constant 0, so its output is its bias (0 at start,
//                      since biases start at 0), trained by the whole
//                      gradient ∂L/∂ℓ sent as the δ of one row.
//
// Each simulator loops, without waiting for the others:
//   1. Rollout: --rollout steps of its --envs Pendulums. Every step asks the
//      policy model for μ (a Forward round trip or a Replica), samples
//      a = μ + σ·ξ with σ = exp(ℓ) fetched at the rollout's start, and keeps
//      log π_old(a|s) of the μ and σ that acted (the version that acted).
//      Rewards are scaled by the running std of the discounted return
//      (sim/algorithms/ppo.h RewardScaler, per simulator).
//   2. One value Forward of every observation (plus the final observations
//      of truncated episodes and the last ones, to bootstrap); GAE(λ).
//   3. --epochs passes over the rollout in --minibatches shuffled
//      minibatches. Per minibatch: Forward μ and ℓ at the server's latest
//      versions, compute δ_μ and ∂L/∂ℓ (sim/algorithms/ppo.h) with
//      advantages normalised over the minibatch, and SubmitDelta each to its
//      model through the simulator's Sessions. The value model: if its
//      surrogate is ANCHORED (configs/ppo_pendulum.textproto), the
//      submission is ỹ = R with δ = 0 and the server computes V − R itself,
//      no Forward of V; otherwise Forward V and send δ_V. The models step
//      once per minibatch (samples_per_step = minibatch rows). Pipelined
//      (PpoOptions::pipeline, the default), the next minibatch's Forwards
//      go out right behind this one's SubmitDeltas, one wait per minibatch.
//
// Staleness: the other simulators update the models while this one collects
// and learns, so at its first minibatch the policy is already some versions
// past the ones that acted and r ≠ 1. With PiOld::kBehaviour (default) the
// ratio is taken against the acting policy, as Sample Factory's APPO does,
// and the clip bounds the total move away from it, staleness included;
// kRecompute re-evaluates π_old at the start of step 3 (r starts at 1, the
// clip bounds only this simulator's own updates, and the samples are
// treated as if the current policy had collected them). max_policy_lag
// drops a rollout whose oldest acting version is that many versions behind
// the policy when its learning starts. docs/algorithms.md discusses
// the choice and has measurements.
#ifndef DELTASERVE_SIM_PPO_WORKER_H_
#define DELTASERVE_SIM_PPO_WORKER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/client/replica.h"
#include "deltaserve/sim/algorithms/ppo.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/runner.h"

namespace deltaserve::sim {

// The connections to the three models (server, transport, security and the
// policy's `actions` kind as the caller sets them; shapes are set here).
struct PpoModels {
  RunnerOptions policy;
  RunnerOptions value;
  RunnerOptions log_std;
  // Set: every simulator acts with this one Replica of the policy (one
  // weight push per version for all of them, instead of one per simulator),
  // and policy.actions is not used for acting.
  std::shared_ptr<client::Replica> shared_replica;
};

enum class PiOld {
  kBehaviour,  // "behaviour": log π_old from the μ and σ that acted
  kRecompute,  // "recompute": from μ and σ at the start of the learning phase
};
absl::StatusOr<PiOld> ParsePiOld(const std::string& name);

struct PpoOptions {
  int envs = 1;          // Pendulums stepped in lockstep per simulator
  int rollout = 256;     // steps per environment per rollout
  int epochs = 10;       // passes over a rollout
  int minibatches = 8;   // per pass; rollout·envs must be a multiple
  double gamma = 0.95;   // discount
  double lambda = 0.95;  // GAE λ
  PpoPolicyOptions policy;
  double vf_coef = 0.5;  // c_v
  bool reward_scaling = true;
  PiOld pi_old = PiOld::kBehaviour;
  // A rollout is dropped (not learned from) if, at its first minibatch, the
  // policy model is more than this many versions past the oldest version
  // that acted in it; 0 = never. (The simulator's own epochs add
  // epochs·minibatches versions after that; they are not counted.)
  uint64_t max_policy_lag = 0;
  // Step 3 pipelined (ppo_worker.cc LearnPipelined): each minibatch's
  // Forwards are issued behind the previous one's SubmitDeltas, and the
  // client waits one round trip per minibatch. false: each call waits for
  // its answer (six round trips per minibatch, four with an ANCHORED value
  // model).
  bool pipeline = true;
  uint64_t seed = 1;
};

// INVALID_ARGUMENT saying what is wrong unless every count is >= 1,
// rollout·envs is a multiple of minibatches with >= 2 rows each, γ and λ are
// in [0, 1], clip is finite and > 0 and the coefficients are finite.
absl::Status ValidatePpoOptions(const PpoOptions& options);

// What all simulators of one run share: the env-step budget, the returns of
// finished episodes (their running average decides when the run reached its
// target), and the per-episode report lines. Thread-safe.
class PpoProgress {
 public:
  // Stops after max_env_steps (0 = no limit), max_seconds (0 = no limit), or
  // once the mean of the last `window` returns is ≥ target with the window
  // full. quiet: no per-episode lines.
  PpoProgress(int64_t max_env_steps, double max_seconds, double target, int window, bool quiet);

  bool Done() const;
  void AddSteps(int64_t steps) { env_steps_.fetch_add(steps); }
  // Records a finished episode's (unscaled) return and prints its line:
  //   episode=12 return=-1234.5 avg=-1300.2 steps=4096 version=37 sim=3 t=1.234
  void AddReturn(double episode_return, uint64_t version, int sim) ABSL_LOCKS_EXCLUDED(mu_);

  int64_t env_steps() const { return env_steps_.load(); }
  double seconds() const;
  int episodes() const ABSL_LOCKS_EXCLUDED(mu_);
  double average() const ABSL_LOCKS_EXCLUDED(mu_);  // of the last `window` returns
  // Env steps and seconds when the target was first reached; -1 if not yet.
  int64_t steps_at_target() const ABSL_LOCKS_EXCLUDED(mu_);
  double seconds_at_target() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const int64_t max_env_steps_;
  const double max_seconds_;
  const double target_;
  const bool quiet_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<int64_t> env_steps_{0};
  std::atomic<bool> reached_{false};
  mutable absl::Mutex mu_;
  ReturnWindow window_ ABSL_GUARDED_BY(mu_);
  int episodes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t steps_at_target_ ABSL_GUARDED_BY(mu_) = -1;
  double seconds_at_target_ ABSL_GUARDED_BY(mu_) = -1;
};

// One simulator's counts, for its summary line.
struct PpoWorkerCounts {
  int rollouts = 0;
  int minibatches = 0;             // learned from (three SubmitDelta each)
  int dropped_rollouts = 0;        // not learned from: max_policy_lag
  int64_t rows = 0;                // policy rows submitted
  int64_t clipped_rows = 0;        // of those, rows where the clip bound (m_i = 0)
  uint64_t max_lag = 0;            // largest policy version − oldest acting version seen
  double sum_first_ratio_dev = 0;  // Σ over rollouts of mean |r − 1| at its first minibatch
  uint64_t sum_first_lag = 0;      // Σ over rollouts of the lag at its first minibatch
  int refetches = 0;               // ABORTED replies, each refetched and resent
  int aborted_dropped = 0;         // pipelined: ABORTED replies, dropped (not resent)
};

// Runs simulator `sim` until progress.Done(); errors are ValidatePpoOptions'
// (checked before connecting), then the Runners' (sim/runner.h: a model of
// the wrong shape is FAILED_PRECONDITION naming it; sim/retry.h).
absl::StatusOr<PpoWorkerCounts> RunPpoSimulator(int sim, const PpoModels& models,
                                                const PpoOptions& options, PpoProgress& progress);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_PPO_WORKER_H_
