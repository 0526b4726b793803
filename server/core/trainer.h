// Trainer: one model's parameters, its learner thread and its submission queue.
//
// Readers call Forward()/snapshot() and never wait for the learner: they copy
// a std::shared_ptr<const Snapshot> under a mutex held only for that copy.
// Writers call Submit(): the submission is validated at once (shapes,
// finiteness, version) and queued; the learner thread — the only owner of the
// working parameters, the gradient accumulator and the optimizer state —
// applies queued submissions in arrival order:
//
//   0. A request_id among the last request_id_window applied ones: the
//      original SubmitResult, with duplicate = true; nothing is applied.
//   1. staleness s = version − submission.version; s > max_staleness (when
//      max_staleness > 0; 0 = no limit) → ABORTED (nothing changes).
//   2. y = f(X; Θ) at the current parameters (and, with input
//      normalisation, f(X) = mlp(normalize(X)) at the current statistics); l_s and ∂l_s/∂y from the
//      surrogate (model/surrogate.h); backprop to g = ∂l_s/∂Θ, scaled by
//      1/(1+s) if staleness_scaled_lr; a non-finite g → INVALID_ARGUMENT
//      (nothing changes).
//   3. G += g; rows += n (with input normalisation, the pending moments M
//      take X's rows too). If rows ≥ samples_per_step: optimizer step on G,
//      the statistics merge M once, G = 0, rows = 0, M = empty, version += 1,
//      publish a new Snapshot (and call on_publish). A step the optimizer refuses fails the
//      submission and leaves G, rows and the parameters as they were before it.
//   4. The submission's callback gets {version, l_s, s, stepped}.
//
// Answers go out per batch (what the learner took from the queue at once),
// after the whole batch is applied: one new Snapshot for the batch if it
// stepped (published, and on_publish called, before the callbacks run).
//
// With TrainerOptions::persistence (docs/operations.md), every applied entry
// (submission or import) is journaled in order, and the batch's snapshot and
// callbacks wait until the journal is durable (JournalWriter: group commit),
// so nothing a reader or a submitter has seen is lost by a crash. Every
// checkpoint_every_steps steps or checkpoint_every (if changed), on
// Checkpoint() and at Stop(), the learner copies its state — parameters,
// optimizer state, accumulated gradient and rows, version, request_id window
// — and a Checkpointer writes it on its own thread. Create() restores the
// newest valid checkpoint and replays the journal after it, bit-exactly.
// A journal write or fsync error stops the model: the affected submissions
// and every later one fail with UNAVAILABLE, readers keep the last durable
// snapshot, and a restart recovers from disk.
//
// With TrainerOptions::metrics set, the Trainer records what only it sees —
// applied submissions (rows, staleness, l_s, and the metrics the client
// reported with them), optimizer steps (version, gradient norm before
// clipping) and the queue depth — each before the submission's callback
// runs. A duplicate or refused submission's reported metrics are not kept. Rejections are the
// caller's to count (it sees every error, from Submit and from the callback).
//
// The Trainer knows nothing of gRPC or protobuf.
#ifndef DELTASERVE_SERVER_CORE_TRAINER_H_
#define DELTASERVE_SERVER_CORE_TRAINER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "deltaserve/base/check.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/model/optimizer.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/proto/config_defaults.h"
#include "deltaserve/server/core/checkpointer.h"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/journal_writer.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/noise_scale.h"
#include "deltaserve/server/core/request_id_window.h"
#include "deltaserve/server/core/snapshot.h"
#include "deltaserve/server/persist/file_system.h"
#include "deltaserve/server/persist/model_store.h"
#include "deltaserve/v1/state.pb.h"

