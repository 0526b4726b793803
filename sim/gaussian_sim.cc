// gaussian_sim: a Gaussian policy on PointMass trained through deltaserve
// with REINFORCE, to compare the surrogate modes (docs/surrogate.md).
//
// The server's model outputs the policy mean μ(s); the client acts with
// a = μ + σ·ξ, ξ ~ N(0, 1), σ fixed (--sigma). For the loss
// l = −(1/N)·Σ_t A_t·log N(a_t; μ_t, σ²) the client sends
//
//   δ_t = ∂l/∂μ_t = −A_t·(a_t − μ_t) / (σ²·N)
//
// and reports as ỹ (--acted) the sampled action a_t ("sample"), the mean it
// used ("mean"), or nothing ("none": the server uses ỹ = y).
//
// Output: one line per --report_every episodes, then
//   result final_return=-3.41 greedy_return=-2.95 episodes_to_threshold=640 updates=187
// final_return: mean return of the last 100 (exploring) episodes;
// greedy_return: mean return of a = μ(s) on 100 fixed start states;
// episodes_to_threshold: first episode at which the mean of the last 50
// returns reached --threshold (-1 if never).
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "sim/envs/point_mass_env.h"
#include "sim/algorithms/policy_gradient.h"
#include "sim/policy_source.h"
#include "client/trainer_client.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "deltaserve address (host:port or unix:PATH)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
ABSL_FLAG(std::string, actions, "replica", "'roundtrip' or 'replica' (see cartpole_sim)");
ABSL_FLAG(uint64_t, seed, 1, "seed for start states and exploration noise");
ABSL_FLAG(int, episodes, 1500, "training episodes");
ABSL_FLAG(int, episodes_per_submit, 8, "whole episodes per SubmitDelta");
ABSL_FLAG(double, sigma, 0.5, "exploration standard deviation");
ABSL_FLAG(double, gamma, 0.99, "discount of the returns-to-go");
ABSL_FLAG(std::string, acted, "sample", "ỹ sent: 'sample' (a_t), 'mean' (μ_t) or 'none'");
ABSL_FLAG(double, threshold, -3.0, "return threshold for episodes_to_threshold");
ABSL_FLAG(int, report_every, 100, "episodes between progress lines; 0 = none");

