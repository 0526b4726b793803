// Trainer persistence: how a Trainer's state is journaled, captured for a
// checkpoint and restored (trainer.h, "With TrainerOptions::persistence").
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/model/validate.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/trainer.h"

namespace deltaserve::server {
namespace v1 = ::deltaserve::v1;
namespace {

// "4 -> 16 tanh -> 2 identity, ADAM": what must match for a state to restore.
std::string NetworkShape(const model::MlpSpec& mlp, absl::string_view optimizer) {
  std::vector<std::string> parts = {absl::StrCat(mlp.input_dim)};
  for (const model::LayerSpec& layer : mlp.layers) {
    parts.push_back(absl::StrCat(layer.units, " ", model::ActivationName(layer.activation)));
  }
  return absl::StrCat(absl::StrJoin(parts, " -> "), ", ", optimizer);
}

void CopyTo(absl::Span<const float> values, google::protobuf::RepeatedField<float>* out) {
  out->Reserve(static_cast<int>(values.size()));
  out->Add(values.begin(), values.end());
}

std::vector<float> CopyOf(const google::protobuf::RepeatedField<float>& values) {
  return std::vector<float>(values.begin(), values.end());
}

}  // namespace

absl::Status Trainer::OpenState() {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  const PersistenceOptions& p = options_.persistence;
  const absl::Time start = absl::Now();
  persist::FileSystem* fs = p.fs != nullptr ? p.fs : persist::FileSystem::Default();
  DELTASERVE_ASSIGN_OR_RETURN(store_, persist::ModelStore::Open(fs, p.dir, p.keep_checkpoints));
  DELTASERVE_ASSIGN_OR_RETURN(persist::Recovered recovered, store_->Recover());
  for (const std::string& warning : recovered.warnings) {
    LogWarning("model \"", name(), "\": ", warning);
  }
  if (recovered.checkpoint) DELTASERVE_RETURN_IF_ERROR(Restore(*recovered.checkpoint));
  uint64_t seq = recovered.checkpoint ? recovered.checkpoint->journal_seq() : 0;
  // Submissions the learner batched together are replayed together.
  std::vector<const v1::JournalEntry*> group;
  for (const v1::JournalEntry& entry : recovered.entries) {
    group.push_back(&entry);
    if (entry.has_submission() && entry.submission().batched_with_next()) continue;
    DELTASERVE_RETURN_IF_ERROR(ReplayGroup(group, seq + 1));
    seq += group.size();
    group.clear();
  }
  if (!group.empty()) {
    return absl::DataLossError(absl::StrCat("model \"", name(),
                                            "\": the journal ends inside a "
                                            "batched group (entry seq ",
                                            seq + group.size(), ")"));
  }
  DELTASERVE_ASSIGN_OR_RETURN(journal_, JournalWriter::Create(store_.get(), recovered.next_seq,
                                                              p.durability, p.sync_interval));
  checkpointer_ = std::make_unique<Checkpointer>(store_.get());
  latest_ = MakeSnapshot();
  const bool fresh = !recovered.checkpoint && recovered.entries.empty();
  if (fresh || !recovered.entries.empty()) {
    // A new directory gets a checkpoint at once, so that the spec it belongs
    // to is on disk; a replayed one, so the next start need not replay again.
    DELTASERVE_RETURN_IF_ERROR(checkpointer_->WriteNow(*CaptureState()).status());
  }
  steps_since_checkpoint_ = 0;
  changed_since_checkpoint_ = false;
  last_checkpoint_ = absl::Now();
  {
    // Before the learner starts and before anyone can read: no publish needed.
    absl::MutexLock lock(&snapshot_mu_);
    latest_ = MakeSnapshot();
    snapshot_ = latest_;
  }
  if (options_.metrics) {
    options_.metrics->SetVersion(version_);
    options_.metrics->SetLearningRate(optimizer_->learning_rate());
  }
  if (fresh) {
    LogInfo("model \"", name(), "\": new state in ", p.dir);
  } else {
    LogInfo("model \"", name(), "\": restored version ", version_, " from ",
            recovered.checkpoint ? recovered.checkpoint_path : "the initial parameters", " + ",
            recovered.entries.size(), " journal entries replayed in ",
            absl::FormatDuration(absl::Now() - start));
  }
  return absl::OkStatus();
}

absl::Status Trainer::Restore(const v1::StateCheckpoint& c) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  const std::string optimizer =
      v1::OptimizerConfig::Kind_Name(options_.persistence.spec.optimizer().kind());
  DELTASERVE_ASSIGN_OR_RETURN(model::MlpSpec saved, wire::MlpSpecFromProto(c.spec()));
  const std::string saved_shape =
      NetworkShape(saved, v1::OptimizerConfig::Kind_Name(c.spec().optimizer().kind()));
  const std::string configured = NetworkShape(options_.mlp, optimizer);
  if (saved_shape != configured) {
    return absl::FailedPreconditionError(
        absl::StrCat("model \"", name(), "\": ", options_.persistence.dir, " holds a model of ",
                     saved_shape, " but the config says ", configured,
                     "; point --state_dir elsewhere (or move it away) to "
                     "start this one fresh"));
  }
  if (static_cast<size_t>(c.parameters_size()) != params_.size() ||
      static_cast<size_t>(c.accumulated_gradient_size()) != grad_.size()) {
    return absl::DataLossError(absl::StrCat("model \"", name(), "\": checkpoint holds ",
                                            c.parameters_size(), " parameters, expected ",
                                            params_.size()));
  }
  std::vector<std::vector<float>> buffers;
  for (const v1::Matrix& buffer : c.optimizer_state()) buffers.push_back(CopyOf(buffer.data()));
  // A checksum only proves the bytes are the ones written; values that no
  // learner could have produced are refused all the same.
  bool finite = model::CheckFinite("", c.parameters()).ok() &&
                model::CheckFinite("", c.accumulated_gradient()).ok();
  for (const std::vector<float>& buffer : buffers) {
    finite = finite && model::CheckFinite("", buffer).ok();
  }
  if (!finite) {
    return absl::DataLossError(absl::StrCat("model \"", name(), "\": the checkpoint in ",
                                            options_.persistence.dir, " holds non-finite values"));
  }
  const int64_t state_steps = c.optimizer_steps() - c.optimizer_steps_at_reset();
  if (absl::Status restored = optimizer_->Restore(c.optimizer_steps(), state_steps, buffers);
      !restored.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("model \"", name(), "\": ", restored.message()));
  }
  params_ = CopyOf(c.parameters());
  grad_ = CopyOf(c.accumulated_gradient());
  grad_zero_ = std::all_of(grad_.begin(), grad_.end(),
                           [](float g) { return g == 0.0f && !std::signbit(g); });
  if (statistics_) {
    if (c.has_input_statistics()) {
      absl::StatusOr<model::RunningMeanStd> statistics =
          wire::InputStatisticsFromProto(c.input_statistics(), mlp_.input_dim());
      absl::StatusOr<model::ColumnMoments> pending = model::ColumnMoments::FromMoments(
          std::vector<double>(c.pending_moments().mean().begin(), c.pending_moments().mean().end()),
          std::vector<double>(c.pending_moments().var().begin(), c.pending_moments().var().end()),
          c.pending_moments().count());
      if (!statistics.ok() || !pending.ok() || pending->dim() != mlp_.input_dim()) {
        return absl::DataLossError(
            absl::StrCat("model \"", name(), "\": the checkpoint in ", options_.persistence.dir,
                         " holds invalid input statistics: ",
                         !statistics.ok() ? statistics.status().message()
                         : !pending.ok()  ? pending.status().message()
                                          : "pending moments of another input_dim"));
      }
      // The clip and epsilon are the config's (they may have changed).
      statistics_ =
          std::make_shared<const model::RunningMeanStd>(*model::RunningMeanStd::FromStatistics(
              options_.normalization, statistics->mean(), statistics->var(), statistics->count()));
      pending_moments_ = *std::move(pending);
    } else {
      LogWarning("model \"", name(), "\": the checkpoint in ", options_.persistence.dir,
                 " holds no input statistics (input_normalization was NONE): they start afresh");
    }
  }
  rows_accumulated_ = c.rows_accumulated();
  version_ = c.version();
  applied_ids_.Clear();
  for (const v1::AppliedRequest& r : c.applied_requests()) {
    SubmitResult result{r.version(), r.surrogate_loss(), r.staleness(), r.stepped()};
    if (r.has_input_gradient()) {
      DELTASERVE_ASSIGN_OR_RETURN(
          result.input_gradient,
          wire::MatrixFromProto("checkpoint applied_requests.input_gradient", r.input_gradient()));
    }
    applied_ids_.Remember(r.request_id(), result);
  }
  return absl::OkStatus();
}