namespace deltaserve::server {

// A seam between the learner and its queue, for tests and tools that need to
// hold the learner (e.g. to fill the queue deterministically). The learner
// calls Pass() before it takes each batch and takes nothing until Pass()
// returns; submissions queue up meanwhile. Trainer::Stop() marks the trainer
// stopping first and then calls Abandon(), after which Pass() must return at
// once: what is still queued then fails with UNAVAILABLE.
class LearnerGate {
 public:
  virtual ~LearnerGate() = default;
  virtual void Pass() = 0;
  virtual void Abandon() = 0;
};

// Where and how a Trainer keeps its state. The field initialisers are the
// config's defaults (proto/config_defaults.h).
struct PersistenceOptions {
  std::string dir;                    // This model's directory; empty: nothing is kept.
  persist::FileSystem* fs = nullptr;  // Null: persist::FileSystem::Default().
  Durability durability = Durability::kCommit;
  absl::Duration sync_interval =
      absl::Milliseconds(wire::kDefaultSyncIntervalMs);  // kInterval only.
  uint64_t checkpoint_every_steps = wire::kDefaultCheckpointEverySteps;
  absl::Duration checkpoint_every = absl::Seconds(wire::kDefaultCheckpointEverySeconds);
  uint32_t keep_checkpoints = wire::kDefaultKeepCheckpoints;
  // Written into checkpoints; a checkpoint whose network differs refuses to
  // restore (FAILED_PRECONDITION saying what differs).
  deltaserve::v1::ModelSpec spec;
};

// Everything a Trainer needs, in core types. The field initialisers are the
// config's defaults (proto/config_defaults.h), where it has one.
struct TrainerOptions {
  std::string name;  // For messages; non-empty.
  model::MlpSpec mlp;
  model::OptimizerConfig optimizer;
  model::SurrogateConfig surrogate;
  // kNone: inputs reach the first layer as they are. kRunningMeanStd: the
  // learner keeps running statistics (model/normalization.h), merged once
  // per optimizer step, and every forward pass normalises with them.
  model::InputNormalizationConfig normalization;
  uint32_t samples_per_step = wire::kDefaultSamplesPerStep;  // Rows per optimizer step; ≥ 1.
  uint64_t max_staleness = 0;  // More versions behind → ABORTED; 0 = no limit.
  bool staleness_scaled_lr = false;
  size_t queue_capacity = wire::kDefaultQueueCapacity;  // Submissions waiting; ≥ 1.
  // Rows one Forward or one submission may carry; more → RESOURCE_EXHAUSTED.
  // Bounds the memory a request costs (docs/reliability.md).
  size_t max_request_rows = wire::kDefaultMaxRequestRows;
  // Applied request_ids remembered for deduplication (the most recent ones).
  size_t request_id_window = 10000;
  // Optional (null: record nothing). Must outlive the Trainer.
  ModelMetrics* metrics = nullptr;
  // Optional (null: no series). Must outlive the Trainer. After each live
  // optimizer step (not replayed ones) the learner records the step's series
  // under `name` with one History::RecordMany: loss, grad_norm,
  // grad_norm_clipped, update_norm, learning_rate, rows, staleness_mean,
  // staleness_max, noise_scale (a lower bound on the gradient noise scale,
  // server/core/noise_scale.h; docs/operations.md, "Metrics history").
  History* history = nullptr;
  // Optional seam (see LearnerGate). Null: the learner never waits.
  std::shared_ptr<LearnerGate> gate;
  PersistenceOptions persistence;
  // Optional: called once when the model stops training because its journal
  // failed (the status says why), from the learner or the journal's sync
  // thread, with no lock held. Must not block.
  std::function<void(const absl::Status&)> on_failed;
};

// INVALID_ARGUMENT naming the field unless `options` can make a Trainer:
// non-empty name, valid network, optimizer and surrogate (model/spec.h),
// samples_per_step ≥ 1, queue_capacity ≥ 1.
absl::Status ValidateTrainerOptions(const TrainerOptions& options);

// One client submission (X, ỹ, δ) in core types.
struct Submission {
  model::Matrix inputs;  // X [n × input_dim], n ≥ 1.
  model::Matrix acted;   // ỹ [n × output_dim], or 0 rows: ỹ = y.
  model::Matrix deltas;  // δ [n × output_dim].
  uint64_t version = 0;  // Version that produced ỹ.
  model::Objective objective = model::Objective::kMinimize;
  // Client-chosen id; empty: never deduplicated. At most kMaxRequestIdBytes.
  std::string request_id;
  // What the client reported with it (SubmitDeltaRequest.metrics), unchecked:
  // recorded by Applied (ModelMetrics::RecordClientMetrics checks the
  // rules), never journaled — observability, not state, so a replayed
  // submission has none.
  std::vector<ClientMetric> metrics;
  // SubmitResult::input_gradient is wanted. False: nothing extra is computed.
  bool return_input_gradient = false;
};

inline constexpr size_t kMaxRequestIdBytes = 128;

struct SubmitResult {
  uint64_t version = 0;  // Model version once applied (after the step, if any).
  double surrogate_loss = 0.0;
  uint64_t staleness = 0;
  bool stepped = false;  // This submission completed an optimizer step.
  // request_id had been applied before: this is that submission's result.
  bool duplicate = false;
  // Only when the submission set return_input_gradient (else 0 x 0):
  // gᵀ·∂y/∂X [n × input_dim], g = ∂l_s/∂y of the surrogate (objective sign,
  // delta_scale, reduction and mode included; NOT the staleness scale), at
  // the parameters its gradient was computed with. Remembered with the
  // request_id, so a duplicate gets the original's (docs/model.md, "Input
  // gradients").
  model::Matrix input_gradient{};
};

// Trainer::InputGradient's answer: one snapshot's.
struct InputGradientResult {
  model::Matrix input_gradient;  // δᵀ·∂y/∂X [n × input_dim]
  model::Matrix outputs;         // y = f(X) [n × output_dim]
  uint64_t version = 0;          // Version both were computed at.
};

struct ForwardResult {
  model::Matrix outputs;  // [n × output_dim]
  uint64_t version = 0;   // Version whose parameters produced `outputs`.
};

class Trainer {
 public:
  // Called exactly once per accepted submission, from the learner thread (or
  // from Stop() with UNAVAILABLE). Must not block.
  using SubmitCallback = absl::AnyInvocable<void(absl::StatusOr<SubmitResult>) &&>;
  // Called from the learner thread after each new snapshot is swapped in.
  // Must not block (WeightHub::Publish qualifies).
  using PublishCallback = std::function<void(std::shared_ptr<const Snapshot>)>;

