// cartpole_sim: one CartPole simulator process that learns a softmax policy
// through a deltaserve server with REINFORCE.
//
// Per step it gets the logits for its observation (a Forward round trip or a
// local Replica, --actions), samples an action and steps the physics; with
// --envs=K it steps K environments in lockstep with one K-row Forward. After
// --episodes_per_submit whole episodes it sends one SubmitDelta with
// X = observations, ỹ = the logits acted on, δ = ∂loss/∂logits and the oldest
// version used, and acts on without waiting for the answer: at most
// --submits_in_flight submissions unanswered at once (the next one waits for
// the oldest answer; 0 = wait for each; by default 1 with roundtrip actions,
// 0 with a replica). Every answer is still taken and
// counted, a failed one (after sim/retry.h's retries) still ends the
// simulator, and all are in before the summary line. Many of these
// processes can train one model concurrently.
// --server and --model: sim/runner_flags.h.
//
// stdout, one line per episode (machine-readable, for scripts/demo.sh):
//   episode=12 return=37 version=5 sim=3 t=0.412
// and at exit:
//   summary sim=3 episodes=300 steps=41234 submits=100 aborted=0 mean_return_last100=212.3
// (aborted: SubmitDelta replies ABORTED, each refetched and resent). Each
// submission reports episode_return and episode_length (the means of its
// episodes) to the server's /metrics. Exit
// code 0 unless an RPC failed for good (sim/retry.h says which retry).
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/sim/algorithms/episode_buffer.h"
#include "deltaserve/sim/algorithms/policy_gradient.h"
#include "deltaserve/sim/algorithms/reinforce.h"
#include "deltaserve/sim/envs/cartpole_env.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/runner.h"
#include "deltaserve/sim/runner_flags.h"
#include "deltaserve/sim/sim_main.h"

ABSL_FLAG(std::string, actions, "roundtrip",
          "'roundtrip': a Forward RPC per step; 'replica': a local Replica updated by the "
          "server's weight push");
ABSL_FLAG(uint64_t, seed, 1, "seed for the environment and the action sampling");
ABSL_FLAG(int, sim, 0, "simulator id printed on every line");
ABSL_FLAG(int, episodes, 0, "stop after this many episodes; 0 = no limit");
ABSL_FLAG(double, max_seconds, 0, "stop after this many seconds; 0 = no limit");
ABSL_FLAG(int, envs, 1,
          "environments stepped in lockstep; each step is one Forward of --envs rows");
ABSL_FLAG(int, episodes_per_submit, 2, "whole episodes per SubmitDelta");
ABSL_FLAG(int, submits_in_flight, -1,
          "SubmitDelta answers the simulator may be waiting for while it acts on (0 = wait for "
          "each before the next step; at most 32); -1 = 1 with --actions=roundtrip, 0 with "
          "replica");
ABSL_FLAG(double, gamma, 0.99, "discount of the returns-to-go");
ABSL_FLAG(std::string, baseline, "normalised", "'none', 'normalised' or 'timestep'");
ABSL_FLAG(bool, quiet, false, "print only the summary line");

namespace deltaserve::sim {
namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<Baseline> ParseBaseline(const std::string& name) {
  if (name == "none") return Baseline::kNone;
  if (name == "normalised") return Baseline::kBatchNormalised;
  if (name == "timestep") return Baseline::kTimestepMean;
  return absl::InvalidArgumentError(
      absl::StrCat("--baseline must be none, normalised or timestep, got '", name, "'"));
}

// K CartPoles stepped in lockstep, each with its unfinished episode.
class CartPoleFleet {
 public:
  CartPoleFleet(int num_envs, uint64_t seed) {
    for (int k = 0; k < num_envs; ++k) {
      envs_.emplace_back(seed * 7919 + k);
      running_.emplace_back(CartPole::kObservationDim, CartPole::kNumActions);
    }
  }

  int size() const { return static_cast<int>(envs_.size()); }

  // Row k of *observations = env k's observation ([size × 4]).
  void Observe(model::Matrix* observations) const {
    observations->resize(size(), CartPole::kObservationDim);
    for (int k = 0; k < size(); ++k) {
      const CartPole::Observation obs = envs_[k].observation();
      std::copy(obs.begin(), obs.end(), observations->row(k).data());
    }
  }