absl::StatusOr<Submission> Trainer::FromJournal(const v1::JournaledSubmission& j) const {
  Submission s;
  s.request_id = j.request_id();
  s.version = j.version();
  s.return_input_gradient = j.return_input_gradient();
  DELTASERVE_ASSIGN_OR_RETURN(s.objective, wire::ObjectiveFromProto(j.objective()));
  DELTASERVE_ASSIGN_OR_RETURN(s.inputs, wire::MatrixFromProto("inputs", j.inputs()));
  DELTASERVE_ASSIGN_OR_RETURN(s.acted, wire::MatrixFromProto("acted", j.acted()));
  DELTASERVE_ASSIGN_OR_RETURN(s.deltas, wire::MatrixFromProto("deltas", j.deltas()));
  DELTASERVE_RETURN_IF_ERROR(ValidateContent(s, /*row_limit=*/false));
  return s;
}

absl::Status Trainer::ReplayGroup(const std::vector<const v1::JournalEntry*>& entries,
                                  uint64_t first_seq) {
  absl::Status replayed;
  if (entries.size() == 1 && entries[0]->has_import()) {
    const v1::JournaledImport& import = entries[0]->import();
    std::shared_ptr<const model::RunningMeanStd> statistics;
    if (import.has_input_statistics()) {
      absl::StatusOr<model::RunningMeanStd> s =
          wire::InputStatisticsFromProto(import.input_statistics(), mlp_.input_dim());
      if (s.ok() && statistics_ == nullptr) {
        LogWarning("model \"", name(),
                   "\": a journaled import's input statistics are dropped "
                   "(input_normalization is NONE now)");
      } else if (s.ok()) {
        statistics =
            std::make_shared<const model::RunningMeanStd>(*model::RunningMeanStd::FromStatistics(
                options_.normalization, s->mean(), s->var(), s->count()));
      } else {
        replayed = s.status();
      }
    }
    if (replayed.ok()) replayed = ApplyImport(CopyOf(import.parameters()), statistics).status();
  } else {
    std::vector<Submission> submissions;
    std::vector<float> scales;
    for (const v1::JournalEntry* entry : entries) {
      absl::StatusOr<Submission> s = FromJournal(entry->submission());
      if (!s.ok()) {
        replayed = s.status();
        break;
      }
      submissions.push_back(*std::move(s));
      scales.push_back(entry->submission().scale());
    }
    std::vector<const Submission*> group;
    for (const Submission& s : submissions) group.push_back(&s);
    if (replayed.ok()) replayed = Replay(group, scales);
  }
  if (replayed.ok()) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("model \"", name(), "\": journal entry seq ", first_seq,
                                          " does not replay: ", replayed.message()));
}