  // INVALID_ARGUMENT if the options are invalid (spec, optimizer, surrogate,
  // samples_per_step 0, queue_capacity 0). With persistence: restores what
  // the directory holds (DATA_LOSS if acknowledged entries cannot be
  // recovered, FAILED_PRECONDITION if its checkpoint is for another network
  // or optimizer), or writes an initial checkpoint in a new directory.
  // Starts the learner thread.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(TrainerOptions options,
                                                         PublishCallback on_publish = nullptr);

  // Stop()s.
  ~Trainer();

  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const std::string& name() const { return options_.name; }
  const TrainerOptions& options() const { return options_; }
  const model::Mlp& mlp() const { return mlp_; }

  // The latest published parameters. Never blocks on the learner.
  std::shared_ptr<const Snapshot> snapshot() const ABSL_LOCKS_EXCLUDED(snapshot_mu_);

  // A relay's mirror (server/relay/relay.h): makes `snapshot`, a version of
  // the upstream's, the latest as it is and publishes it (on_publish), for a
  // model that never trains here. INVALID_ARGUMENT, nothing changed, if its
  // parameter count differs from the network's, or it has input statistics
  // exactly when the model does not normalise, or of another input_dim.
  absl::Status Mirror(std::shared_ptr<const Snapshot> snapshot);

