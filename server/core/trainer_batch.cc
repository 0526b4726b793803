// The learner's apply path (trainer.h, "The learner's one apply path"): the
// live entry point, the rules both entry points share, and the group
// (stacked) gradient.
#include <algorithm>
#include <cmath>
#include <utility>

#include "deltaserve/base/status_macros.h"
#include "deltaserve/model/surrogate.h"
#include "deltaserve/model/validate.h"
#include "deltaserve/server/core/errors.h"
#include "deltaserve/server/core/trainer.h"

namespace deltaserve::server {

void Trainer::ApplyLive(const std::deque<Pending>& pending, size_t begin, size_t end,
                        std::vector<absl::StatusOr<SubmitResult>>& results) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  DELTASERVE_DCHECK(begin < end && end <= pending.size() && results.size() == pending.size());
  if (end - begin > 1) {
    std::vector<const Submission*> group;
    std::vector<float> scales;
    uint64_t rows = rows_accumulated_;
    for (size_t i = begin; i < end; ++i) {
      const Submission& s = pending[i].submission;
      DELTASERVE_DCHECK(!pending[i].import && !Duplicate(s), "GroupEnd formed this group");
      DELTASERVE_DCHECK(rows < options_.samples_per_step, "only the last member may step");
      rows += static_cast<uint64_t>(s.inputs.rows());
      absl::StatusOr<float> scale = ApplyGate(s);
      DELTASERVE_DCHECK(scale.ok(), "GroupEnd admits no submission that is too stale");
      if (!scale.ok()) break;
      group.push_back(&s);
      scales.push_back(*scale);
    }
    std::vector<SubmitResult> applied;
    if (group.size() == end - begin && ApplyScaled(group, scales, &applied).ok()) {
      std::move(applied.begin(), applied.end(), results.begin() + static_cast<long>(begin));
      return;
    }
  }
  for (size_t i = begin; i < end; ++i) {  // Batches of one.
    const Submission& s = pending[i].submission;
    if (std::optional<SubmitResult> duplicate = Duplicate(s)) {
      results[i] = *duplicate;
      continue;
    }
    absl::StatusOr<float> scale = ApplyGate(s);
    std::vector<SubmitResult> applied;
    if (!scale.ok()) {
      results[i] = scale.status();
    } else if (absl::Status status = ApplyScaled({&s}, {*scale}, &applied); !status.ok()) {
      results[i] = status;
    } else {
      results[i] = applied[0];
    }
  }
}

size_t Trainer::GroupEnd(const std::deque<Pending>& pending, size_t begin) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  group_ids_.clear();
  uint64_t rows = rows_accumulated_;
  size_t end = begin;
  while (end < pending.size()) {
    const Pending& p = pending[end];
    if (p.import) break;
    const Submission& s = p.submission;
    if (!s.request_id.empty() &&
        (applied_ids_.Find(s.request_id) != nullptr || !group_ids_.insert(s.request_id).second)) {
      break;  // Answered as a duplicate, after what comes before it is applied.
    }
    if (TooStale(Staleness(s))) break;
    rows += static_cast<uint64_t>(s.inputs.rows());
    ++end;
    if (rows >= options_.samples_per_step) break;  // This one steps: the group ends with it.
  }
  return std::max(end, begin + 1);  // A submission that starts a group is always in it.
}

std::optional<SubmitResult> Trainer::Duplicate(const Submission& submission) const {
  if (submission.request_id.empty()) return std::nullopt;
  const SubmitResult* applied = applied_ids_.Find(submission.request_id);
  if (applied == nullptr) return std::nullopt;
  SubmitResult original = *applied;
  original.duplicate = true;
  return original;
}

uint64_t Trainer::Staleness(const Submission& submission) const {
  return version_ - submission.version;
}

bool Trainer::TooStale(uint64_t staleness) const {
  return options_.max_staleness != 0 && staleness > options_.max_staleness;
}