namespace deltaserve::sim {
namespace {

// Mean return of the deterministic policy a = μ(s) from 100 fixed starts.
absl::StatusOr<double> GreedyReturn(PolicySource& policy) {
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
    RETURN_IF_ERROR(policy.Forward(states, &means).status());
    for (int i = 0; i < kStarts; ++i) total += envs[i].Step(means(i, 0));
  }
  return total / kStarts;
}

absl::Status Run() {
  const std::string model_name = absl::GetFlag(FLAGS_model);
  const std::string acted = absl::GetFlag(FLAGS_acted);
  if (acted != "sample" && acted != "mean" && acted != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--acted must be sample, mean or none, got '", acted, "'"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<client::TrainerClient> trainer,
                   client::TrainerClient::Connect(absl::GetFlag(FLAGS_server)));
  ASSIGN_OR_RETURN(deltaserve::v1::ModelInfo info, trainer->GetModelInfo(model_name));
  if (info.spec().input_dim() != PointMass::kObservationDim || info.output_dim() != 1) {
    return absl::FailedPreconditionError("PointMass needs a model with input_dim 2 and 1 output");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PolicySource> policy,
                   MakePolicySource(absl::GetFlag(FLAGS_actions), trainer, model_name));

  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const float sigma = static_cast<float>(absl::GetFlag(FLAGS_sigma));
  const int episodes = absl::GetFlag(FLAGS_episodes);
  const int per_submit = std::max(1, absl::GetFlag(FLAGS_episodes_per_submit));
  const double threshold = absl::GetFlag(FLAGS_threshold);
  const int report_every = absl::GetFlag(FLAGS_report_every);
  ReinforceOptions reinforce;
  reinforce.gamma = static_cast<float>(absl::GetFlag(FLAGS_gamma));
  reinforce.baseline = Baseline::kBatchNormalised;

  PointMass env(seed);
  std::mt19937_64 rng(seed ^ 0x5bd1e995ULL);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> states, means, actions, rewards;
  std::vector<int> episode_ends;
  uint64_t min_version = UINT64_MAX;
  std::deque<double> last100, last50;
  int episodes_to_threshold = -1, updates = 0, aborted = 0;
  model::Matrix state(1, PointMass::kObservationDim), mean;

  for (int episode = 1; episode <= episodes; ++episode) {
    PointMass::Observation obs = env.Reset();
    double episode_return = 0.0;
    while (!env.done()) {
      state(0, 0) = obs[0];
      state(0, 1) = obs[1];
      ASSIGN_OR_RETURN(const uint64_t version, policy->Forward(state, &mean));
      min_version = std::min(min_version, version);
      const float mu = mean(0, 0);
      const float action = mu + sigma * normal(rng);
      const float reward = env.Step(action);
      states.insert(states.end(), obs.begin(), obs.end());
      means.push_back(mu);
      actions.push_back(action);
      rewards.push_back(reward);
      episode_return += reward;
      obs = env.observation();
    }
    episode_ends.push_back(static_cast<int>(rewards.size()));
    for (auto* window : {&last100, &last50}) window->push_back(episode_return);
    if (last100.size() > 100) last100.pop_front();
    if (last50.size() > 50) last50.pop_front();
    const double mean50 = std::accumulate(last50.begin(), last50.end(), 0.0) / last50.size();
    if (episodes_to_threshold < 0 && last50.size() == 50 && mean50 >= threshold) {
      episodes_to_threshold = episode;
    }
    if (report_every > 0 && episode % report_every == 0) {
      std::printf("episode=%d mean_return_last50=%.3f version=%llu\n", episode, mean50,
                  static_cast<unsigned long long>(min_version));
      std::fflush(stdout);
    }
    if (static_cast<int>(episode_ends.size()) < per_submit) continue;

    // δ_t = −A_t·(a_t − μ_t) / (σ²·N)
    const int n = static_cast<int>(rewards.size());
    const std::vector<float> advantages = ComputeAdvantages(rewards, episode_ends, reinforce);
    client::DeltaSubmission submission;
    submission.inputs = model::ConstMatrixMap(states.data(), n, PointMass::kObservationDim);
    submission.deltas.resize(n, 1);
    for (int t = 0; t < n; ++t) {
      submission.deltas(t, 0) = -advantages[t] * (actions[t] - means[t]) / (sigma * sigma * n);
    }
    if (acted == "sample") submission.acted_outputs = model::ConstMatrixMap(actions.data(), n, 1);
    if (acted == "mean") submission.acted_outputs = model::ConstMatrixMap(means.data(), n, 1);
    submission.version = min_version;
    absl::StatusOr<client::SubmitDeltaResult> result = trainer->SubmitDelta(submission, model_name);
    if (result.ok()) {
      updates += result->stepped ? 1 : 0;
    } else if (absl::IsAborted(result.status())) {
      ++aborted;
    } else {
      return result.status();
    }
    states.clear();
    means.clear();
    actions.clear();
    rewards.clear();
    episode_ends.clear();
    min_version = UINT64_MAX;
  }
  ASSIGN_OR_RETURN(const double greedy, GreedyReturn(*policy));
  std::printf(
      "result final_return=%.3f greedy_return=%.3f episodes_to_threshold=%d updates=%d "
      "aborted=%d\n",
      std::accumulate(last100.begin(), last100.end(), 0.0) / last100.size(), greedy,
      episodes_to_threshold, updates, aborted);
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = deltaserve::sim::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "gaussian_sim: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
