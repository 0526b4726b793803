// The simulators' one retry policy. sim/runner.h applies it to every RPC a
// simulator makes; the decision depends only on the status code:
//
//   OK                  done.
//   ABORTED             (SubmitDelta) the δ was computed at a version more
//                       than the model's max_staleness behind. Refetch the
//                       outputs for the same inputs at the server's latest
//                       version (a Forward round trip, whatever the simulator
//                       acts with), recompute the submission at them and send
//                       it again; at most RetryPolicy::max_refetches times per
//                       submission. On any other RPC ABORTED fails.
//   RESOURCE_EXHAUSTED  the learner's queue is full (or a message too big),
//   UNAVAILABLE         or the server is unreachable or shutting down: wait
//                       and send the same request again, with exponential
//                       backoff (initial_backoff doubling up to max_backoff),
//                       while the waits of this call add up to at most
//                       RetryPolicy::retry_for (--retry_for, default 10 min:
//                       long enough to ride out a trainer's restart, its
//                       pod's rescheduling or a Slurm requeue).
//   anything else       fail: the status is returned unchanged.
//
// A spent budget fails too, with the status's code and a message that says
// how many tries were made. Nothing is dropped silently: a failed call ends
// the simulator (exit code 1, sim/sim_main.h).
#ifndef DELTASERVE_SIM_RETRY_H_
#define DELTASERVE_SIM_RETRY_H_

#include <functional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::sim {

struct RetryPolicy {
  int max_refetches = 3;  // ABORTED: refetch-and-resend rounds per submission
  // RESOURCE_EXHAUSTED / UNAVAILABLE: the most a call waits in all (the sum
  // of its backoffs, not counting the tries themselves).
  absl::Duration retry_for = absl::Minutes(10);
  absl::Duration initial_backoff = absl::Milliseconds(20);
  absl::Duration max_backoff = absl::Seconds(2);
};

enum class RetryAction {
  kDone,     // OK
  kRefetch,  // ABORTED
  kBackoff,  // RESOURCE_EXHAUSTED, UNAVAILABLE
  kFail,     // anything else
};

RetryAction RetryActionFor(const absl::Status& status);

// What the retries cost a simulator, for its summary line.
struct RetryCounts {
  int refetches = 0;  // ABORTED replies (each followed by a refetch)
  int backoffs = 0;   // waits after RESOURCE_EXHAUSTED / UNAVAILABLE
};

// Calls `attempt` until it returns a status that is not kBackoff, waiting
// between tries as the policy says; returns that status, or the last one
// (annotated) once the next wait would take the call's waits past retry_for. Counts waits in
// *counts.
absl::Status WithBackoff(const RetryPolicy& policy, RetryCounts* counts,
                         absl::FunctionRef<absl::Status()> attempt);

// Same for a call with a value: WithBackoff<client::ForwardResult>(...).
template <typename T>
absl::StatusOr<T> WithBackoff(const RetryPolicy& policy, RetryCounts* counts,
                              absl::FunctionRef<absl::StatusOr<T>()> call) {
  absl::StatusOr<T> result = absl::UnknownError("never called");
  const absl::Status status = WithBackoff(policy, counts, [&]() -> absl::Status {
    result = call();
    return result.status();
  });
  if (!status.ok()) return status;
  return result;
}

// A batch's submission at the model's outputs on its inputs: δ (and ỹ, if
// sent) computed at `outputs.outputs`, version = outputs.version. Called with
// the outputs acted on first, then with refetched ones after ABORTED.
using SubmissionBuilder =
    std::function<client::DeltaSubmission(const client::ForwardResult& outputs)>;

// The two RPCs a submission may need (sim::Runner binds them to its client).
struct SubmitRpcs {
  std::function<absl::StatusOr<client::SubmitDeltaResult>(const client::DeltaSubmission&)> submit;
  // Outputs for `inputs` at the server's latest version.
  std::function<absl::StatusOr<client::ForwardResult>(const model::Matrix& inputs)> refetch;
};

// Sends build(acted) and applies the policy: ABORTED → rpcs.refetch(the
// submission's inputs) and send build(fresh); RESOURCE_EXHAUSTED /
// UNAVAILABLE (of either RPC) → back off and resend; anything else → return
// it. Returns the server's answer to the submission that was accepted.
absl::StatusOr<client::SubmitDeltaResult> SubmitWithRetry(const RetryPolicy& policy,
                                                          const SubmitRpcs& rpcs,
                                                          const SubmissionBuilder& build,
                                                          const client::ForwardResult& acted,
                                                          RetryCounts* counts);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_RETRY_H_
