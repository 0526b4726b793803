// Learner batching: submissions that fall in the same optimizer step are
// backpropagated as one batch (trainer.h, GroupEnd and ApplyGroup).
#include <cmath>
#include <utility>

#include "model/surrogate.h"
#include "model/validate.h"
#include "server/core/trainer.h"

namespace deltaserve::server {

size_t Trainer::GroupEnd(const std::deque<Pending>& pending, size_t begin) {
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
    if (options_.max_staleness != 0 && version_ - s.version > options_.max_staleness) break;
    rows += static_cast<uint64_t>(s.inputs.rows());
    ++end;
    if (rows >= options_.samples_per_step) break;  // This one steps: the group ends with it.
  }
  return std::max(end, begin + 1);  // A submission that starts a group is always in it.
}

// With X = [X₁; …; Xₖ] (the members' rows stacked), one forward pass gives
// Y = [Y₁; …; Yₖ]; each member's surrogate gives its l_s and ∂l_s/∂Yᵢ
// (× its scale), stacked into ∂L/∂Y; one backward pass gives
// g = Σᵢ ∂l_sᵢ/∂Θ. Row i of a dense layer only ever meets row i, so this is
// the one-by-one result up to the order of the float sums.
bool Trainer::ApplyGroup(const std::vector<const Submission*>& group,
                         const std::vector<float>* replay_scales,
                         std::vector<absl::StatusOr<SubmitResult>>* results) {
  Eigen::Index total = 0;
  for (const Submission* s : group) total += s->inputs.rows();
  group_inputs_.resize(total, mlp_.input_dim());
  group_grad_y_.resize(total, mlp_.output_dim());
  Eigen::Index row = 0;
  for (const Submission* s : group) {
    group_inputs_.middleRows(row, s->inputs.rows()) = s->inputs;
    row += s->inputs.rows();
  }
  if (!mlp_.Forward(params_, group_inputs_, workspace_).ok()) return false;

  std::vector<double> losses;
  std::vector<uint64_t> staleness;
  std::vector<float> scales;
  row = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    const Submission& s = *group[i];
    const Eigen::Index n = s.inputs.rows();
    staleness.push_back(version_ - s.version);
    scales.push_back(replay_scales ? (*replay_scales)[i]
                     : options_.staleness_scaled_lr
                         ? 1.0f / (1.0f + static_cast<float>(staleness.back()))
                         : 1.0f);
    absl::StatusOr<double> loss =
        model::Surrogate(options_.surrogate, s.objective, workspace_.output().middleRows(row, n),
                         s.acted, s.deltas, &grad_y_);
    if (!loss.ok() || !std::isfinite(*loss)) return false;
    if (scales.back() != 1.0f) grad_y_ *= scales.back();
    group_grad_y_.middleRows(row, n) = grad_y_;
    losses.push_back(*loss);
    row += n;
  }
  std::fill(submission_grad_.begin(), submission_grad_.end(), 0.0f);
  if (!mlp_.Backward(params_, group_inputs_, workspace_, group_grad_y_,
                     absl::MakeSpan(submission_grad_))
           .ok() ||
      !model::CheckFinite("gradient", submission_grad_).ok()) {
    return false;
  }
  const uint64_t version_before = version_;
  absl::StatusOr<bool> stepped = Accumulate(static_cast<uint64_t>(total));
  if (!stepped.ok()) return false;

  results->clear();
  for (size_t i = 0; i < group.size(); ++i) {
    const Submission& s = *group[i];
    const bool last = i + 1 == group.size();
    SubmitResult result{last ? version_ : version_before, losses[i], staleness[i],
                        /*stepped=*/last && *stepped};
    if (options_.metrics) {
      options_.metrics->RecordSubmissionApplied(static_cast<uint64_t>(s.inputs.rows()),
                                                staleness[i], losses[i]);
    }
    if (!s.request_id.empty()) applied_ids_.Remember(s.request_id, result);
    if (!replay_scales) JournalSubmission(s, scales[i], /*batched_with_next=*/!last);
    results->push_back(result);
  }
  changed_since_checkpoint_ = true;
  return true;
}

}  // namespace deltaserve::server