  // Samples env k's action from row k of `logits` (made by `version`) and
  // steps it; a finished episode moves into *finished and its env resets.
  // Returns the returns of the episodes that finished.
  std::vector<int> Step(const model::Matrix& observations, const model::Matrix& logits,
                        uint64_t version, std::mt19937_64& rng, EpisodeBuffer* finished) {
    std::vector<int> returns;
    for (int k = 0; k < size(); ++k) {
      const absl::Span<const float> z(logits.row(k).data(), CartPole::kNumActions);
      const int action = SampleCategorical(z, rng);
      const CartPole::StepResult step = envs_[k].Step(action);
      running_[k].Add(absl::MakeConstSpan(observations.row(k).data(), CartPole::kObservationDim), z,
                      action, step.reward, version);
      if (!step.done()) continue;
      returns.push_back(envs_[k].steps());  // reward 1 per step
      running_[k].EndEpisode();
      finished->Append(running_[k]);
      running_[k].Clear();
      envs_[k].Reset();
    }
    return returns;
  }

 private:
  std::vector<CartPole> envs_;
  std::vector<EpisodeBuffer> running_;
};

// Sends the finished episodes (δ recomputed at fresh logits after ABORTED)
// without waiting for the answer (Runner::SubmitAsync).
absl::Status SubmitEpisodes(const EpisodeBuffer& finished, const ReinforceOptions& options,
                            Runner& runner) {
  auto batch = std::make_shared<const ReinforceBatch>(MakeReinforceBatch(finished, options));
  SubmissionBuilder build = [batch](const client::ForwardResult& logits) {
    return client::DeltaSubmission{batch->inputs, logits.outputs,
                                   SoftmaxDeltas(*batch, logits.outputs), logits.version};
  };
  return runner.SubmitAsync({batch->acted, batch->version}, std::move(build),
                            EpisodeMetrics(finished));
}

absl::StatusOr<int> Run() {
  const int sim = absl::GetFlag(FLAGS_sim);
  const int max_episodes = absl::GetFlag(FLAGS_episodes);
  const double max_seconds = absl::GetFlag(FLAGS_max_seconds);
  const int episodes_per_submit = std::max(1, absl::GetFlag(FLAGS_episodes_per_submit));
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  ReinforceOptions reinforce;
  reinforce.gamma = static_cast<float>(absl::GetFlag(FLAGS_gamma));
  DELTASERVE_ASSIGN_OR_RETURN(reinforce.baseline, ParseBaseline(absl::GetFlag(FLAGS_baseline)));

  RunnerOptions options = RunnerOptionsFromFlags();
  options.actions = absl::GetFlag(FLAGS_actions);
  // A replica's weights trail the submissions; acting on while they travel
  // made REINFORCE collapse on some seeds (docs/benchmarks.md), so a replica
  // waits for each answer unless asked otherwise.
  const int submits_in_flight = absl::GetFlag(FLAGS_submits_in_flight);
  options.submits_in_flight =
      submits_in_flight >= 0 ? submits_in_flight : (options.actions == "roundtrip" ? 1 : 0);
  options.input_dim = CartPole::kObservationDim;
  options.output_dim = CartPole::kNumActions;
  options.task = "CartPole";
  DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner, Runner::Connect(std::move(options)));

  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  CartPoleFleet fleet(std::max(1, absl::GetFlag(FLAGS_envs)), seed);
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  EpisodeBuffer finished(CartPole::kObservationDim, CartPole::kNumActions);
  model::Matrix observations, logits;
  ReturnWindow last100(100);
  int episodes = 0;
  int64_t steps = 0;
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };

  while ((max_episodes == 0 || episodes < max_episodes) &&
         (max_seconds == 0 || elapsed() < max_seconds)) {
    fleet.Observe(&observations);
    DELTASERVE_ASSIGN_OR_RETURN(const uint64_t version, runner->Act(observations, &logits));
    steps += fleet.size();
    for (const int episode_return : fleet.Step(observations, logits, version, rng, &finished)) {
      ++episodes;
      last100.Add(episode_return);
      if (!quiet) {
        Report("episode=%d return=%d version=%d sim=%d t=%.3f\n", episodes, episode_return, version,
               sim, elapsed());
      }
    }
    if (finished.episodes() < episodes_per_submit) continue;
    DELTASERVE_RETURN_IF_ERROR(SubmitEpisodes(finished, reinforce, *runner));
    finished.Clear();
  }
  DELTASERVE_RETURN_IF_ERROR(runner->Drain());
  Report(
      "summary sim=%d episodes=%d steps=%d submits=%d aborted=%d mean_return_last100=%.1f "
      "seconds=%.3f\n",
      sim, episodes, steps, runner->counts().submits, runner->counts().retries.refetches,
      last100.mean(), elapsed());
  return 0;
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  return deltaserve::sim::SimulatorMain(argc, argv, "cartpole_sim", deltaserve::sim::Run);
}
