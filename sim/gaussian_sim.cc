// gaussian_sim: a Gaussian policy on PointMass trained through deltaserve
// with REINFORCE, to compare the surrogate modes (docs/surrogate.md).
//
// The server's model outputs the policy mean μ(s); the client acts with
// a = μ + σ·ξ, ξ ~ N(0, 1), σ fixed (--sigma), and sends
// δ_t = ∂l/∂μ_t (sim/algorithms/gaussian_policy.h). It reports as ỹ
// (--acted) the sampled action a_t ("sample"), the mean it used ("mean"),
// or nothing ("none": the server uses ỹ = y). --server and --model:
// sim/runner_flags.h.
//
// Output: one line per --report_every episodes, then
//   result final_return=-3.41 greedy_return=-2.95 episodes_to_threshold=640 updates=187
// final_return: mean return of the last 100 (exploring) episodes;
// greedy_return: mean return of a = μ(s) on 100 fixed start states;
// episodes_to_threshold: first episode at which the mean of the last 50
// returns reached --threshold (-1 if never); updates: optimizer steps;
// aborted: SubmitDelta replies ABORTED (each refetched and resent). Each
// submission reports episode_return and episode_length (the means of its
// episodes) to the server's /metrics.
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/sim/algorithms/episode_buffer.h"
#include "deltaserve/sim/algorithms/gaussian_policy.h"
#include "deltaserve/sim/algorithms/reinforce.h"
#include "deltaserve/sim/envs/point_mass_env.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/runner.h"
#include "deltaserve/sim/runner_flags.h"
#include "deltaserve/sim/sim_main.h"

ABSL_FLAG(std::string, actions, "replica", "'roundtrip' or 'replica' (see cartpole_sim)");
ABSL_FLAG(uint64_t, seed, 1, "seed for start states and exploration noise");
ABSL_FLAG(int, episodes, 1500, "training episodes");
ABSL_FLAG(int, episodes_per_submit, 8, "whole episodes per SubmitDelta");
ABSL_FLAG(double, sigma, 0.5, "exploration standard deviation");
ABSL_FLAG(double, gamma, 0.99, "discount of the returns-to-go");
ABSL_FLAG(std::string, acted, "sample",
          "acted outputs sent: 'sample' (a_t), 'mean' (mu_t) or 'none'");
ABSL_FLAG(double, threshold, -3.0, "return threshold for episodes_to_threshold");
ABSL_FLAG(int, report_every, 100, "episodes between progress lines; 0 = none");

namespace deltaserve::sim {
namespace {

enum class Acted { kSample, kMean, kNone };

absl::StatusOr<Acted> ParseActed(const std::string& name) {
  if (name == "sample") return Acted::kSample;
  if (name == "mean") return Acted::kMean;
  if (name == "none") return Acted::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("--acted must be sample, mean or none, got '", name, "'"));
}

// Mean return of the deterministic policy a = μ(s) from 100 fixed starts.
absl::StatusOr<double> GreedyReturn(Runner& runner) {
  constexpr int kStarts = 100;
  std::vector<PointMass> envs;
  for (int i = 0; i < kStarts; ++i) envs.emplace_back(/*seed=*/100000 + i);
  model::Matrix states(kStarts, PointMass::kObservationDim), means;
  double total = 0.0;
  for (int t = 0; t < PointMass::kHorizon; ++t) {
    for (int i = 0; i < kStarts; ++i) {
      const PointMass::Observation obs = envs[i].observation();
      states(i, 0) = obs[0];
      states(i, 1) = obs[1];
    }
    DELTASERVE_RETURN_IF_ERROR(runner.Act(states, &means).status());
    for (int i = 0; i < kStarts; ++i) total += envs[i].Step(means(i, 0));
  }
  return total / kStarts;
}

// a = μ + σ·ξ, ξ ~ N(0, 1), one draw sequence for the whole run.
class Exploration {
 public:
  Exploration(float sigma, uint64_t seed) : sigma_(sigma), rng_(seed) {}
  float Act(float mu) { return mu + sigma_ * normal_(rng_); }

