// SubmitAndWait: a Trainer::Submit whose answer the test waits for, shared by
// the core tests (tests/server, tests/persist). No gRPC.
#ifndef DELTASERVE_TESTS_SERVER_SUBMIT_AND_WAIT_H_
#define DELTASERVE_TESTS_SERVER_SUBMIT_AND_WAIT_H_

#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/core/trainer.h"

namespace deltaserve::server::testing {

// Submits and waits for the learner's answer: Submit's own error, or the
// callback's result. A callback that does not come within `timeout` fails
// the test (the result is then UNKNOWN; a late callback writes to shared
// state, never to a dead stack frame).
inline absl::StatusOr<SubmitResult> SubmitAndWait(Trainer& trainer, Submission submission,
                                                  absl::Duration timeout = absl::Seconds(30)) {
  struct Slot {
    absl::Notification done;
    absl::StatusOr<SubmitResult> result = absl::UnknownError("no answer");
  };
  auto slot = std::make_shared<Slot>();
  absl::Status queued =
      trainer.Submit(std::move(submission), [slot](absl::StatusOr<SubmitResult> r) {
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

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_SUBMIT_AND_WAIT_H_
