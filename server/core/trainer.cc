#include "deltaserve/server/core/trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/model/optimizer.h"
#include "deltaserve/model/surrogate.h"
#include "deltaserve/model/validate.h"
#include "deltaserve/server/core/errors.h"
#include "deltaserve/server/core/log.h"

namespace deltaserve::server {
namespace {

absl::Span<const float> Values(const model::Matrix& m) {
  return absl::MakeConstSpan(m.data(), static_cast<size_t>(m.size()));
}

// INVALID_ARGUMENT unless `m` is [rows × cols]; `owner` explains the widths.
absl::Status CheckShape(absl::string_view what, const model::Matrix& m, int64_t rows,
                        absl::string_view rows_why, int64_t cols, absl::string_view cols_why) {
  if (m.rows() != rows) return ShapeMismatch(what, rows, "rows", rows_why, m.rows());
  if (m.cols() != cols) return ShapeMismatch(what, cols, "columns", cols_why, m.cols());
  return model::CheckFinite(what, Values(m));
}

// The series' helpers, in double with four partial sums: a loop summing
// into one double waits for each add (about 4 cycles per element; Eigen's
// dot of casts compiles to that too), which on a small model cost more than
// the rest of the step's series. The sums differ from one running sum only
// in the last bits.
template <typename F>
double Sum4(size_t n, F&& term) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += term(i);
    s1 += term(i + 1);
    s2 += term(i + 2);
    s3 += term(i + 3);
  }
  for (; i < n; ++i) s0 += term(i);
  return (s0 + s1) + (s2 + s3);
}

// unit ← unit + sum (in float, as Eigen's +=), returning |unit|² as it
// was (the unit's own gradient, before the step's earlier units join it).
double AddReturningSquaredNorm(absl::Span<float> unit, absl::Span<const float> sum) {
  DELTASERVE_DCHECK(unit.size() == sum.size());
  const float* const ud = unit.data();
  const double sq = Sum4(unit.size(), [ud](size_t i) {
    const double x = ud[i];
    return x * x;
  });
  Eigen::Map<Eigen::VectorXf>(unit.data(), static_cast<Eigen::Index>(unit.size())) +=
      Eigen::Map<const Eigen::VectorXf>(sum.data(), static_cast<Eigen::Index>(sum.size()));
  return sq;
}

// The step's work before the optimizer: before ← params, and for the noise
// scale (server/core/noise_scale.h) G·R, then R ← decay·(R + G).
double BeforeStep(absl::Span<const float> params, absl::Span<const float> grad,
                  absl::Span<float> before, absl::Span<float> r, float decay) {
  DELTASERVE_DCHECK(params.size() == grad.size() && before.size() == grad.size() &&
                    r.size() == grad.size());
  // In float (Eigen's vectorised dot): the noise scale needs no more.
  Eigen::Map<Eigen::VectorXf> sum(r.data(), static_cast<Eigen::Index>(r.size()));
  const Eigen::Map<const Eigen::VectorXf> g(grad.data(), sum.size());
  const double dot = g.dot(sum);
  sum = decay * (sum + g);
  std::copy(params.begin(), params.end(), before.begin());
  return dot;
}

// ‖a − b‖₂, in double.
double DistanceNorm(absl::Span<const float> a, absl::Span<const float> b) {
  DELTASERVE_DCHECK(a.size() == b.size());
  const float* const ad = a.data();
  const float* const bd = b.data();
  return std::sqrt(Sum4(a.size(), [ad, bd](size_t i) {
    const double d = static_cast<double>(ad[i]) - bd[i];
    return d * d;
  }));
}

}  // namespace

