#include "deltaserve/sim/algorithms/policy_gradient.h"

#include <algorithm>
#include <cmath>

namespace deltaserve::sim {

void Softmax(absl::Span<const float> logits, absl::Span<float> probs) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  float sum = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs[i] = std::exp(logits[i] - max_logit);
    sum += probs[i];
  }
  for (float& p : probs) p /= sum;
}

int SampleCategorical(absl::Span<const float> logits, std::mt19937_64& rng) {
  std::vector<float> probs(logits.size());
  Softmax(logits, absl::MakeSpan(probs));
  const float u = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
  float cumulative = 0.0f;
  for (size_t i = 0; i + 1 < probs.size(); ++i) {
    cumulative += probs[i];
    if (u < cumulative) return static_cast<int>(i);
  }
  return static_cast<int>(probs.size()) - 1;
}

model::Matrix SoftmaxDeltas(const ReinforceBatch& batch, const model::Matrix& logits) {
  const int n = static_cast<int>(logits.rows());
  const int num_actions = static_cast<int>(logits.cols());
  model::Matrix deltas(n, num_actions);
  // δ_t = (softmax(z_t) − onehot(a_t))·A_t / N
  for (int t = 0; t < n; ++t) {
    float* delta = deltas.row(t).data();
    Softmax(absl::MakeConstSpan(logits.row(t).data(), num_actions),
            absl::MakeSpan(delta, num_actions));
    delta[static_cast<int>(batch.actions(t, 0))] -= 1.0f;
    const float scale = batch.advantages[t] / static_cast<float>(n);
    for (int a = 0; a < num_actions; ++a) delta[a] *= scale;
  }
  return deltas;
}

PolicyGradientBatch BuildReinforce(const EpisodeBuffer& episodes, const ReinforceOptions& options) {
  ReinforceBatch reinforce = MakeReinforceBatch(episodes, options);
  PolicyGradientBatch batch;
  batch.deltas = SoftmaxDeltas(reinforce, reinforce.acted);
  batch.inputs = std::move(reinforce.inputs);
  batch.acted = std::move(reinforce.acted);
  batch.version = reinforce.version;
  return batch;
}

}  // namespace deltaserve::sim
