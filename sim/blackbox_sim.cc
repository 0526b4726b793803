// blackbox_sim: trains a model through deltaserve on a cost it cannot
// differentiate (LinearTargetTask: quantised, noisy ‖y − A·x‖²), estimating
// δ = ∂c/∂y per row with SPSA (sim/algorithms/spsa.h) and submitting it.
// Actions are always Forward round trips. --server and --model:
// sim/runner_flags.h.
//
// Every --eval_every iterations it prints the true loss on a fixed test set:
//   iter=100 true_loss=0.0312 version=100
// and at the end
//   result initial_loss=1.31 final_loss=0.004 initial_distance=2.1 distance_to_optimum=0.05
// (aborted=: SubmitDelta replies ABORTED, each re-estimated at fresh outputs
// and resent). Exit code 0 only if final_loss < --loss_threshold
// (converged), 2 if not, 1 if an RPC failed for good (sim/retry.h). Each
// submission reports true_loss, its batch's true loss at the outputs it was
// estimated at, to the server's /metrics.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/sim/algorithms/spsa.h"
#include "deltaserve/sim/envs/linear_target_task.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/runner.h"
#include "deltaserve/sim/runner_flags.h"
#include "deltaserve/sim/sim_main.h"

ABSL_FLAG(uint64_t, seed, 1, "seed for inputs, SPSA directions and cost noise");
ABSL_FLAG(uint64_t, task_seed, 42, "seed of the target matrix A");
ABSL_FLAG(int, iterations, 400, "SubmitDelta calls");
ABSL_FLAG(int, batch, 32, "rows per iteration");
ABSL_FLAG(int, draws, 4, "antithetic SPSA pairs per row");
ABSL_FLAG(double, step, 0.1, "SPSA perturbation h");
ABSL_FLAG(double, noise, 0.01, "standard deviation of the cost's additive noise");
ABSL_FLAG(int, eval_every, 50, "iterations between true-loss reports");
ABSL_FLAG(double, loss_threshold, 0.05, "exit 0 only if the final true loss is below this");

namespace deltaserve::sim {
namespace {

// The true loss on a fixed test set and the distance to the optimum.
struct Quality {
  double loss = 0;
  std::optional<double> distance;
};

absl::StatusOr<double> TrueLoss(Runner& runner, const LinearTargetTask& task,
                                const model::Matrix& x_test) {
  DELTASERVE_ASSIGN_OR_RETURN(client::ForwardResult forward, runner.Fetch(x_test));
  return task.TrueLoss(x_test, forward.outputs);
}

absl::StatusOr<Quality> Measure(Runner& runner, const LinearTargetTask& task,
                                const model::Matrix& x_test) {
  Quality quality;
  DELTASERVE_ASSIGN_OR_RETURN(quality.loss, TrueLoss(runner, task, x_test));
  DELTASERVE_ASSIGN_OR_RETURN(client::Parameters params, runner.GetParameters());
  quality.distance = task.DistanceToOptimum(params.parameters);
  return quality;
}

// δ_i = ĝ_i / batch (the gradient of the batch-mean cost) for rows x at
// outputs y, from SPSA.
class SpsaDeltas {
 public:
  SpsaDeltas(const LinearTargetTask& task, float h, int draws, std::mt19937_64& rng)
      : task_(task), h_(h), draws_(draws), rng_(rng) {}

  client::DeltaSubmission At(const model::Matrix& inputs, const client::ForwardResult& y) {
    const int batch = static_cast<int>(inputs.rows());
    const int out = task_.output_dim();
    client::DeltaSubmission submission{inputs, y.outputs, model::Matrix(batch, out), y.version};
    for (int i = 0; i < batch; ++i) {
      const absl::Span<const float> x(inputs.row(i).data(), task_.input_dim());
      auto cost = [&](absl::Span<const float> yi) { return task_.NoisyCost(x, yi, rng_); };
      SpsaGradient(cost, absl::MakeConstSpan(y.outputs.row(i).data(), out), h_, draws_, rng_,
                   absl::MakeSpan(submission.deltas.row(i).data(), out));
    }
    submission.deltas /= static_cast<float>(batch);
    return submission;
  }

 private:
  const LinearTargetTask& task_;
  float h_;
  int draws_;
  std::mt19937_64& rng_;
};

absl::StatusOr<int> Run() {
  DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner,
                              Runner::Connect(RunnerOptionsFromFlags()));
  const LinearTargetTask task(runner->input_dim(), runner->output_dim(),
                              absl::GetFlag(FLAGS_task_seed), absl::GetFlag(FLAGS_noise));
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::mt19937_64 test_rng(absl::GetFlag(FLAGS_task_seed) + 1);
  const model::Matrix x_test = task.SampleInputs(256, test_rng);
  DELTASERVE_ASSIGN_OR_RETURN(const Quality initial, Measure(*runner, task, x_test));

  const int iterations = absl::GetFlag(FLAGS_iterations);
  const int eval_every = std::max(1, absl::GetFlag(FLAGS_eval_every));
  SpsaDeltas spsa(task, static_cast<float>(absl::GetFlag(FLAGS_step)), absl::GetFlag(FLAGS_draws),
                  rng);
  for (int iter = 1; iter <= iterations; ++iter) {
    const model::Matrix inputs = task.SampleInputs(absl::GetFlag(FLAGS_batch), rng);
    DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult forward, runner->Fetch(inputs));
    // No episodes here: the batch's true loss at the outputs it was sent
    // with is what a dashboard can follow (/metrics).
    const std::map<std::string, double> metrics = {
        {"true_loss", task.TrueLoss(inputs, forward.outputs)}};
    DELTASERVE_ASSIGN_OR_RETURN(
        const client::SubmitDeltaResult result,
        runner->Submit(
            forward, [&](const client::ForwardResult& y) { return spsa.At(inputs, y); }, metrics));
    if (iter % eval_every == 0 || iter == iterations) {
      DELTASERVE_ASSIGN_OR_RETURN(const double loss, TrueLoss(*runner, task, x_test));
      Report("iter=%d true_loss=%.5f version=%d\n", iter, loss, result.version);
    }
  }
  DELTASERVE_ASSIGN_OR_RETURN(const Quality final, Measure(*runner, task, x_test));
  const bool converged = final.loss < absl::GetFlag(FLAGS_loss_threshold);
  Report(
      "result initial_loss=%.5f final_loss=%.5f initial_distance=%.4f distance_to_optimum=%.4f "
      "aborted=%d converged=%d\n",
      initial.loss, final.loss, initial.distance.value_or(-1), final.distance.value_or(-1),
      runner->counts().retries.refetches, converged ? 1 : 0);
  return converged ? 0 : 2;
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  return deltaserve::sim::SimulatorMain(argc, argv, "blackbox_sim", deltaserve::sim::Run);
}