absl::Status ValidateTrainerOptions(const TrainerOptions& options) {
  if (options.name.empty()) return absl::InvalidArgumentError("name: expected non-empty");
  DELTASERVE_RETURN_IF_ERROR(model::ValidateMlpSpec(options.mlp));
  DELTASERVE_RETURN_IF_ERROR(model::ValidateOptimizerConfig(options.optimizer));
  DELTASERVE_RETURN_IF_ERROR(model::ValidateSurrogateConfig(options.surrogate));
  DELTASERVE_RETURN_IF_ERROR(model::ValidateInputNormalizationConfig(options.normalization));
  if (options.samples_per_step == 0) {
    return absl::InvalidArgumentError("samples_per_step: expected >= 1, got 0");
  }
  if (options.queue_capacity == 0) {
    return absl::InvalidArgumentError("queue_capacity: expected >= 1, got 0");
  }
  if (options.max_request_rows == 0) {
    return absl::InvalidArgumentError("max_request_rows: expected >= 1, got 0");
  }
  if (options.request_id_window > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("request_id_window: expected at most ",
                                                   std::numeric_limits<uint32_t>::max(), ", got ",
                                                   options.request_id_window));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(TrainerOptions options,
                                                         PublishCallback on_publish) {
  DELTASERVE_RETURN_IF_ERROR(ValidateTrainerOptions(options));
  DELTASERVE_ASSIGN_OR_RETURN(model::Mlp mlp, model::Mlp::Create(options.mlp));
  DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<model::Optimizer> optimizer,
                              model::Optimizer::Create(options.optimizer, mlp.parameter_count()));
  std::shared_ptr<const model::RunningMeanStd> statistics;
  if (options.normalization.kind == model::InputNormalizationConfig::Kind::kRunningMeanStd) {
    DELTASERVE_ASSIGN_OR_RETURN(
        model::RunningMeanStd initial,
        model::RunningMeanStd::Create(mlp.input_dim(), options.normalization));
    statistics = std::make_shared<const model::RunningMeanStd>(std::move(initial));
  }
  auto trainer =
      std::unique_ptr<Trainer>(new Trainer(std::move(options), std::move(mlp), std::move(optimizer),
                                           std::move(statistics), std::move(on_publish)));
  if (!trainer->options_.persistence.dir.empty()) DELTASERVE_RETURN_IF_ERROR(trainer->OpenState());
  // The learner state passes from this thread (restore, replay) to the learner.
  trainer->learner_owner_.Release();
  if (trainer->journal_) trainer->journal_->ReleaseLearner();
  trainer->learner_ = std::thread([t = trainer.get()] { t->LearnerLoop(); });
  return trainer;
}

Trainer::Trainer(TrainerOptions options, model::Mlp mlp,
                 std::unique_ptr<model::Optimizer> optimizer,
                 std::shared_ptr<const model::RunningMeanStd> statistics,
                 PublishCallback on_publish)
    : options_(std::move(options)),
      mlp_(std::move(mlp)),
      on_publish_(std::move(on_publish)),
      optimizer_(std::move(optimizer)),
      params_(mlp_.InitialParameters()),
      grad_(mlp_.parameter_count(), 0.0f),
      submission_grad_(mlp_.parameter_count(), 0.0f),
      statistics_(std::move(statistics)),
      pending_moments_(mlp_.input_dim()),
      step_moments_(mlp_.input_dim()),
      applied_ids_(options_.request_id_window) {
  auto initial = std::make_shared<Snapshot>();
  initial->version = 0;
  initial->parameters = params_;
  initial->optimizer_steps = 0;
  initial->learning_rate = optimizer_->learning_rate();
  initial->input_statistics = statistics_;
  latest_ = initial;
  snapshot_ = std::move(initial);
  if (ModelMetrics* metrics = options_.metrics) {
    metrics->SetVersion(version_);
    metrics->SetLearningRate(optimizer_->learning_rate());
    metrics->SetQueueDepth(0);
  }
}

Trainer::~Trainer() { Stop(); }

std::shared_ptr<const Snapshot> Trainer::snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return snapshot_;
}

absl::Status Trainer::Mirror(std::shared_ptr<const Snapshot> next) {
  if (next->parameters.size() != mlp_.parameter_count()) {
    return ShapeMismatch("parameters", mlp_.parameter_count(), "values",
                         absl::StrCat("parameter_count of model \"", name(), "\""),
                         next->parameters.size());
  }
  const bool normalizes = snapshot()->input_statistics != nullptr;
  if ((next->input_statistics != nullptr) != normalizes ||
      (normalizes && next->input_statistics->input_dim() != mlp_.input_dim())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model \"", name(), "\": expected ",
        normalizes ? absl::StrCat("input_statistics of ", mlp_.input_dim(), " columns")
                   : std::string("no input_statistics (the model does not normalise its inputs)"),
        " in the mirrored version ", next->version));
  }
  if (options_.metrics) options_.metrics->SetVersion(next->version);
  Publish(std::move(next));
  return absl::OkStatus();
}

absl::StatusOr<ForwardResult> Trainer::Forward(const model::Matrix& inputs) const {
  DELTASERVE_RETURN_IF_ERROR(ValidateForwardInputs(inputs));
  std::shared_ptr<const Snapshot> snap = snapshot();
  ForwardResult result;
  ForwardScratch scratch;
  DELTASERVE_RETURN_IF_ERROR(ForwardAt(*snap, inputs, &result.outputs, scratch));
  DELTASERVE_RETURN_IF_ERROR(CheckForwardOutputs(result.outputs));
  result.version = snap->version;
  return result;
}