absl::Status Trainer::Replay(absl::Span<const Submission* const> group,
                             absl::Span<const float> scales) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  DELTASERVE_DCHECK(journal_ == nullptr, "replay journals nothing: the journal opens after it");
  // As live, step 0: an id already applied is not applied again.
  if (group.size() == 1 && Duplicate(*group[0])) return absl::OkStatus();
  std::vector<SubmitResult> applied;
  absl::Status replayed = ApplyScaled(group, scales, &applied);
  if (replayed.ok() || group.size() == 1) return replayed;
  return absl::InternalError("the batched group no longer applies as one");
}

void Trainer::JournalSubmission(const Submission& s, float scale, bool batched_with_next) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (!journal_) return;
  v1::JournalEntry entry;
  v1::JournaledSubmission* j = entry.mutable_submission();
  j->set_request_id(s.request_id);
  j->set_version(s.version);
  j->set_objective(wire::ObjectiveToProto(s.objective));
  wire::MatrixToProto(s.inputs, j->mutable_inputs());
  if (s.acted.rows() != 0) wire::MatrixToProto(s.acted, j->mutable_acted());
  wire::MatrixToProto(s.deltas, j->mutable_deltas());
  j->set_scale(scale);
  j->set_batched_with_next(batched_with_next);
  j->set_return_input_gradient(s.return_input_gradient);
  journal_->Add(entry);
}