absl::StatusOr<float> Trainer::ApplyGate(const Submission& submission) const {
  DELTASERVE_DCHECK(submission.version <= version_, "Submit refuses versions from the future");
  const uint64_t staleness = Staleness(submission);
  if (TooStale(staleness)) {
    return StaleVersion(name(), submission.version, version_, options_.max_staleness);
  }
  if (!options_.staleness_scaled_lr) return 1.0f;
  return 1.0f / (1.0f + static_cast<float>(staleness));
}

absl::Status Trainer::ApplyScaled(absl::Span<const Submission* const> group,
                                  absl::Span<const float> scales,
                                  std::vector<SubmitResult>* results) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  DELTASERVE_DCHECK(!group.empty() && scales.size() == group.size());
  std::vector<uint64_t> staleness;
  uint64_t rows = 0;
  for (const Submission* s : group) {
    staleness.push_back(Staleness(*s));
    rows += static_cast<uint64_t>(s->inputs.rows());
  }
  std::vector<double> losses;
  std::vector<model::Matrix> input_gradients(group.size());
  if (group.size() == 1) {
    DELTASERVE_ASSIGN_OR_RETURN(const double loss,
                                Gradient(*group[0], scales[0], &input_gradients[0]));
    losses.push_back(loss);
  } else {
    DELTASERVE_RETURN_IF_ERROR(GroupGradient(group, scales, &losses, &input_gradients));
  }
  if (statistics_) {
    // The pending moments with this group's rows, one Add per member (the
    // same moments whether the members apply as a group or one by one);
    // they become pending_moments_ only once the group applies.
    step_moments_ = pending_moments_;
    for (const Submission* s : group) DELTASERVE_RETURN_IF_ERROR(step_moments_.Add(s->inputs));
  }
  if (SeriesOn()) {
    // The unit's weights for the noise scale (server/core/noise_scale.h):
    // each row enters g with c = scale (SUM) or scale/(n·m) (MEAN).
    unit_w_ = unit_v_ = 0.0;
    for (size_t i = 0; i < group.size(); ++i) {
      const double n = static_cast<double>(group[i]->inputs.rows());
      double c = scales[i];
      if (options_.surrogate.reduction == model::SurrogateConfig::Reduction::kMean) {
        c /= n * static_cast<double>(mlp_.output_dim());
      }
      unit_w_ += c * n;
      unit_v_ += c * c * n;
    }
  }
  const uint64_t version_before = version_;
  DELTASERVE_ASSIGN_OR_RETURN(const bool stepped, Accumulate(rows));
  if (SeriesOn()) {
    for (size_t i = 0; i < group.size(); ++i) {
      step_series_.loss_sum += losses[i];
      ++step_series_.submissions;
      step_series_.staleness_sum += staleness[i];
      step_series_.staleness_max = std::max(step_series_.staleness_max, staleness[i]);
    }
  }
  if (statistics_) {
    if (stepped) {
      pending_moments_.Clear();  // Merged by Step.
    } else {
      std::swap(pending_moments_, step_moments_);
    }
  }
  DELTASERVE_DCHECK(rows_accumulated_ < options_.samples_per_step);
  DELTASERVE_DCHECK(stepped == (rows_accumulated_ == 0) && stepped == grad_zero_);
  DELTASERVE_DCHECK(version_ == version_before + (stepped ? 1 : 0));
  results->clear();
  for (size_t i = 0; i < group.size(); ++i) {
    const bool last = i + 1 == group.size();
    // Only the last member can have stepped (GroupEnd; a journaled group
    // was formed the same way).
    SubmitResult result{last ? version_ : version_before, losses[i], staleness[i],
                        /*stepped=*/last && stepped};
    result.input_gradient = std::move(input_gradients[i]);
    Applied(*group[i], result, scales[i], /*batched_with_next=*/!last);
    results->push_back(std::move(result));
  }
  changed_since_checkpoint_ = true;
  // After the callbacks' results exist and the metrics are recorded, so the
  // step's series are in the history before any answer goes out.
  if (stepped && SeriesOn()) EmitStepSeries();
  return absl::OkStatus();
}