absl::StatusOr<InputGradientResult> Trainer::InputGradient(const model::Matrix& inputs,
                                                           const model::Matrix& deltas) const {
  DELTASERVE_RETURN_IF_ERROR(ValidateInputGradientRequest(inputs, deltas));
  // One snapshot for both products; its parameters are immutable, so nothing
  // here touches the learner's state.
  std::shared_ptr<const Snapshot> snap = snapshot();
  const model::RunningMeanStd* statistics = snap->input_statistics.get();
  model::Matrix normalized;
  DELTASERVE_ASSIGN_OR_RETURN(const model::Matrix* const z,
                              Normalized(statistics, inputs, &normalized));
  model::Mlp::Workspace workspace;
  DELTASERVE_RETURN_IF_ERROR(mlp_.Forward(snap->parameters, *z, workspace));
  InputGradientResult result;
  result.outputs = workspace.output();
  DELTASERVE_RETURN_IF_ERROR(CheckForwardOutputs(result.outputs));
  DELTASERVE_RETURN_IF_ERROR(
      mlp_.InputGradient(snap->parameters, *z, workspace, deltas, &result.input_gradient));
  DELTASERVE_RETURN_IF_ERROR(ToInputGradient(statistics, inputs, &result.input_gradient));
  result.version = snap->version;
  return result;
}

absl::Status Trainer::ValidateInputGradientRequest(const model::Matrix& inputs,
                                                   const model::Matrix& deltas) const {
  DELTASERVE_RETURN_IF_ERROR(ValidateForwardInputs(inputs));
  return CheckShape("deltas", deltas, inputs.rows(), "one per input row", mlp_.output_dim(),
                    absl::StrCat("output_dim of model \"", name(), "\""));
}

absl::Status Trainer::ToInputGradient(const model::RunningMeanStd* statistics,
                                      const Eigen::Ref<const model::Matrix>& inputs,
                                      model::Matrix* grad) {
  DELTASERVE_DCHECK(grad->rows() == inputs.rows());
  // Without normalisation the MLP's input is X itself; with it, ∂l/∂X =
  // ∂l/∂Z / sqrt(var + ε), zero where the input was clipped (at the
  // statistics the forward pass used).
  if (statistics != nullptr) DELTASERVE_RETURN_IF_ERROR(statistics->Backward(inputs, *grad, grad));
  return model::CheckFinite(
      "input_gradient (values too large: the input gradient overflows; nothing was applied)",
      Values(*grad));
}

absl::Status Trainer::ValidateForwardInputs(const model::Matrix& inputs) const {
  if (inputs.rows() == 0) {
    return absl::InvalidArgumentError("inputs: expected at least 1 row, got 0");
  }
  DELTASERVE_RETURN_IF_ERROR(CheckRows(inputs.rows()));
  return CheckShape("inputs", inputs, inputs.rows(), "", mlp_.input_dim(),
                    absl::StrCat("input_dim of model \"", name(), "\""));
}

absl::Status Trainer::ForwardAt(const Snapshot& snapshot,
                                const Eigen::Ref<const model::Matrix>& inputs,
                                model::Matrix* outputs, ForwardScratch& scratch) const {
  if (snapshot.input_statistics == nullptr) {
    return mlp_.ForwardRowInvariant(snapshot.parameters, inputs, outputs, scratch.workspace);
  }
  // Normalisation is elementwise: row-invariant too.
  DELTASERVE_RETURN_IF_ERROR(snapshot.input_statistics->Normalize(inputs, &scratch.normalized));
  return mlp_.ForwardRowInvariant(snapshot.parameters, scratch.normalized, outputs,
                                  scratch.workspace);
}

absl::StatusOr<const model::Matrix*> Trainer::Normalized(const model::RunningMeanStd* statistics,
                                                         const model::Matrix& inputs,
                                                         model::Matrix* scratch) {
  if (statistics == nullptr) return &inputs;
  DELTASERVE_RETURN_IF_ERROR(statistics->Normalize(inputs, scratch));
  return scratch;
}

absl::Status Trainer::CheckForwardOutputs(const Eigen::Ref<const model::Matrix>& outputs) {
  // Finite inputs can still overflow (e.g. |x| near FLT_MAX).
  return model::CheckFinite(
      "outputs (inputs too large: the outputs overflow)",
      absl::MakeConstSpan(outputs.data(), static_cast<size_t>(outputs.size())));
}

