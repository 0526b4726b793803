// blackbox_sim: trains a model through deltaserve on a cost it cannot
// differentiate (LinearTargetTask: quantised, noisy ‖y − A·x‖²), estimating
// δ = ∂c/∂y per row with SPSA (spsa.h) and submitting it.
//
// Every --eval_every iterations it prints the true loss on a fixed test set:
//   iter=100 true_loss=0.0312 version=100
// and at the end
//   result initial_loss=1.31 final_loss=0.004 initial_distance=2.1 distance_to_optimum=0.05
// Exit code 0 only if final_loss < --loss_threshold (converged).
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "sim/envs/linear_target_task.h"
#include "sim/algorithms/spsa.h"
#include "client/trainer_client.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "deltaserve address (host:port or unix:PATH)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
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

// Mean true loss of the server's current model on x_test.
absl::StatusOr<double> Evaluate(const client::TrainerClient& trainer, const std::string& model,
                                const LinearTargetTask& task, const model::Matrix& x_test) {
  ASSIGN_OR_RETURN(client::ForwardResult forward, trainer.Forward(x_test, model));
  return task.TrueLoss(x_test, forward.outputs);
}

absl::StatusOr<std::optional<double>> Distance(const client::TrainerClient& trainer,
                                               const std::string& model,
                                               const LinearTargetTask& task) {
  ASSIGN_OR_RETURN(client::Parameters params, trainer.GetParameters(model));
  return task.DistanceToOptimum(params.parameters);
}

absl::StatusOr<bool> Run() {
  const std::string model_name = absl::GetFlag(FLAGS_model);
  ASSIGN_OR_RETURN(std::unique_ptr<client::TrainerClient> trainer,
                   client::TrainerClient::Connect(absl::GetFlag(FLAGS_server)));
  ASSIGN_OR_RETURN(deltaserve::v1::ModelInfo info, trainer->GetModelInfo(model_name));
  const LinearTargetTask task(static_cast<int>(info.spec().input_dim()),
                              static_cast<int>(info.output_dim()), absl::GetFlag(FLAGS_task_seed),
                              absl::GetFlag(FLAGS_noise));
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::mt19937_64 test_rng(absl::GetFlag(FLAGS_task_seed) + 1);
  const model::Matrix x_test = task.SampleInputs(256, test_rng);

  ASSIGN_OR_RETURN(const double initial_loss, Evaluate(*trainer, model_name, task, x_test));
  ASSIGN_OR_RETURN(const std::optional<double> initial_distance,
                   Distance(*trainer, model_name, task));
  const int batch = absl::GetFlag(FLAGS_batch);
  const int iterations = absl::GetFlag(FLAGS_iterations);
  const int eval_every = std::max(1, absl::GetFlag(FLAGS_eval_every));
  const float h = static_cast<float>(absl::GetFlag(FLAGS_step));
  const int draws = absl::GetFlag(FLAGS_draws);
  int aborted = 0;

  for (int iter = 1; iter <= iterations; ++iter) {
    client::DeltaSubmission submission;
    submission.inputs = task.SampleInputs(batch, rng);
    ASSIGN_OR_RETURN(client::ForwardResult forward,
                     trainer->Forward(submission.inputs, model_name));
    // δ_i = ĝ_i / batch: the gradient of the batch-mean cost.
    submission.deltas.resize(batch, task.output_dim());
    for (int i = 0; i < batch; ++i) {
      const absl::Span<const float> x(submission.inputs.row(i).data(), task.input_dim());
      auto cost = [&](absl::Span<const float> y) { return task.NoisyCost(x, y, rng); };
      SpsaGradient(cost, absl::MakeConstSpan(forward.outputs.row(i).data(), task.output_dim()), h,
                   draws, rng, absl::MakeSpan(submission.deltas.row(i).data(), task.output_dim()));
    }
    submission.deltas /= static_cast<float>(batch);
    submission.acted_outputs = forward.outputs;
    submission.version = forward.version;
    absl::StatusOr<client::SubmitDeltaResult> result = trainer->SubmitDelta(submission, model_name);
    if (!result.ok()) {
      if (!absl::IsAborted(result.status())) return result.status();
      ++aborted;
    }
    if (iter % eval_every == 0 || iter == iterations) {
      ASSIGN_OR_RETURN(const double loss, Evaluate(*trainer, model_name, task, x_test));
      std::printf("iter=%d true_loss=%.5f version=%llu\n", iter, loss,
                  result.ok() ? static_cast<unsigned long long>(result->version) : 0ULL);
      std::fflush(stdout);
    }
  }
  ASSIGN_OR_RETURN(const double final_loss, Evaluate(*trainer, model_name, task, x_test));
  ASSIGN_OR_RETURN(const std::optional<double> distance, Distance(*trainer, model_name, task));
  const double threshold = absl::GetFlag(FLAGS_loss_threshold);
  std::printf(
      "result initial_loss=%.5f final_loss=%.5f initial_distance=%.4f distance_to_optimum=%.4f "
      "aborted=%d converged=%d\n",
      initial_loss, final_loss, initial_distance.value_or(-1), distance.value_or(-1), aborted,
      final_loss < threshold ? 1 : 0);
  std::fflush(stdout);
  return final_loss < threshold;
}

}  // namespace
}  // namespace deltaserve::sim

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::StatusOr<bool> converged = deltaserve::sim::Run();
  if (!converged.ok()) {
    std::fprintf(stderr, "blackbox_sim: %s\n", converged.status().ToString().c_str());
    return 1;
  }
  return *converged ? 0 : 2;
}