  // Y = f(X; Θ) at the latest snapshot: ValidateForwardInputs, ForwardAt,
  // CheckForwardOutputs. INVALID_ARGUMENT (saying what was expected) for 0
  // rows, wrong column count, non-finite values, or finite inputs so large
  // that the outputs overflow; RESOURCE_EXHAUSTED for more than
  // max_request_rows rows.
  absl::StatusOr<ForwardResult> Forward(const model::Matrix& inputs) const;

  // The read-only vector-Jacobian product at the latest snapshot, on the
  // calling thread (never waits for the learner): outputs y = f(X) and
  // input_gradient = δᵀ·∂y/∂X (no surrogate, scale or objective), both at
  // `version`. Errors as Forward for `inputs` (RESOURCE_EXHAUSTED for more
  // than max_request_rows rows), and INVALID_ARGUMENT for `deltas` that are
  // not [n × output_dim] or not finite, or a product that overflows.
  // Changes nothing.
  absl::StatusOr<InputGradientResult> InputGradient(const model::Matrix& inputs,
                                                    const model::Matrix& deltas) const;
  // InputGradient's request errors (shapes, rows, non-finite values), before
  // any math; for callers that queue the request (forward_batcher.h).
  absl::Status ValidateInputGradientRequest(const model::Matrix& inputs,
                                            const model::Matrix& deltas) const;

  // The pieces of Forward, for callers that batch several requests into one
  // product (server/core/forward_batcher.h):
  //   ValidateForwardInputs: Forward's input errors, before any math.
  //   ForwardAt: Y = f(X) at `snapshot` for validated inputs, with
  //     model::Mlp::ForwardRowInvariant — each output row is bit-identical
  //     whatever other rows `inputs` holds — so callers' rows may be stacked.
  //     The activations held at once are one row's (scratch), whatever n.
  //   CheckForwardOutputs: Forward's overflow error for (a slice of) outputs.
  struct ForwardScratch {
    model::Mlp::Workspace workspace;
    model::Matrix normalized;  // normalize(X), with input normalisation only.
  };
  absl::Status ValidateForwardInputs(const model::Matrix& inputs) const;
  absl::Status ForwardAt(const Snapshot& snapshot, const Eigen::Ref<const model::Matrix>& inputs,
                         model::Matrix* outputs, ForwardScratch& scratch) const;
  static absl::Status CheckForwardOutputs(const Eigen::Ref<const model::Matrix>& outputs);

  // RESOURCE_EXHAUSTED if `rows` exceeds max_request_rows.
  absl::Status CheckRows(int64_t rows) const;

  // Shape, finiteness and version checks a submission must pass to be queued.
  absl::Status ValidateSubmission(const Submission& submission) const;
  // The same without the version check (which needs the live snapshot) and,
  // unless `row_limit`, without max_request_rows (a journaled submission was
  // accepted under the limit of its day; a lower limit now must not make
  // the state unrecoverable).
  absl::Status ValidateContent(const Submission& submission, bool row_limit = true) const;

  // Validates and queues. On OK, `done` will be called exactly once later.
  // On error `done` is not called: INVALID_ARGUMENT (see ValidateSubmission),
  // RESOURCE_EXHAUSTED if queue_capacity submissions are waiting, UNAVAILABLE
  // after Stop(). Never blocks on the learner.
  absl::Status Submit(Submission submission, SubmitCallback done) ABSL_LOCKS_EXCLUDED(queue_mu_);