absl::Status Trainer::CheckRows(int64_t rows) const {
  if (static_cast<uint64_t>(rows) <= options_.max_request_rows) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "inputs: expected at most ", options_.max_request_rows, " rows (max_request_rows of model \"",
      name(), "\"), got ", rows, "; split the batch"));
}

absl::Status Trainer::ValidateContent(const Submission& s, bool row_limit) const {
  const int64_t n = s.inputs.rows();
  if (n == 0) return absl::InvalidArgumentError("inputs: expected at least 1 row, got 0");
  if (row_limit) DELTASERVE_RETURN_IF_ERROR(CheckRows(n));
  const std::string model = absl::StrCat("model \"", name(), "\"");
  DELTASERVE_RETURN_IF_ERROR(CheckShape("inputs", s.inputs, n, "", mlp_.input_dim(),
                                        absl::StrCat("input_dim of ", model)));
  const std::string out_why = absl::StrCat("output_dim of ", model);
  DELTASERVE_RETURN_IF_ERROR(
      CheckShape("deltas", s.deltas, n, "one per input row", mlp_.output_dim(), out_why));
  if (s.acted.rows() != 0) {
    DELTASERVE_RETURN_IF_ERROR(
        CheckShape("outputs", s.acted, n, "one per input row", mlp_.output_dim(), out_why));
  }
  if (s.request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request_id: expected at most ", kMaxRequestIdBytes, " bytes, got ", s.request_id.size()));
  }
  return absl::OkStatus();
}

absl::Status Trainer::ValidateSubmission(const Submission& s) const {
  DELTASERVE_RETURN_IF_ERROR(ValidateContent(s));
  const uint64_t current = snapshot()->version;
  if (s.version > current) return FutureVersion(name(), s.version, current);
  return absl::OkStatus();
}

absl::Status Trainer::Submit(Submission submission, SubmitCallback done) {
  DELTASERVE_RETURN_IF_ERROR(ValidateSubmission(submission));
  absl::MutexLock lock(&queue_mu_);
  DELTASERVE_RETURN_IF_ERROR(Refusal());
  if (queue_.size() >= options_.queue_capacity) return QueueFull(name(), options_.queue_capacity);
  queue_.push_back(Pending{std::move(submission), std::nullopt, nullptr, std::move(done)});
  // Under queue_mu_, so concurrent submitters store depths in queue order.
  if (options_.metrics) options_.metrics->SetQueueDepth(static_cast<int64_t>(queue_.size()));
  return absl::OkStatus();
}

absl::Status Trainer::ImportParameters(std::vector<float> parameters, SubmitCallback done) {
  return ImportParameters(std::move(parameters), nullptr, std::move(done));
}

absl::Status Trainer::ImportParameters(std::vector<float> parameters,
                                       std::shared_ptr<const model::RunningMeanStd> statistics,
                                       SubmitCallback done) {
  DELTASERVE_RETURN_IF_ERROR(ValidateImport(parameters, statistics.get()));
  absl::MutexLock lock(&queue_mu_);
  DELTASERVE_RETURN_IF_ERROR(Refusal());
  if (queue_.size() >= options_.queue_capacity) return QueueFull(name(), options_.queue_capacity);
  queue_.push_back(
      Pending{Submission{}, std::move(parameters), std::move(statistics), std::move(done)});
  return absl::OkStatus();
}

absl::Status Trainer::Checkpoint(Checkpointer::Done done) {
  if (!persistent()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model \"", name(), "\" keeps no state: start the server with --state_dir to checkpoint"));
  }
  absl::MutexLock lock(&queue_mu_);
  DELTASERVE_RETURN_IF_ERROR(Refusal());
  checkpoint_requests_.push_back(std::move(done));
  return absl::OkStatus();
}

absl::Status Trainer::Refusal() const {
  if (!failed_.ok()) return failed_;
  if (stopping_) return ShuttingDown(name());
  return absl::OkStatus();
}

void Trainer::EnterFailed(const absl::Status& cause) {
  absl::Status failed;
  {
    absl::MutexLock lock(&queue_mu_);
    if (!failed_.ok()) return;
    failed_ = absl::UnavailableError(absl::StrCat(
        "model \"", name(), "\" stopped training: its journal could not be written (",
        cause.message(),
        "); nothing since the last durable commit was acknowledged; restart the server once the "
        "disk is fixed (docs/operations.md, \"When the disk fails\")"));
    failed = failed_;
  }
  if (options_.on_failed) options_.on_failed(failed);
}

