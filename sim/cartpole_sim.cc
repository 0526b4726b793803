// cartpole_sim: one CartPole simulator process that learns a softmax policy
// through a deltaserve server with REINFORCE.
//
// Per step it gets the logits for its observation (a Forward round trip or a
// local Replica, --actions), samples an action and steps the physics; with
// --envs=K it steps K environments in lockstep with one K-row Forward. After
// --episodes_per_submit whole episodes it sends one SubmitDelta with
// X = observations, ỹ = the logits acted on, δ = ∂loss/∂logits and the oldest
// version used. Many of these processes can train one model concurrently.
//
// stdout, one line per episode (machine-readable, for scripts/demo.sh):
//   episode=12 return=37 version=5 sim=3 t=0.412
// and at exit:
//   summary sim=3 episodes=300 steps=41234 submits=100 aborted=0 mean_return_last100=212.3
// Exit code 0 unless an RPC failed with something other than ABORTED or
// RESOURCE_EXHAUSTED (those drop the batch and continue).
#include <chrono>
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
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "sim/envs/cartpole_env.h"
#include "sim/algorithms/policy_gradient.h"
#include "sim/policy_source.h"
#include "client/trainer_client.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "deltaserve address (host:port or unix:PATH)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
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

absl::Status Run() {
  const int sim = absl::GetFlag(FLAGS_sim);
  const std::string model_name = absl::GetFlag(FLAGS_model);
  const int max_episodes = absl::GetFlag(FLAGS_episodes);
  const double max_seconds = absl::GetFlag(FLAGS_max_seconds);
  const int episodes_per_submit = std::max(1, absl::GetFlag(FLAGS_episodes_per_submit));
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  ReinforceOptions reinforce;
  reinforce.gamma = static_cast<float>(absl::GetFlag(FLAGS_gamma));
  ASSIGN_OR_RETURN(reinforce.baseline, ParseBaseline(absl::GetFlag(FLAGS_baseline)));

  ASSIGN_OR_RETURN(std::shared_ptr<client::TrainerClient> trainer,
                   client::TrainerClient::Connect(absl::GetFlag(FLAGS_server)));
  ASSIGN_OR_RETURN(deltaserve::v1::ModelInfo info, trainer->GetModelInfo(model_name));
  if (info.spec().input_dim() != CartPole::kObservationDim ||
      info.output_dim() != CartPole::kNumActions) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CartPole needs a model with input_dim 4 and 2 outputs; model '", info.spec().name(),
        "' has input_dim ", info.spec().input_dim(), " and ", info.output_dim(), " outputs"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PolicySource> policy,
                   MakePolicySource(absl::GetFlag(FLAGS_actions), trainer, model_name));

  // K environments stepped in lockstep: one Forward of K rows per step.
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int num_envs = std::max(1, absl::GetFlag(FLAGS_envs));
  std::vector<CartPole> envs;
  std::vector<EpisodeBuffer> running;  // the unfinished episode of each env
  for (int k = 0; k < num_envs; ++k) {
    envs.emplace_back(seed * 7919 + k);
    running.emplace_back(CartPole::kObservationDim, CartPole::kNumActions);
  }
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  EpisodeBuffer finished(CartPole::kObservationDim, CartPole::kNumActions);
  model::Matrix observations(num_envs, CartPole::kObservationDim);
  model::Matrix logits;
  std::deque<int> last_returns;
  int episodes = 0, submits = 0, aborted = 0;
  int64_t steps = 0;
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };

  while ((max_episodes == 0 || episodes < max_episodes) &&
         (max_seconds == 0 || elapsed() < max_seconds)) {
    for (int k = 0; k < num_envs; ++k) {
      const CartPole::Observation obs = envs[k].observation();
      std::copy(obs.begin(), obs.end(), observations.row(k).data());
    }
    ASSIGN_OR_RETURN(const uint64_t version, policy->Forward(observations, &logits));
    for (int k = 0; k < num_envs; ++k) {
      const absl::Span<const float> z(logits.row(k).data(), CartPole::kNumActions);
      const int action = SampleCategorical(z, rng);
      const CartPole::StepResult step = envs[k].Step(action);
      running[k].Add(absl::MakeConstSpan(observations.row(k).data(), CartPole::kObservationDim), z,
                     action, step.reward, version);
      ++steps;
      if (!step.done()) continue;
      const int episode_return = envs[k].steps();  // reward 1 per step
      running[k].EndEpisode();
      finished.Append(running[k]);
      running[k].Clear();
      envs[k].Reset();
      ++episodes;
      last_returns.push_back(episode_return);
      if (last_returns.size() > 100) last_returns.pop_front();
      if (!quiet) {
        std::printf("episode=%d return=%d version=%llu sim=%d t=%.3f\n", episodes, episode_return,
                    static_cast<unsigned long long>(version), sim, elapsed());
        std::fflush(stdout);
      }
    }

    if (finished.episodes() < episodes_per_submit) continue;
    const PolicyGradientBatch batch = finished.BuildReinforce(reinforce);
    finished.Clear();
    client::DeltaSubmission submission;
    submission.inputs = batch.inputs;
    submission.acted_outputs = batch.acted;
    submission.deltas = batch.deltas;
    submission.version = batch.version;
    absl::StatusOr<client::SubmitDeltaResult> result = trainer->SubmitDelta(submission, model_name);
    ++submits;
    if (!result.ok()) {
      if (!absl::IsAborted(result.status()) && !absl::IsResourceExhausted(result.status())) {
        return result.status();
      }
      ++aborted;  // too stale or queue full: drop this batch and carry on
    }
  }
  const double mean_last =
      last_returns.empty()
          ? 0.0
          : std::accumulate(last_returns.begin(), last_returns.end(), 0.0) / last_returns.size();
  std::printf(
      "summary sim=%d episodes=%d steps=%lld submits=%d aborted=%d mean_return_last100=%.1f "
      "seconds=%.3f\n",
      sim, episodes, static_cast<long long>(steps), submits, aborted, mean_last, elapsed());
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  // Debian's Abseil keeps absl::Mutex's deadlock detector on (no NDEBUG); it
  // costs every gRPC call. See server/main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = deltaserve::sim::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "cartpole_sim: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
