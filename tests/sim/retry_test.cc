// The simulators' retry policy (sim/retry.h): which codes are retried, how,
// and that spent budgets and other codes fail with the server's code.
#include "deltaserve/sim/retry.h"

#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

RetryPolicy FastPolicy() {
  RetryPolicy policy;
  policy.initial_backoff = absl::Microseconds(1);
  policy.max_backoff = absl::Microseconds(4);
  return policy;
}

TEST(RetryActionFor, RefetchesAbortedBacksOffTransientAndFailsTheRest) {
  EXPECT_EQ(RetryActionFor(absl::OkStatus()), RetryAction::kDone);
  EXPECT_EQ(RetryActionFor(absl::AbortedError("stale")), RetryAction::kRefetch);
  EXPECT_EQ(RetryActionFor(absl::ResourceExhaustedError("full")), RetryAction::kBackoff);
  EXPECT_EQ(RetryActionFor(absl::UnavailableError("down")), RetryAction::kBackoff);
  for (const absl::Status& status :
       {absl::InvalidArgumentError(""), absl::NotFoundError(""), absl::DeadlineExceededError(""),
        absl::FailedPreconditionError(""), absl::InternalError(""), absl::CancelledError("")}) {
    EXPECT_EQ(RetryActionFor(status), RetryAction::kFail) << status;
  }
}

TEST(WithBackoff, RetriesTransientCodesUntilOk) {
  RetryCounts counts;
  std::vector<absl::Status> replies = {absl::UnavailableError("down"),
                                       absl::ResourceExhaustedError("full"), absl::OkStatus()};
  int calls = 0;
  EXPECT_TRUE(WithBackoff(FastPolicy(), &counts, [&] { return replies[calls++]; }).ok());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(counts.backoffs, 2);
}

TEST(WithBackoff, GivesUpWithTheCodeOnceTheBudgetIsSpent) {
  RetryPolicy policy = FastPolicy();
  // Waits of 1, 2 and 4 us fit in 7 us; the next (4 us, the cap) does not.
  policy.retry_for = absl::Microseconds(7);
  RetryCounts counts;
  int calls = 0;
  const absl::Status status = WithBackoff(policy, &counts, [&] {
    ++calls;
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("gave up after 3 backoffs (7us of waiting; --retry_for=7us)"),
            absl::string_view::npos)
      << status;
  EXPECT_NE(status.message().find("down"), absl::string_view::npos) << status;
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(counts.backoffs, 3);
}

TEST(WithBackoff, ReturnsOtherCodesAtOnce) {
  RetryCounts counts;
  int calls = 0;
  const absl::StatusOr<int> result = WithBackoff<int>(FastPolicy(), &counts, [&] {
    ++calls;
    return absl::StatusOr<int>(absl::AbortedError("stale"));
  });
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(counts.backoffs, 0);
}

// A submission whose δ records the outputs' version, so tests can see which
// outputs it was built at.
client::DeltaSubmission BuildAt(const client::ForwardResult& outputs) {
  client::DeltaSubmission submission;
  submission.inputs = model::Matrix::Constant(1, 1, 7.0f);
  submission.acted_outputs = outputs.outputs;
  submission.deltas = model::Matrix::Constant(1, 1, static_cast<float>(outputs.version));
  submission.version = outputs.version;
  return submission;
}

client::ForwardResult OutputsAt(uint64_t version) {
  return {model::Matrix::Constant(1, 1, 0.0f), version};
}

// RPCs whose SubmitDelta always answers `reply` (counted in *submits) and
// whose refetch returns version 1.
SubmitRpcs AlwaysReplying(absl::Status reply, int* submits) {
  SubmitRpcs rpcs;
  rpcs.submit = [reply, submits](
                    const client::DeltaSubmission&) -> absl::StatusOr<client::SubmitDeltaResult> {
    ++*submits;
    return reply;
  };
  rpcs.refetch = [](const model::Matrix&) -> absl::StatusOr<client::ForwardResult> {
    return OutputsAt(1);
  };
  return rpcs;
}

TEST(SubmitWithRetry, AbortedRefetchesTheInputsAndResendsAtTheFreshVersion) {
  std::vector<uint64_t> sent;
  std::vector<float> refetched;
  SubmitRpcs rpcs;
  rpcs.submit = [&](const client::DeltaSubmission& s) -> absl::StatusOr<client::SubmitDeltaResult> {
    sent.push_back(s.version);
    if (s.version < 10) return absl::AbortedError("stale");
    return client::SubmitDeltaResult{11, 0.0, 0, true};
  };
  rpcs.refetch = [&](const model::Matrix& inputs) -> absl::StatusOr<client::ForwardResult> {
    refetched.push_back(inputs(0, 0));
    return OutputsAt(10);
  };
  RetryCounts counts;
  const absl::StatusOr<client::SubmitDeltaResult> result =
      SubmitWithRetry(FastPolicy(), rpcs, BuildAt, OutputsAt(3), &counts);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 11u);
  EXPECT_EQ(sent, (std::vector<uint64_t>{3, 10}));
  EXPECT_EQ(refetched, std::vector<float>{7.0f});  // the submission's own inputs
  EXPECT_EQ(counts.refetches, 1);
}

TEST(SubmitWithRetry, StillAbortedAfterMaxRefetchesFailsAborted) {
  RetryPolicy policy = FastPolicy();
  policy.max_refetches = 2;
  int submits = 0;
  const SubmitRpcs rpcs = AlwaysReplying(absl::AbortedError("stale"), &submits);
  RetryCounts counts;
  const absl::StatusOr<client::SubmitDeltaResult> result =
      SubmitWithRetry(policy, rpcs, BuildAt, OutputsAt(0), &counts);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(submits, 3);
  EXPECT_EQ(counts.refetches, 2);
}

TEST(SubmitWithRetry, QueueFullBacksOffAndResendsTheSameSubmission) {
  std::vector<uint64_t> sent;
  SubmitRpcs rpcs;
  rpcs.submit = [&](const client::DeltaSubmission& s) -> absl::StatusOr<client::SubmitDeltaResult> {
    sent.push_back(s.version);
    if (sent.size() < 3) return absl::ResourceExhaustedError("queue full");
    return client::SubmitDeltaResult{};
  };
  rpcs.refetch = [](const model::Matrix&) -> absl::StatusOr<client::ForwardResult> {
    ADD_FAILURE() << "no refetch for RESOURCE_EXHAUSTED";
    return OutputsAt(0);
  };
  RetryCounts counts;
  EXPECT_TRUE(SubmitWithRetry(FastPolicy(), rpcs, BuildAt, OutputsAt(5), &counts).ok());
  EXPECT_EQ(sent, (std::vector<uint64_t>{5, 5, 5}));
  EXPECT_EQ(counts.backoffs, 2);
}

TEST(SubmitWithRetry, OtherCodesFailAtOnce) {
  int submits = 0;
  const SubmitRpcs rpcs = AlwaysReplying(absl::InvalidArgumentError("bad shape"), &submits);
  RetryCounts counts;
  const absl::StatusOr<client::SubmitDeltaResult> result =
      SubmitWithRetry(FastPolicy(), rpcs, BuildAt, OutputsAt(0), &counts);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(submits, 1);
}

}  // namespace
}  // namespace deltaserve::sim