void Trainer::Stop() {
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (options_.gate) options_.gate->Abandon();
  std::call_once(join_once_, [this] {
    if (learner_.joinable()) learner_.join();
    // The learner has exited: its state is ours to read.
    learner_owner_.Release();
    if (journal_) journal_->ReleaseLearner();
    if (journal_) journal_->Stop();
    if (checkpointer_) {
      checkpointer_->Stop();
      bool healthy;
      {
        absl::MutexLock lock(&queue_mu_);
        healthy = failed_.ok();
      }
      if (healthy && changed_since_checkpoint_) {
        absl::StatusOr<CheckpointInfo> written = checkpointer_->WriteNow(*CaptureState());
        if (!written.ok()) {
          LogError("model \"", name(), "\": final checkpoint failed: ", written.status().message(),
                   " (the journal still holds everything)");
        }
      }
    }
  });
}

size_t Trainer::queued() const {
  absl::MutexLock lock(&queue_mu_);
  return queue_.size();
}

bool Trainer::AwaitQueued(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&queue_mu_);
  auto reached = [this, n]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) { return queue_.size() >= n; };
  return queue_mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

Trainer::Batch Trainer::TakeBatch() {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (options_.gate) options_.gate->Pass();
  Batch batch;
  absl::Status refusal;
  {
    absl::MutexLock lock(&queue_mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
      return stopping_ || !queue_.empty() || !checkpoint_requests_.empty();
    };
    if (persistent() && changed_since_checkpoint_) {
      // Wake for the periodic checkpoint even if nothing arrives.
      queue_mu_.AwaitWithDeadline(absl::Condition(&ready),
                                  last_checkpoint_ + options_.persistence.checkpoint_every);
    } else {
      queue_mu_.Await(absl::Condition(&ready));
    }
    batch.pending.swap(queue_);
    batch.checkpoints.swap(checkpoint_requests_);
    if (options_.metrics) options_.metrics->SetQueueDepth(0);
    batch.stopping = stopping_;
    refusal = Refusal();
  }
  if (!refusal.ok()) {
    FailAll(batch.pending, refusal);  // Leaves it empty.
    for (Checkpointer::Done& done : batch.checkpoints) std::move(done)(refusal);
    batch.checkpoints.clear();
  }
  return batch;
}

void Trainer::LearnerLoop() {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  record_series_ = true;  // Restore and replay (before this) record no series.
  if (SeriesOn()) {       // Sized once: a step allocates nothing for its series.
    // A step restored in progress (replayed) has units the noise scale
    // never saw: it is left out.
    noise_partial_step_ = !grad_zero_;
    params_before_.assign(params_.size(), 0.0f);
    noise_sum_.assign(params_.size(), 0.0f);
    series_group_ = History::MakeGroup(
        name(), {"loss", "grad_norm", "grad_norm_clipped", "update_norm", "learning_rate", "rows",
                 "staleness_mean", "staleness_max", "noise_scale"});
  }
  for (Batch batch = TakeBatch(); !batch.stopping; batch = TakeBatch()) {
    std::deque<Pending>& pending = batch.pending;
    std::vector<absl::StatusOr<SubmitResult>> results(pending.size(), ShuttingDown(name()));
    bool stepped = false;
    for (size_t i = 0; i < pending.size();) {
      {
        absl::MutexLock lock(&queue_mu_);
        if (stopping_) break;  // The rest keep ShuttingDown.
      }
      size_t end = i + 1;
      if (pending[i].import) {
        results[i] =
            ApplyImport(*std::move(pending[i].import), std::move(pending[i].import_statistics));
      } else {
        end = GroupEnd(pending, i);
        ApplyLive(pending, i, end, results);
      }
      for (size_t j = i; j < end; ++j) {
        stepped = stepped || (results[j].ok() && results[j]->stepped && !results[j]->duplicate);
      }
      i = end;
    }
    std::vector<Answer> answers;
    answers.reserve(pending.size());
    for (size_t i = 0; i < pending.size(); ++i) {
      answers.push_back(Answer{std::move(pending[i].done), std::move(results[i])});
    }
    Finish(std::move(answers), stepped);
    MaybeCheckpoint(std::move(batch.checkpoints));
  }
}

