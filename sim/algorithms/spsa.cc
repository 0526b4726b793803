#include "deltaserve/sim/algorithms/spsa.h"

#include <vector>

namespace deltaserve::sim {

void SpsaGradient(const std::function<double(absl::Span<const float>)>& cost,
                  absl::Span<const float> y, float h, int draws, std::mt19937_64& rng,
                  absl::Span<float> grad) {
  const size_t m = y.size();
  std::vector<float> sign(m), plus(m), minus(m);
  std::bernoulli_distribution coin(0.5);
  std::fill(grad.begin(), grad.end(), 0.0f);
  for (int k = 0; k < draws; ++k) {
    for (size_t i = 0; i < m; ++i) {
      sign[i] = coin(rng) ? 1.0f : -1.0f;
      plus[i] = y[i] + h * sign[i];
      minus[i] = y[i] - h * sign[i];
    }
    const double slope = (cost(plus) - cost(minus)) / (2.0 * h);
    for (size_t i = 0; i < m; ++i) grad[i] += static_cast<float>(slope * sign[i] / draws);
  }
}

}  // namespace deltaserve::sim