void Trainer::Applied(const Submission& submission, const SubmitResult& result, float scale,
                      bool batched_with_next) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  if (options_.metrics) {
    options_.metrics->RecordSubmissionApplied(static_cast<uint64_t>(submission.inputs.rows()),
                                              result.staleness, result.surrogate_loss);
    if (!submission.metrics.empty()) options_.metrics->RecordClientMetrics(submission.metrics);
  }
  if (!submission.request_id.empty()) applied_ids_.Remember(submission.request_id, result);
  JournalSubmission(submission, scale, batched_with_next);
}

// With X = [X₁; …; Xₖ] (the members' rows stacked), one forward pass gives
// Y = [Y₁; …; Yₖ]; each member's surrogate gives its l_s and ∂l_s/∂Yᵢ
// (× its scale), stacked into ∂L/∂Y; one backward pass gives
// g = Σᵢ ∂l_sᵢ/∂Θ. Row i of a dense layer only ever meets row i, so this is
// the one-by-one result up to the order of the float sums.
absl::Status Trainer::GroupGradient(absl::Span<const Submission* const> group,
                                    absl::Span<const float> scales, std::vector<double>* losses,
                                    std::vector<model::Matrix>* input_gradients) {
  DELTASERVE_DCHECK_OWNED(learner_owner_);
  DELTASERVE_DCHECK(input_gradients->size() == group.size());
  Eigen::Index total = 0;
  bool want_input_gradient = false;  // Some member asked for it.
  bool unit_scales = true;           // Backward's ∂l/∂X is then the unscaled one.
  for (size_t i = 0; i < group.size(); ++i) {
    total += group[i]->inputs.rows();
    want_input_gradient = want_input_gradient || group[i]->return_input_gradient;
    unit_scales = unit_scales && scales[i] == 1.0f;
  }
  const bool keep_unscaled = want_input_gradient && !unit_scales;
  if (keep_unscaled) unscaled_grad_y_.resize(total, mlp_.output_dim());
  group_inputs_.resize(total, mlp_.input_dim());
  group_grad_y_.resize(total, mlp_.output_dim());
  Eigen::Index row = 0;
  for (const Submission* s : group) {
    group_inputs_.middleRows(row, s->inputs.rows()) = s->inputs;
    row += s->inputs.rows();
  }
  DELTASERVE_ASSIGN_OR_RETURN(const model::Matrix* const inputs,
                              Normalized(statistics_.get(), group_inputs_, &normalized_));
  DELTASERVE_RETURN_IF_ERROR(mlp_.Forward(params_, *inputs, workspace_));
  losses->clear();
  row = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    const Submission& s = *group[i];
    const Eigen::Index n = s.inputs.rows();
    DELTASERVE_ASSIGN_OR_RETURN(
        const double loss,
        model::Surrogate(options_.surrogate, s.objective, workspace_.output().middleRows(row, n),
                         s.acted, s.deltas, &grad_y_));
    if (!std::isfinite(loss)) return absl::InvalidArgumentError("surrogate loss: not finite");
    if (keep_unscaled) unscaled_grad_y_.middleRows(row, n) = grad_y_;
    if (scales[i] != 1.0f) grad_y_ *= scales[i];
    group_grad_y_.middleRows(row, n) = grad_y_;
    losses->push_back(loss);
    row += n;
  }
  std::fill(submission_grad_.begin(), submission_grad_.end(), 0.0f);
  DELTASERVE_RETURN_IF_ERROR(
      mlp_.Backward(params_, *inputs, workspace_, group_grad_y_, absl::MakeSpan(submission_grad_),
                    want_input_gradient && unit_scales ? &group_input_grad_ : nullptr));
  DELTASERVE_RETURN_IF_ERROR(model::CheckFinite("gradient", submission_grad_));
  if (!want_input_gradient) return absl::OkStatus();
  if (keep_unscaled) {
    DELTASERVE_RETURN_IF_ERROR(
        mlp_.InputGradient(params_, *inputs, workspace_, unscaled_grad_y_, &group_input_grad_));
  }
  DELTASERVE_RETURN_IF_ERROR(ToInputGradient(statistics_.get(), group_inputs_, &group_input_grad_));
  row = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    const Eigen::Index n = group[i]->inputs.rows();
    if (group[i]->return_input_gradient) {
      (*input_gradients)[i] = group_input_grad_.middleRows(row, n);
    }
    row += n;
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::server
