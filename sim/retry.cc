#include "deltaserve/sim/retry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::sim {
namespace {

// `status` with its code kept and the number of tries put in front.
absl::Status GaveUp(const absl::Status& status, absl::string_view what, int tries) {
  return absl::Status(status.code(),
                      absl::StrCat("gave up after ", tries, " ", what, ": ", status.message()));
}

}  // namespace

RetryAction RetryActionFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return RetryAction::kDone;
    case absl::StatusCode::kAborted:
      return RetryAction::kRefetch;
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
      return RetryAction::kBackoff;
    default:
      return RetryAction::kFail;
  }
}

absl::Status WithBackoff(const RetryPolicy& policy, RetryCounts* counts,
                         absl::FunctionRef<absl::Status()> attempt) {
  absl::Duration wait = policy.initial_backoff;
  absl::Duration waited;  // The sum of the waits asked for (deterministic, unlike a clock).
  for (int waits = 0;; ++waits) {
    absl::Status status = attempt();
    if (RetryActionFor(status) != RetryAction::kBackoff) return status;
    if (waited + wait > policy.retry_for) {
      return GaveUp(
          status,
          absl::StrCat("backoffs (", absl::FormatDuration(waited),
                       " of waiting; --retry_for=", absl::FormatDuration(policy.retry_for), ")"),
          waits);
    }
    absl::SleepFor(wait);
    waited += wait;
    wait = std::min(2 * wait, policy.max_backoff);
    ++counts->backoffs;
  }
}

absl::StatusOr<client::SubmitDeltaResult> SubmitWithRetry(const RetryPolicy& policy,
                                                          const SubmitRpcs& rpcs,
                                                          const SubmissionBuilder& build,
                                                          const client::ForwardResult& acted,
                                                          RetryCounts* counts) {
  client::DeltaSubmission submission = build(acted);
  // One id per submission, kept across the backoff retries below (the server
  // applies it once); a rebuilt submission after a refetch is a new one.
  if (submission.request_id.empty()) submission.request_id = client::NewRequestId();
  for (int refetches = 0;; ++refetches) {
    absl::StatusOr<client::SubmitDeltaResult> result = WithBackoff<client::SubmitDeltaResult>(
        policy, counts, [&] { return rpcs.submit(submission); });
    if (RetryActionFor(result.status()) != RetryAction::kRefetch) return result;
    if (refetches == policy.max_refetches) {
      return GaveUp(result.status(), "refetches", refetches);
    }
    ++counts->refetches;
    DELTASERVE_ASSIGN_OR_RETURN(client::ForwardResult fresh,
                                WithBackoff<client::ForwardResult>(policy, counts, [&] {
                                  return rpcs.refetch(submission.inputs);
                                }));
    submission = build(fresh);
    if (submission.request_id.empty()) submission.request_id = client::NewRequestId();
  }
}

}  // namespace deltaserve::sim
