// SubmitAndWait / ImportAndWait: a Trainer::Submit / ImportParameters whose
// answer the test waits for, shared by the core tests (tests/server,
// tests/persist). No gRPC.
#ifndef DELTASERVE_TESTS_SERVER_SUBMIT_AND_WAIT_H_
#define DELTASERVE_TESTS_SERVER_SUBMIT_AND_WAIT_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/trainer.h"
#include "gtest/gtest.h"

namespace deltaserve::server::testing {

// Calls `queue(callback)` (which queues work on a Trainer and returns its
// status) and waits for the learner's answer: queue's own error, or the
// callback's result. A callback that does not come within `timeout` fails
// the test (the result is then UNKNOWN; a late callback writes to shared
// state, never to a dead stack frame).
template <typename Queue>
absl::StatusOr<SubmitResult> AwaitAnswer(Queue queue, absl::Duration timeout) {
  struct Slot {
    absl::Notification done;
    absl::StatusOr<SubmitResult> result = absl::UnknownError("no answer");
  };
  auto slot = std::make_shared<Slot>();
  absl::Status queued = queue([slot](absl::StatusOr<SubmitResult> r) {
    slot->result = std::move(r);
    slot->done.Notify();
  });
  if (!queued.ok()) return queued;
  if (!slot->done.WaitForNotificationWithTimeout(timeout)) {
    ADD_FAILURE() << "no answer from the learner within " << absl::FormatDuration(timeout);
    return absl::UnknownError("no answer");
  }
  return slot->result;
}

// Submits and waits for the learner's answer (AwaitAnswer).
inline absl::StatusOr<SubmitResult> SubmitAndWait(Trainer& trainer, Submission submission,
                                                  absl::Duration timeout = absl::Seconds(30)) {
  return AwaitAnswer(
      [&](Trainer::SubmitCallback done) {
        return trainer.Submit(std::move(submission), std::move(done));
      },
      timeout);
}

// Imports `parameters` and waits for the learner's answer (AwaitAnswer).
inline absl::StatusOr<SubmitResult> ImportAndWait(Trainer& trainer, std::vector<float> parameters,
                                                  absl::Duration timeout = absl::Seconds(30)) {
  return AwaitAnswer(
      [&](Trainer::SubmitCallback done) {
        return trainer.ImportParameters(std::move(parameters), std::move(done));
      },
      timeout);
}

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_SUBMIT_AND_WAIT_H_