 private:
  float sigma_;
  std::mt19937_64 rng_;
  std::normal_distribution<float> normal_{0.0f, 1.0f};
};

// Plays one episode into *buffer (closed); returns its return.
absl::StatusOr<double> PlayEpisode(PointMass& env, Exploration& exploration, Runner& runner,
                                   EpisodeBuffer* buffer) {
  model::Matrix state(1, PointMass::kObservationDim), mean;
  PointMass::Observation obs = env.Reset();
  double episode_return = 0.0;
  while (!env.done()) {
    state(0, 0) = obs[0];
    state(0, 1) = obs[1];
    DELTASERVE_ASSIGN_OR_RETURN(const uint64_t version, runner.Act(state, &mean));
    const float mu = mean(0, 0);
    const float action = exploration.Act(mu);
    const float reward = env.Step(action);
    buffer->Add(obs, {&mu, 1}, {&action, 1}, reward, version);
    episode_return += reward;
    obs = env.observation();
  }
  buffer->EndEpisode();
  return episode_return;
}

// Submits the buffered episodes (δ recomputed at fresh means after ABORTED).
absl::Status SubmitEpisodes(const EpisodeBuffer& episodes, float sigma, Acted acted,
                            const ReinforceOptions& options, Runner& runner) {
  const ReinforceBatch batch = MakeReinforceBatch(episodes, options);
  const SubmissionBuilder build = [&](const client::ForwardResult& means) {
    std::optional<model::Matrix> acted_outputs;
    if (acted == Acted::kSample) acted_outputs = batch.actions;
    if (acted == Acted::kMean) acted_outputs = means.outputs;
    return client::DeltaSubmission{batch.inputs, std::move(acted_outputs),
                                   GaussianDeltas(batch, means.outputs, sigma), means.version};
  };
  return runner.Submit({batch.acted, batch.version}, build, EpisodeMetrics(episodes)).status();
}

absl::StatusOr<int> Run() {
  DELTASERVE_ASSIGN_OR_RETURN(const Acted acted, ParseActed(absl::GetFlag(FLAGS_acted)));
  RunnerOptions options = RunnerOptionsFromFlags();
  options.actions = absl::GetFlag(FLAGS_actions);
  options.input_dim = PointMass::kObservationDim;
  options.output_dim = 1;
  options.task = "PointMass";
  DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner, Runner::Connect(std::move(options)));

  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const float sigma = static_cast<float>(absl::GetFlag(FLAGS_sigma));
  const int per_submit = std::max(1, absl::GetFlag(FLAGS_episodes_per_submit));
  const double threshold = absl::GetFlag(FLAGS_threshold);
  const int report_every = absl::GetFlag(FLAGS_report_every);
  ReinforceOptions reinforce;
  reinforce.gamma = static_cast<float>(absl::GetFlag(FLAGS_gamma));
  reinforce.baseline = Baseline::kBatchNormalised;

  PointMass env(seed);
  Exploration exploration(sigma, seed ^ 0x5bd1e995ULL);
  EpisodeBuffer buffer(PointMass::kObservationDim, /*output_dim=*/1, /*action_dim=*/1);
  ReturnWindow last100(100), last50(50);
  int episodes_to_threshold = -1;
  for (int episode = 1; episode <= absl::GetFlag(FLAGS_episodes); ++episode) {
    DELTASERVE_ASSIGN_OR_RETURN(const double episode_return,
                                PlayEpisode(env, exploration, *runner, &buffer));
    last100.Add(episode_return);
    last50.Add(episode_return);
    if (episodes_to_threshold < 0 && last50.full() && last50.mean() >= threshold) {
      episodes_to_threshold = episode;
    }
    if (report_every > 0 && episode % report_every == 0) {
      Report("episode=%d mean_return_last50=%.3f version=%d\n", episode, last50.mean(),
             buffer.min_version());
    }
    if (buffer.episodes() < per_submit) continue;
    DELTASERVE_RETURN_IF_ERROR(SubmitEpisodes(buffer, sigma, acted, reinforce, *runner));
    buffer.Clear();
  }
  DELTASERVE_ASSIGN_OR_RETURN(const double greedy, GreedyReturn(*runner));
  Report(
      "result final_return=%.3f greedy_return=%.3f episodes_to_threshold=%d updates=%d "
      "aborted=%d\n",
      last100.mean(), greedy, episodes_to_threshold, runner->counts().steps,
      runner->counts().retries.refetches);
  return 0;
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  return deltaserve::sim::SimulatorMain(argc, argv, "gaussian_sim", deltaserve::sim::Run);
}