void Trainer::Finish(std::vector<Answer> answers, bool stepped) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (answers.empty()) return;  // Woken only for a checkpoint.
  DELTASERVE_DCHECK(!stepped || version_ > latest_->version, "a step makes a newer version");
  std::shared_ptr<const Snapshot> snapshot = stepped ? MakeSnapshot() : nullptr;
  if (snapshot) latest_ = snapshot;
  if (!journal_) {
    Complete(absl::OkStatus(), answers, std::move(snapshot));
    return;
  }
  if (absl::Status written = journal_->Write(); !written.ok()) {
    Complete(written, answers, nullptr);
    return;
  }
  journal_->Commit([this, answers = std::move(answers),
                    snapshot = std::move(snapshot)](absl::Status durable) mutable {
    Complete(durable, answers, std::move(snapshot));
  });
}

void Trainer::Complete(const absl::Status& durable, std::vector<Answer>& answers,
                       std::shared_ptr<const Snapshot> snapshot) {
  absl::Status refusal;
  if (!durable.ok()) {
    EnterFailed(durable);
    absl::MutexLock lock(&queue_mu_);
    refusal = failed_;
  } else if (snapshot) {
    Publish(std::move(snapshot));
  }
  for (Answer& answer : answers) {
    // Rejections changed nothing: they keep their own error.
    if (!refusal.ok() && answer.result.ok()) answer.result = refusal;
    std::move(answer.done)(std::move(answer.result));
  }
}

std::shared_ptr<const Snapshot> Trainer::MakeSnapshot() const {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  auto next = std::make_shared<Snapshot>();
  next->version = version_;
  next->parameters = params_;
  next->optimizer_steps = static_cast<uint64_t>(optimizer_->step_count());
  next->learning_rate = optimizer_->learning_rate();
  next->input_statistics = statistics_;
  return next;
}

void Trainer::Publish(std::shared_ptr<const Snapshot> snapshot) {
  {
    absl::MutexLock lock(&snapshot_mu_);
    snapshot_ = snapshot;
  }
  LogDebug("model \"", name(), "\": version ", snapshot->version);
  if (on_publish_) on_publish_(std::move(snapshot));
}

absl::Status Trainer::ValidateImport(const std::vector<float>& parameters,
                                     const model::RunningMeanStd* statistics) const {
  if (parameters.size() != mlp_.parameter_count()) {
    return ShapeMismatch("parameters", mlp_.parameter_count(), "values",
                         absl::StrCat("parameter_count of model \"", name(), "\""),
                         parameters.size());
  }
  DELTASERVE_RETURN_IF_ERROR(model::CheckFinite("parameters", parameters));
  if (statistics == nullptr) return absl::OkStatus();
  if (statistics_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_statistics: model \"", name(),
        "\" does not normalise its inputs (input_normalization NONE); import without them"));
  }
  if (statistics->input_dim() != mlp_.input_dim()) {
    return ShapeMismatch("input_statistics", mlp_.input_dim(), "columns",
                         absl::StrCat("input_dim of model \"", name(), "\""),
                         statistics->input_dim());
  }
  if (statistics->clip() != options_.normalization.clip ||
      statistics->epsilon() != options_.normalization.epsilon) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_statistics: expected clip ", options_.normalization.clip,
                     " and epsilon ", options_.normalization.epsilon, " (model \"", name(),
                     "\"), got ", statistics->clip(), " and ", statistics->epsilon()));
  }
  return absl::OkStatus();
}

absl::StatusOr<SubmitResult> Trainer::ApplyImport(
    std::vector<float> parameters, std::shared_ptr<const model::RunningMeanStd> statistics) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  // Again: a journal may have been tampered with.
  DELTASERVE_RETURN_IF_ERROR(ValidateImport(parameters, statistics.get()));
  // The optimizer starts afresh, but an import is not a step: the
  // schedule's k (step_count) goes on.
  optimizer_->ResetState();
  JournalImport(parameters, statistics.get());
  params_ = std::move(parameters);
  if (statistics) statistics_ = std::move(statistics);
  ClearGrad();
  pending_moments_.Clear();
  rows_accumulated_ = 0;
  // The step in progress is dropped with G: so are its series.
  step_series_ = StepSeries();
  // The gradients before it are of other parameters: the noise scale starts
  // afresh.
  noise_scale_.Reset();
  std::fill(noise_sum_.begin(), noise_sum_.end(), 0.0f);
  noise_partial_step_ = false;
  ++version_;
  ++steps_since_checkpoint_;
  changed_since_checkpoint_ = true;
  if (options_.metrics) options_.metrics->SetVersion(version_);
  LogInfo("model \"", name(), "\": parameters imported as version ", version_,
          " (optimizer state reset)");
  return SubmitResult{version_, 0.0, 0, /*stepped=*/true};
}

