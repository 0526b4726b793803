#include "deltaserve/sim/algorithms/gaussian_policy.h"

namespace deltaserve::sim {

model::Matrix GaussianDeltas(const ReinforceBatch& batch, const model::Matrix& means, float sigma) {
  const int n = static_cast<int>(means.rows());
  model::Matrix deltas(n, means.cols());
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < means.cols(); ++i) {
      deltas(t, i) = -batch.advantages[t] * (batch.actions(t, i) - means(t, i)) /
                     (sigma * sigma * static_cast<float>(n));
    }
  }
  return deltas;
}

}  // namespace deltaserve::sim
