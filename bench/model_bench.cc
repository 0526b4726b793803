// The math core's hot path on a 64→256→256→8 MLP (tanh hidden layers,
// identity output): Forward, Backward, Forward+Backward, one Adam step, and a
// full training step
// (forward + backward + Adam) at batch 1, 32 and 256, with GFLOP/s counters.
// BM_PeakGemm is the single-core reference: a 512³ float GEMM through Eigen.
//
//   build-*/bench/deltaserve_model_bench --benchmark_min_time=2
//
// Compare with tools/torch_bench.py (tools/bench_vs_torch.sh runs both).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/model/optimizer.h"

namespace deltaserve::model {
namespace {

MlpSpec BenchSpec() {
  MlpSpec spec;
  spec.input_dim = 64;
  spec.layers = {{256, Activation::kTanh}, {256, Activation::kTanh}, {8, Activation::kIdentity}};
  spec.seed = 1;
  return spec;
}

// Multiply-adds of the dense products, ×2 FLOPs each (bias and activation
// are not counted, as usual). Backward computes ∂l/∂W for every layer and
// ∂l/∂A for every layer but the first (∂l/∂X is not requested).
double ForwardFlops(const MlpSpec& spec, int64_t batch) {
  double macs = 0;
  int fan_in = spec.input_dim;
  for (const LayerSpec& l : spec.layers) {
    macs += static_cast<double>(fan_in) * l.units;
    fan_in = l.units;
  }
  return 2 * macs * batch;
}

double BackwardFlops(const MlpSpec& spec, int64_t batch) {
  const double first = static_cast<double>(spec.input_dim) * spec.layers[0].units;
  return 2 * ForwardFlops(spec, batch) - 2 * first * batch;
}

// A model whose weights (5.4 MB) outgrow the 1 MB L2 cache: what batching
// the server's Forward rows is for.
MlpSpec LargeSpec() {
  MlpSpec spec;
  spec.input_dim = 256;
  spec.layers = {{1024, Activation::kTanh}, {1024, Activation::kTanh}, {16, Activation::kIdentity}};
  spec.seed = 1;
  return spec;
}

struct Fixture {
  explicit Fixture(int64_t batch, const MlpSpec& spec = BenchSpec())
      : mlp(*Mlp::Create(spec)),
        params(mlp.InitialParameters()),
        grad(params.size(), 0.0f),
        x(Matrix::Random(batch, mlp.input_dim())),
        dy(Matrix::Random(batch, mlp.output_dim())) {
    OptimizerConfig adam;
    adam.kind = OptimizerConfig::Kind::kAdam;
    adam.learning_rate = 1e-4f;  // Small, so parameters stay sane over many iterations.
    optimizer = *Optimizer::Create(adam, params.size());
  }
  Mlp mlp;
  std::vector<float> params;
  std::vector<float> grad;
  Matrix x;
  Matrix dy;
  std::unique_ptr<Optimizer> optimizer;
  Mlp::Workspace ws;
};

void SetFlops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Forward(benchmark::State& state) {
  Fixture f(state.range(0));
  for (auto _ : state) {
    if (!f.mlp.Forward(f.params, f.x, f.ws).ok()) state.SkipWithError("Forward failed");
    benchmark::DoNotOptimize(f.ws.output().data());
  }
  SetFlops(state, ForwardFlops(f.mlp.spec(), state.range(0)));
}

// The batch-invariant forward the server serves Forward with (one row at a
// time, bit-identical per row whatever the batch), next to BM_Forward.
void BM_ForwardRowInvariant(benchmark::State& state) {
  Fixture f(state.range(0));
  Matrix y;
  for (auto _ : state) {
    if (!f.mlp.ForwardRowInvariant(f.params, f.x, &y, f.ws).ok()) {
      state.SkipWithError("ForwardRowInvariant failed");
    }
    benchmark::DoNotOptimize(y.data());
  }
  SetFlops(state, ForwardFlops(f.mlp.spec(), state.range(0)));
}

// The server's two ways of serving range(0) one-row Forward calls on the
// large model: each call alone (max_batch_rows 1), or all rows as one
// ForwardRowInvariant (the batcher). Same bits either way; "rows/s" compares.
void BM_RowInvariantLargeOneByOne(benchmark::State& state) {
  Fixture f(state.range(0), LargeSpec());
  Matrix y;
  for (auto _ : state) {
    for (Eigen::Index r = 0; r < f.x.rows(); ++r) {
      if (!f.mlp.ForwardRowInvariant(f.params, f.x.middleRows(r, 1), &y, f.ws).ok()) {
        state.SkipWithError("ForwardRowInvariant failed");
      }
      benchmark::DoNotOptimize(y.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_RowInvariantLargeBatched(benchmark::State& state) {
  Fixture f(state.range(0), LargeSpec());
  Matrix y;
  for (auto _ : state) {
    if (!f.mlp.ForwardRowInvariant(f.params, f.x, &y, f.ws).ok()) {
      state.SkipWithError("ForwardRowInvariant failed");
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_Backward(benchmark::State& state) {
  Fixture f(state.range(0));
  if (!f.mlp.Forward(f.params, f.x, f.ws).ok()) state.SkipWithError("Forward failed");
  for (auto _ : state) {
    if (!f.mlp.Backward(f.params, f.x, f.ws, f.dy, absl::MakeSpan(f.grad)).ok()) {
      state.SkipWithError("Backward failed");
    }
    benchmark::ClobberMemory();
  }
  SetFlops(state, BackwardFlops(f.mlp.spec(), state.range(0)));
}

// Forward + Backward with the gradient zeroed first (torch's zero_grad,
// forward, backward), for a like-for-like comparison.
void BM_ForwardBackward(benchmark::State& state) {
  Fixture f(state.range(0));
  for (auto _ : state) {
    std::fill(f.grad.begin(), f.grad.end(), 0.0f);
    if (!f.mlp.Forward(f.params, f.x, f.ws).ok() ||
        !f.mlp.Backward(f.params, f.x, f.ws, f.dy, absl::MakeSpan(f.grad)).ok()) {
      state.SkipWithError("forward/backward failed");
    }
    benchmark::ClobberMemory();
  }
  SetFlops(state, ForwardFlops(f.mlp.spec(), state.range(0)) +
                      BackwardFlops(f.mlp.spec(), state.range(0)));
}

void BM_AdamStep(benchmark::State& state) {
  Fixture f(1);
  std::fill(f.grad.begin(), f.grad.end(), 1e-3f);
  for (auto _ : state) {
    if (!f.optimizer->Step(absl::MakeSpan(f.params), absl::MakeSpan(f.grad)).ok()) {
      state.SkipWithError("Step failed");
    }
    benchmark::ClobberMemory();
  }
  state.counters["params"] = static_cast<double>(f.params.size());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(f.params.size()));
}

// One learner step as the server runs it: zero the gradient, forward,
// backward of a given ∂l/∂y, Adam step.
void BM_TrainStep(benchmark::State& state) {
  Fixture f(state.range(0));
  for (auto _ : state) {
    std::fill(f.grad.begin(), f.grad.end(), 0.0f);
    if (!f.mlp.Forward(f.params, f.x, f.ws).ok() ||
        !f.mlp.Backward(f.params, f.x, f.ws, f.dy, absl::MakeSpan(f.grad)).ok() ||
        !f.optimizer->Step(absl::MakeSpan(f.params), absl::MakeSpan(f.grad)).ok()) {
      state.SkipWithError("train step failed");
    }
    benchmark::ClobberMemory();
  }
  SetFlops(state, ForwardFlops(f.mlp.spec(), state.range(0)) +
                      BackwardFlops(f.mlp.spec(), state.range(0)));
}

void BM_PeakGemm(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n);
  const Eigen::MatrixXf b = Eigen::MatrixXf::Random(n, n);
  Eigen::MatrixXf c(n, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  SetFlops(state, 2.0 * n * n * n);
}

BENCHMARK(BM_Forward)->Arg(1)->Arg(32)->Arg(256);
BENCHMARK(BM_ForwardRowInvariant)->Arg(1)->Arg(32)->Arg(256);
BENCHMARK(BM_RowInvariantLargeOneByOne)->Arg(64);
BENCHMARK(BM_RowInvariantLargeBatched)->Arg(1)->Arg(4)->Arg(16)->Arg(64);
BENCHMARK(BM_Backward)->Arg(1)->Arg(32)->Arg(256);
BENCHMARK(BM_ForwardBackward)->Arg(1)->Arg(32)->Arg(256);
BENCHMARK(BM_AdamStep);
BENCHMARK(BM_TrainStep)->Arg(1)->Arg(32)->Arg(256);
BENCHMARK(BM_PeakGemm)->Arg(512);

}  // namespace
}  // namespace deltaserve::model

BENCHMARK_MAIN();