void Trainer::JournalImport(const std::vector<float>& parameters,
                            const model::RunningMeanStd* statistics) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (!journal_) return;
  v1::JournalEntry entry;
  CopyTo(parameters, entry.mutable_import()->mutable_parameters());
  if (statistics) {
    wire::InputStatisticsToProto(*statistics, entry.mutable_import()->mutable_input_statistics());
  }
  journal_->Add(entry);
}

std::unique_ptr<CheckpointState> Trainer::CaptureState() const {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  auto state = std::make_unique<CheckpointState>();
  state->parameters = latest_;  // Equal to params_: every step makes a snapshot.
  state->accumulated_gradient = grad_;
  for (absl::Span<const float> buffer : optimizer_->state()) {
    state->optimizer_state.emplace_back(buffer.begin(), buffer.end());
  }
  v1::StateCheckpoint* c = &state->header;
  *c->mutable_spec() = options_.persistence.spec;
  c->set_version(version_);
  c->set_journal_seq(journal_ ? journal_->last_seq() : 0);
  c->set_rows_accumulated(rows_accumulated_);
  c->set_optimizer_steps(optimizer_->step_count());
  c->set_optimizer_steps_at_reset(optimizer_->step_count() - optimizer_->state_step_count());
  if (statistics_) {
    wire::InputStatisticsToProto(*statistics_, c->mutable_input_statistics());
    v1::PendingMoments* pending = c->mutable_pending_moments();
    pending->mutable_mean()->Add(pending_moments_.mean().begin(), pending_moments_.mean().end());
    pending->mutable_var()->Add(pending_moments_.var().begin(), pending_moments_.var().end());
    pending->set_count(pending_moments_.count());
  }
  applied_ids_.ForEachOldestFirst([c](absl::string_view id, const SubmitResult& r) {
    v1::AppliedRequest* a = c->add_applied_requests();
    a->set_request_id(std::string(id));
    a->set_version(r.version);
    a->set_surrogate_loss(r.surrogate_loss);
    a->set_staleness(r.staleness);
    a->set_stepped(r.stepped);
    if (r.input_gradient.size() != 0)
      wire::MatrixToProto(r.input_gradient, a->mutable_input_gradient());
  });
  c->set_created_unix_micros(absl::ToUnixMicros(absl::Now()));
  return state;
}

bool Trainer::CheckpointDue(absl::Time now) const {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  const PersistenceOptions& p = options_.persistence;
  return steps_since_checkpoint_ >= p.checkpoint_every_steps ||
         (changed_since_checkpoint_ && now >= last_checkpoint_ + p.checkpoint_every);
}

void Trainer::MaybeCheckpoint(std::vector<Checkpointer::Done> requests) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (!persistent()) return;  // Checkpoint() refused the requests.
  const absl::Time now = absl::Now();
  if (requests.empty() && !CheckpointDue(now)) return;
  if (!journal_->failure().ok()) {
    // The journal has entries the disk may not: no checkpoint may claim them.
    for (Checkpointer::Done& done : requests) std::move(done)(journal_->failure());
    return;
  }
  std::unique_ptr<CheckpointState> state = CaptureState();
  if (absl::Status rolled = journal_->Roll(); !rolled.ok()) {
    LogWarning("model \"", name(), "\": could not start a new journal segment (", rolled.message(),
               "); the current one goes on");
  }
  state->learner_pause = absl::Now() - now;
  checkpointer_->Schedule(std::move(state), std::move(requests));
  steps_since_checkpoint_ = 0;
  changed_since_checkpoint_ = false;
  last_checkpoint_ = now;
}

}  // namespace deltaserve::server