  // Queues an import of `parameters` (parameter_count values, finite): in
  // order with submissions, the parameters are replaced, the optimizer
  // state (Optimizer::ResetState: buffers and Adam's t; not the schedule's
  // step count), accumulated gradient and rows reset, version + 1; `done` gets
  // {version} (stepped = true). Errors as Submit (INVALID_ARGUMENT for a
  // wrong count or non-finite values).
  absl::Status ImportParameters(std::vector<float> parameters, SubmitCallback done)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  // The same, and `statistics` (non-null) replace the input normalisation
  // statistics too (INVALID_ARGUMENT unless the model normalises and they
  // have input_dim columns; their clip and epsilon are the model's). Null:
  // the statistics are kept. The pending moments of the step in progress
  // are dropped either way, with G.
  absl::Status ImportParameters(std::vector<float> parameters,
                                std::shared_ptr<const model::RunningMeanStd> statistics,
                                SubmitCallback done) ABSL_LOCKS_EXCLUDED(queue_mu_);

  // The first layer's inputs for `inputs` at `statistics`: `inputs` itself
  // when null (no copy: normalisation off costs nothing), else
  // normalize(inputs) written into *scratch. Input gradients chain through
  // the same statistics: dX = statistics->Backward(inputs, dZ) where dZ is
  // the MLP's gradient with respect to this function's result.
  static absl::StatusOr<const model::Matrix*> Normalized(const model::RunningMeanStd* statistics,
                                                         const model::Matrix& inputs,
                                                         model::Matrix* scratch);

  // Takes a checkpoint after the batch the learner is applying; `done` runs
  // once it is durable. FAILED_PRECONDITION (done not called) without
  // persistence, UNAVAILABLE after Stop() or a journal failure.
  absl::Status Checkpoint(Checkpointer::Done done) ABSL_LOCKS_EXCLUDED(queue_mu_);

  bool persistent() const { return store_ != nullptr; }

  // Stops the learner after the submission it is applying; every submission
  // still queued gets UNAVAILABLE. With persistence, then completes the
  // journal's pending commits and writes a final checkpoint (if anything
  // changed since the last). Idempotent; blocks until done.
  void Stop() ABSL_LOCKS_EXCLUDED(queue_mu_);

  // Submissions waiting in the queue (not yet taken by the learner).
  size_t queued() const ABSL_LOCKS_EXCLUDED(queue_mu_);