absl::StatusOr<bool> Trainer::Accumulate(uint64_t rows) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  const bool series = SeriesOn();
  // G + g, built in submission_grad_ so that G stays as it was until the
  // submission is accepted (a step the optimizer refuses changes nothing).
  // While G is all zeros (nothing accumulated since the last step, import or
  // a restore of a zero G), G + g is g: no pass over G. (The one difference:
  // a −0 in g stays −0 instead of becoming +0: equal values, at most the
  // sign of a parameter that is exactly zero can differ.) With the series,
  // the same pass takes |g|² for the noise scale.
  if (!grad_zero_) {
    if (series) {
      unit_sq_norm_ = AddReturningSquaredNorm(absl::MakeSpan(submission_grad_), grad_);
    } else {
      Eigen::Map<Eigen::VectorXf> sum(submission_grad_.data(),
                                      static_cast<Eigen::Index>(submission_grad_.size()));
      sum += Eigen::Map<const Eigen::VectorXf>(grad_.data(), sum.size());
    }
  }
  // Refused here, while G is untouched, rather than by the optimizer at the
  // step: a G whose norm overflows would fail every later step. The step
  // reuses this norm.
  const double norm = model::GlobalNorm(submission_grad_);
  if (!std::isfinite(norm)) {
    return absl::InvalidArgumentError(
        "deltas: expected values whose accumulated parameter gradient has a finite norm, got an "
        "overflowing one (values too large?); nothing was applied");
  }
  if (series) {
    // The unit's g·G from |G + g|² = |G|² + 2 g·G + |g|²; the first unit of
    // a step is G + g itself.
    if (grad_zero_) {
      unit_sq_norm_ = norm * norm;
      unit_dot_ = 0.0;
    } else {
      unit_dot_ = 0.5 * (norm * norm - step_sq_norm_ - unit_sq_norm_);
    }
  }
  const uint64_t total = rows_accumulated_ + rows;
  if (total >= options_.samples_per_step) {
    step_series_.rows = total;
    DELTASERVE_RETURN_IF_ERROR(Step(absl::MakeSpan(submission_grad_), norm));
    ClearGrad();
    rows_accumulated_ = 0;
    return true;
  }
  grad_.swap(submission_grad_);  // G ← G + g.
  grad_zero_ = false;
  if (series) {
    if (!noise_partial_step_) noise_scale_.AddUnit(unit_sq_norm_, unit_dot_, unit_w_, unit_v_);
    step_sq_norm_ = norm * norm;
  }
  rows_accumulated_ = total;
  return false;
}

void Trainer::ClearGrad() {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (!grad_zero_) std::fill(grad_.begin(), grad_.end(), 0.0f);
  grad_zero_ = true;
}

absl::StatusOr<double> Trainer::Gradient(const Submission& s, float scale,
                                         model::Matrix* input_gradient) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  const bool want_input_gradient = s.return_input_gradient;
  DELTASERVE_DCHECK(!want_input_gradient || input_gradient != nullptr);
  DELTASERVE_ASSIGN_OR_RETURN(const model::Matrix* const inputs,
                              Normalized(statistics_.get(), s.inputs, &normalized_));
  DELTASERVE_RETURN_IF_ERROR(mlp_.Forward(params_, *inputs, workspace_));
  DELTASERVE_ASSIGN_OR_RETURN(
      double loss, model::Surrogate(options_.surrogate, s.objective, workspace_.output(), s.acted,
                                    s.deltas, &grad_y_));
  if (scale != 1.0f) {
    // The input gradient is of the unscaled g (trainer.h, SubmitResult).
    if (want_input_gradient) unscaled_grad_y_ = grad_y_;
    grad_y_ *= scale;
  }
  std::fill(submission_grad_.begin(), submission_grad_.end(), 0.0f);
  // Unscaled, Backward's ∂l/∂X is the input gradient: the parameter
  // gradient's products are the same with or without it.
  DELTASERVE_RETURN_IF_ERROR(
      mlp_.Backward(params_, *inputs, workspace_, grad_y_, absl::MakeSpan(submission_grad_),
                    want_input_gradient && scale == 1.0f ? input_gradient : nullptr));
  // Finite inputs can still overflow (e.g. |δ| near FLT_MAX); such a gradient
  // would poison every parameter, so it is refused before it is accumulated.
  if (!std::isfinite(loss)) {
    return absl::InvalidArgumentError(
        absl::StrCat("deltas: expected values whose surrogate loss is finite, got ", loss,
                     " (values too large?)"));
  }
  DELTASERVE_RETURN_IF_ERROR(model::CheckFinite(
      "parameter gradient of this submission (values too large?)", submission_grad_));
  if (want_input_gradient) {
    if (scale != 1.0f) {
      DELTASERVE_RETURN_IF_ERROR(
          mlp_.InputGradient(params_, *inputs, workspace_, unscaled_grad_y_, input_gradient));
    }
    DELTASERVE_RETURN_IF_ERROR(ToInputGradient(statistics_.get(), s.inputs, input_gradient));
  }
  return loss;
}

