// The smallest deltaserve simulator (README): CartPole + REINFORCE, one
// SubmitDelta per episode, actions from a local Replica of the server's model.
#include <cstdio>
#include <random>

#include "deltaserve/client/replica.h"
#include "deltaserve/sim/algorithms/episode_buffer.h"
#include "deltaserve/sim/algorithms/policy_gradient.h"
#include "deltaserve/sim/envs/cartpole_env.h"

using namespace deltaserve;
int main(int argc, char** argv) {
  std::shared_ptr<client::TrainerClient> trainer =
      client::TrainerClient::Connect(argc > 1 ? argv[1] : "127.0.0.1:50051").value();
  auto policy = client::Replica::Create(trainer).value();  // weights pushed by the server
  sim::CartPole env(/*seed=*/1);
  std::mt19937_64 rng(1);
  for (int episode = 1; episode <= 500; ++episode) {
    sim::EpisodeBuffer buffer(4, 2);
    for (bool done = false; !done;) {
      auto obs = env.observation();
      model::Matrix x = Eigen::Map<model::Matrix>(obs.data(), 1, 4);
      client::ForwardResult y = policy->Forward(x).value();  // or trainer->Forward(x)
      int action = sim::SampleCategorical({y.outputs.data(), 2}, rng);
      sim::CartPole::StepResult step = env.Step(action);
      buffer.Add(obs, {y.outputs.data(), 2}, action, step.reward, y.version);
      done = step.done();
    }
    buffer.EndEpisode();
    const double steps = env.steps();  // reward 1 per step: the return
    std::printf("episode=%d return=%.0f\n", episode, steps);
    env.Reset();
    sim::PolicyGradientBatch b = sim::BuildReinforce(buffer, {});  // δ = ∂loss/∂logits
    client::DeltaSubmission s{b.inputs, b.acted, b.deltas, b.version};
    s.metrics = {{"episode_return", steps}, {"episode_length", steps}};  // shown on /metrics
    (void)trainer->SubmitDelta(s);
  }
}