  // Blocks until at least `n` submissions are queued (true) or `timeout`
  // passes (false). Wakes on the queue's own changes, not a timer.
  bool AwaitQueued(size_t n, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(queue_mu_);

 private:
  struct Pending {
    Submission submission;
    // Set: an ImportParameters of these values, not a submission.
    std::optional<std::vector<float>> import;
    // With `import`: statistics that replace the input statistics (null:
    // kept).
    std::shared_ptr<const model::RunningMeanStd> import_statistics;
    SubmitCallback done;
  };
  // What the learner takes at once: queued work and checkpoint requests.
  struct Batch {
    std::deque<Pending> pending;
    std::vector<Checkpointer::Done> checkpoints;
    bool stopping = false;
  };
  // One answer of a batch, sent once the batch is durable.
  struct Answer {
    SubmitCallback done;
    absl::StatusOr<SubmitResult> result;
  };

  Trainer(TrainerOptions options, model::Mlp mlp, std::unique_ptr<model::Optimizer> optimizer,
          std::shared_ptr<const model::RunningMeanStd> statistics, PublishCallback on_publish);

  void LearnerLoop() ABSL_LOCKS_EXCLUDED(queue_mu_);
  // Blocks until work is available, a checkpoint is due or Stop().
  Batch TakeBatch() ABSL_LOCKS_EXCLUDED(queue_mu_);

  // The learner's one apply path. Two entry points share every rule:
  //   ApplyLive (trainer_batch.cc): what the learner took from the queue.
  //     Per submission: step 0 (duplicates), ApplyGate (step 1 and the
  //     1/(1+s) scale); then ApplyScaled.
  //   Replay (trainer_state.cc): journaled submissions at Create, with the
  //     scale each was applied with: no gate, then ApplyScaled.
  // ApplyScaled computes g for the whole group (Gradient for one
  // submission, GroupGradient for more), accumulates it (Accumulate, which
  // calls Step: the one place an optimizer step happens) and calls Applied
  // for each member (the one place a submission counts as applied). New
  // per-step state belongs in Step, new per-submission state in Applied;
  // both entry points then keep it alike, which bit-exact replay needs.
  //
  // Applies pending[begin, end) — one submission, or a group as GroupEnd
  // forms it — into results[begin, end). A group that cannot apply as one
  // (non-finite loss or gradient, refused step) changes nothing and is
  // applied as batches of one instead.
  void ApplyLive(const std::deque<Pending>& pending, size_t begin, size_t end,
                 std::vector<absl::StatusOr<SubmitResult>>& results);
  // The end of the group of submissions from `begin` that can be
  // backpropagated as one: consecutive, no import, no request_id already
  // applied or repeated, none too stale, and no optimizer step before the
  // last (rows stay below samples_per_step).
  size_t GroupEnd(const std::deque<Pending>& pending, size_t begin);
  // Step 0: the original result (duplicate = true) if `submission`'s
  // request_id is among the remembered ones.
  std::optional<SubmitResult> Duplicate(const Submission& submission) const;
  // Staleness s = version − submission.version (Submit refused versions
  // newer than the snapshot, and versions only grow).
  uint64_t Staleness(const Submission& submission) const;
  // Step 1: s > max_staleness (when max_staleness > 0).
  bool TooStale(uint64_t staleness) const;
  // Step 1 and the live scale: ABORTED if too stale, else 1/(1+s) with
  // staleness_scaled_lr, 1 without.
  absl::StatusOr<float> ApplyGate(const Submission& submission) const;
  // Replays journaled `group` (one submission, or a group the learner
  // applied as one) with the scales it was applied with. Nothing is
  // journaled: the journal is opened after replay.
  absl::Status Replay(absl::Span<const Submission* const> group, absl::Span<const float> scales);
  // Steps 2–3 for `group` (≥ 1 submission, scales[i] for group[i]), then
  // Applied for each; `results` gets one result per member. On error
  // nothing has changed: one submission's own error; for a group, the
  // first failure (its members are then applied one by one, or replay
  // fails).
  absl::Status ApplyScaled(absl::Span<const Submission* const> group,
                           absl::Span<const float> scales, std::vector<SubmitResult>* results);
  // The per-submission "applied" hook, live and replayed alike: metrics,
  // the request_id window, the journal (a no-op during replay: not open
  // yet). `batched_with_next`: the next member of the group follows it.
  void Applied(const Submission& submission, const SubmitResult& result, float scale,
               bool batched_with_next);
  // INVALID_ARGUMENT unless parameter_count finite values (and statistics,
  // if any, for this model's normalisation and input_dim).
  absl::Status ValidateImport(const std::vector<float>& parameters,
                              const model::RunningMeanStd* statistics) const;
  // Applies (or replays) an import, then journals it (a no-op during
  // replay: the journal is not open yet).
  absl::StatusOr<SubmitResult> ApplyImport(std::vector<float> parameters,
                                           std::shared_ptr<const model::RunningMeanStd> statistics);
  // submission_grad_ holds g of `rows` rows: checks ‖G + g‖, then steps or
  // accumulates; whether it stepped. On error nothing has changed.
  absl::StatusOr<bool> Accumulate(uint64_t rows);
  // Backprop of one submission into submission_grad_; returns l_s. With
  // submission.return_input_gradient, *input_gradient (not null then) gets
  // its input gradient (SubmitResult::input_gradient).
  absl::StatusOr<double> Gradient(const Submission& submission, float scale,
                                  model::Matrix* input_gradient);
  // With X = [X1; ...; Xk] stacked: one forward and one backward pass into
  // submission_grad_, the same g as one by one up to float summation
  // order; `losses` gets each member's l_s, `input_gradients` (k entries)
  // each member's input gradient if it asked (else 0 x 0). On error nothing
  // has changed.
  absl::Status GroupGradient(absl::Span<const Submission* const> group,
                             absl::Span<const float> scales, std::vector<double>* losses,
                             std::vector<model::Matrix>* input_gradients);
  // The one place ∂l/∂(MLP input) becomes ∂l/∂X for the raw rows `inputs`,
  // in place: the identity without normalisation, else the normalisation's
  // backward at `statistics` (those the forward pass used: zero where an
  // input was clipped), for the learner's input gradients and
  // Trainer::InputGradient alike. INVALID_ARGUMENT if the result is not
  // finite.
  static absl::Status ToInputGradient(const model::RunningMeanStd* statistics,
                                      const Eigen::Ref<const model::Matrix>& inputs,
                                      model::Matrix* grad);
  // The one place an optimizer step happens: a step on `grad` (G + g) whose
  // GlobalNorm is `norm`, version + 1; with input normalisation the
  // statistics merge step_moments_ (the pending moments and the group's
  // rows). Per-step state goes here. On error nothing has changed.
  absl::Status Step(absl::Span<float> grad, double norm);
  // G = 0 (a no-op while it is).
  void ClearGrad();
  // Journals the batch (with persistence), then publishes its snapshot (if
  // it stepped) and runs its callbacks once durable.
  void Finish(std::vector<Answer> answers, bool stepped);
  void Complete(const absl::Status& durable, std::vector<Answer>& answers,
                std::shared_ptr<const Snapshot> snapshot);
  void Publish(std::shared_ptr<const Snapshot> snapshot) ABSL_LOCKS_EXCLUDED(snapshot_mu_);
  std::shared_ptr<const Snapshot> MakeSnapshot() const;
  // The model stops taking submissions: `cause` is a journal error.
  void EnterFailed(const absl::Status& cause) ABSL_LOCKS_EXCLUDED(queue_mu_);
  absl::Status Refusal() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  void FailAll(std::deque<Pending>& pending, const absl::Status& status);

  // Persistence (trainer_state.cc). Learner thread, or Create/Stop.
  // ReplayGroup decodes journaled entries and calls Replay or ApplyImport.
  absl::Status OpenState();
  absl::Status Restore(const deltaserve::v1::StateCheckpoint& checkpoint);
  absl::StatusOr<Submission> FromJournal(const deltaserve::v1::JournaledSubmission& j) const;
  void JournalSubmission(const Submission& submission, float scale, bool batched_with_next);
  absl::Status ReplayGroup(const std::vector<const deltaserve::v1::JournalEntry*>& entries,
                           uint64_t first_seq);
  void JournalImport(const std::vector<float>& parameters, const model::RunningMeanStd* statistics);
  std::unique_ptr<CheckpointState> CaptureState() const;
  bool CheckpointDue(absl::Time now) const;
  // Captures and schedules a checkpoint if one is due or requested.
  void MaybeCheckpoint(std::vector<Checkpointer::Done> requests);

  const TrainerOptions options_;
  const model::Mlp mlp_;
  const PublishCallback on_publish_;

  // Learner-thread state (no lock). Owned by the thread in Create()
  // (restore and replay), handed to the learner thread when it starts, and
  // back to Stop() once it has joined; every method that touches it
  // DCHECKs ownership (DELTASERVE_DCHECK_OWNED(learner_owner_)).
  ThreadOwner learner_owner_;
  std::unique_ptr<model::Optimizer> optimizer_;
  std::vector<float> params_;           // Working parameters (version_).
  std::vector<float> grad_;             // G, accumulated over submissions.
  bool grad_zero_ = true;               // G is known to be all +0 (Accumulate skips it).
  std::vector<float> submission_grad_;  // g of one submission, then G + g.
  model::Mlp::Workspace workspace_;
  model::Matrix grad_y_;
  model::Matrix group_inputs_;  // GroupGradient's scratch: the group's rows, stacked.
  model::Matrix group_grad_y_;
  // Input gradients' scratch: unscaled ∂l_s/∂Y when a staleness scale != 1,
  // and the stacked ∂l/∂X of a group.
  model::Matrix unscaled_grad_y_;
  model::Matrix group_input_grad_;
  // Input normalisation (statistics_ null without it). statistics_ are the
  // current version's (every snapshot made shares them); pending_moments_
  // the moments of the rows accumulated into the step in progress (with G);
  // step_moments_ ApplyScaled's scratch: pending_moments_ and the group's
  // rows, which become pending_moments_ (or are merged, if it steps) only
  // once the group applies.
  std::shared_ptr<const model::RunningMeanStd> statistics_;
  model::ColumnMoments pending_moments_;
  model::ColumnMoments step_moments_;
  model::Matrix normalized_;  // Gradient's and GroupGradient's normalize(X).
  // The last snapshot made (published or waiting for its commit): holds
  // params_ as of the last step, which is what a checkpoint captures.
  std::shared_ptr<const Snapshot> latest_;
  uint64_t version_ = 0;
  uint64_t rows_accumulated_ = 0;
  // The last request_id_window applied ids and their results.
  RequestIdWindow<SubmitResult> applied_ids_;
  // Per-step series (options_.history only): what the step in progress has
  // gathered so far; emitted by EmitStepSeries when it steps, dropped by an
  // import. Live steps only: record_series_ is set when the learner starts.
  struct StepSeries {
    double loss_sum = 0.0;
    uint64_t submissions = 0;
    uint64_t staleness_sum = 0;
    uint64_t staleness_max = 0;
    uint64_t rows = 0;  // Set by Accumulate when it steps; the rest by Step.
    double grad_norm = 0.0;
    double grad_norm_clipped = 0.0;
    double update_norm = 0.0;
    double learning_rate = 0.0;
  };
  bool SeriesOn() const { return options_.history != nullptr && record_series_; }
  void EmitStepSeries();
  bool record_series_ = false;
  StepSeries step_series_;
  // The series' storage in options_.history, resolved on the first record.
  History::Group series_group_;
  GradientNoiseScale noise_scale_;
  // The unit (one ApplyScaled) being accumulated: |g_u|², g_u·G (G: the
  // step's earlier units), w, v (server/core/noise_scale.h); and |G|² so far.
  double unit_sq_norm_ = 0.0;
  double unit_dot_ = 0.0;
  double unit_w_ = 0.0;
  double unit_v_ = 0.0;
  double step_sq_norm_ = 0.0;
  // The step in progress began before the learner started (restored and
  // replayed): the noise scale leaves it out.
  bool noise_partial_step_ = false;
  // Step's scratch, sized once: the parameters before the step
  // (update_norm), and the noise scale's R = Σ decay^age · G over the
  // earlier steps (zeros until the first).
  std::vector<float> params_before_;
  std::vector<float> noise_sum_;
  // GroupEnd's scratch: the ids of the group it is forming (kept for its
  // buckets).
  absl::flat_hash_set<absl::string_view> group_ids_;
  // Persistence (all null without it).
  std::unique_ptr<persist::ModelStore> store_;
  std::unique_ptr<JournalWriter> journal_;
  std::unique_ptr<Checkpointer> checkpointer_;
  uint64_t steps_since_checkpoint_ = 0;
  bool changed_since_checkpoint_ = false;
  absl::Time last_checkpoint_ = absl::InfinitePast();

  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);

  mutable absl::Mutex queue_mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(queue_mu_);
  std::vector<Checkpointer::Done> checkpoint_requests_ ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  absl::Status failed_ ABSL_GUARDED_BY(queue_mu_);  // Set once by EnterFailed.

  std::once_flag join_once_;
  std::thread learner_;  // Last: starts after everything above exists.
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_TRAINER_H_