// The one place an optimizer step happens (trainer.h): per-step state
// (schedules, statistics merged per step) is updated here, after the
// optimizer accepted the step.
absl::Status Trainer::Step(absl::Span<float> grad, double norm) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  // The statistics of the new version: merged first, into a copy (readers
  // share the current ones), so that a refused step changes nothing.
  std::shared_ptr<const model::RunningMeanStd> merged;
  if (statistics_) {
    auto next = std::make_shared<model::RunningMeanStd>(*statistics_);
    DELTASERVE_RETURN_IF_ERROR(next->Merge(step_moments_));
    merged = std::move(next);
  }
  // Series: what needs G before the optimizer clips it in place, and the
  // parameters before the step, in one pass into buffers sized once.
  const bool series = SeriesOn();
  double dot_past = 0.0;
  double learning_rate = 0.0;
  if (series) {
    learning_rate = optimizer_->learning_rate();
    dot_past = BeforeStep(params_, grad, absl::MakeSpan(params_before_), absl::MakeSpan(noise_sum_),
                          static_cast<float>(noise_scale_.decay()));
  }
  absl::StatusOr<double> stepped = optimizer_->Step(absl::MakeSpan(params_), grad, norm);
  if (!stepped.ok()) {
    if (series) {  // R took this G: the estimate starts afresh.
      noise_scale_.Reset();
      std::fill(noise_sum_.begin(), noise_sum_.end(), 0.0f);
    }
    return stepped.status();
  }
  const double gradient_norm = *stepped;
  if (merged) statistics_ = std::move(merged);
  if (series) {
    step_series_.grad_norm = gradient_norm;
    // The optimizer scales G in place only if it clips (model/optimizer.h):
    // otherwise G is what `norm` was taken of.
    const bool clipped = model::Optimizer::ClipScale(options_.optimizer.clip_norm, norm) < 1.0;
    step_series_.grad_norm_clipped = clipped ? model::GlobalNorm(grad) : norm;
    step_series_.update_norm = DistanceNorm(params_, params_before_);
    step_series_.learning_rate = learning_rate;
    if (noise_partial_step_) {
      std::fill(noise_sum_.begin(), noise_sum_.end(), 0.0f);  // R took G: undone.
      noise_partial_step_ = false;
    } else {
      noise_scale_.AddUnit(unit_sq_norm_, unit_dot_, unit_w_, unit_v_);
      noise_scale_.EndStep(dot_past);
    }
    step_sq_norm_ = 0.0;
  }
  ++version_;
  ++steps_since_checkpoint_;
  if (options_.metrics) {
    options_.metrics->RecordOptimizerStep(version_, gradient_norm);
    options_.metrics->SetLearningRate(optimizer_->learning_rate());
  }
  return absl::OkStatus();
}

void Trainer::EmitStepSeries() {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  const StepSeries& s = step_series_;
  const double submissions = static_cast<double>(std::max<uint64_t>(s.submissions, 1));
  // In series_group_'s order (LearnerLoop).
  const double values[] = {
      s.loss_sum / submissions,
      s.grad_norm,
      s.grad_norm_clipped,
      s.update_norm,
      s.learning_rate,
      static_cast<double>(s.rows),
      static_cast<double>(s.staleness_sum) / submissions,
      static_cast<double>(s.staleness_max),
      noise_scale_.noise_scale_lower_bound(),  // NaN (none yet): History drops it.
  };
  // absl::ToUnixMillis(absl::Now()), without building an absl::Time.
  options_.history->RecordGroup(series_group_, absl::GetCurrentTimeNanos() / 1'000'000, values);
  step_series_ = StepSeries();
}

void Trainer::FailAll(std::deque<Pending>& pending, const absl::Status& status) {
  for (Pending& p : pending) std::move(p.done)(status);
  pending.clear();
}

}  // namespace deltaserve::server
