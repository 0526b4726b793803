// client::Session against a real server on loopback: answers equal the unary
// calls', errors carry the unary code and message, many threads and many
// calls in flight within the bound, Close, cancel and server shutdown.
#include "deltaserve/client/session.h"

#include <atomic>
#include <cmath>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "deltaserve/tests/client/fake_trainer_stub.h"
#include "deltaserve/tests/client/test_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::testing::HasSubstr;
using testing::kInputDim;
using testing::kModelName;
using testing::kOutputDim;

model::Matrix Inputs(int rows, float seed) {
  model::Matrix x(rows, kInputDim);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = std::cos(seed + 0.3f * i);
  return x;
}

DeltaSubmission OnesSubmission(uint64_t version = 0) {
  DeltaSubmission s;
  s.inputs = Inputs(1, 1.0f);
  s.deltas = model::Matrix::Ones(1, kOutputDim);
  s.version = version;
  return s;
}

class SessionTest : public testing::ServerTest {
 protected:
  std::unique_ptr<Session> Open(size_t max_in_flight = kDefaultSessionInFlight) {
    absl::StatusOr<std::unique_ptr<Session>> session = client->OpenSession(max_in_flight);
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? *std::move(session) : nullptr;
  }
};

TEST_F(SessionTest, AnswersEqualTheUnaryCallsAndErrorsCarryTheirStatus) {
  std::unique_ptr<Session> session = Open();
  ASSERT_NE(session, nullptr);
  const model::Matrix x = Inputs(3, 0.5f);
  absl::StatusOr<ForwardResult> streamed = session->ForwardSync(x, kModelName);
  absl::StatusOr<ForwardResult> unary = client->Forward(x, kModelName);
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  ASSERT_TRUE(unary.ok());
  EXPECT_EQ(streamed->outputs, unary->outputs);
  EXPECT_EQ(streamed->version, unary->version);

  const model::Matrix wrong = model::Matrix::Ones(1, kInputDim + 1);
  absl::StatusOr<ForwardResult> bad = session->ForwardSync(wrong, kModelName);
  EXPECT_EQ(bad.status(), client->Forward(wrong, kModelName).status());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session->ForwardSync(x, "nope").status().code(), absl::StatusCode::kNotFound);

  // The stream goes on after the errors.
  absl::StatusOr<SubmitDeltaResult> submitted =
      session->SubmitDeltaSync(OnesSubmission(), kModelName);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  EXPECT_TRUE(submitted->stepped);
  EXPECT_EQ(submitted->version, 1u);
  // The same request_id again is answered as a duplicate: nothing applied.
  DeltaSubmission again = OnesSubmission();
  again.request_id = "fixed-id";
  ASSERT_TRUE(session->SubmitDeltaSync(again, kModelName).ok());
  absl::StatusOr<SubmitDeltaResult> retried = session->SubmitDeltaSync(again, kModelName);
  ASSERT_TRUE(retried.ok());
  EXPECT_TRUE(retried->duplicate);
  EXPECT_EQ(client->GetParameters(kModelName)->version, 2u);
  EXPECT_TRUE(session->Close().ok());
}

TEST_F(SessionTest, ManyThreadsKeepManyCallsInFlightWithinTheBound) {
  constexpr size_t kBound = 4;
  std::unique_ptr<Session> session = Open(kBound);
  ASSERT_NE(session, nullptr);
  constexpr int kThreads = 4;
  constexpr int kCalls = 50;
  std::atomic<int> answered{0};
  std::atomic<size_t> most_in_flight{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::future<absl::StatusOr<ForwardResult>>> futures;
      for (int i = 0; i < kCalls; ++i) {
        futures.push_back(session->Forward(Inputs(1, static_cast<float>(t * 100 + i)), kModelName));
        size_t now = session->in_flight();
        size_t seen = most_in_flight.load();
        while (now > seen && !most_in_flight.compare_exchange_weak(seen, now)) {
        }
      }
      for (int i = 0; i < kCalls; ++i) {
        absl::StatusOr<ForwardResult> result = futures[i].get();
        ASSERT_TRUE(result.ok()) << result.status();
        EXPECT_EQ(result->outputs,
                  client->Forward(Inputs(1, static_cast<float>(t * 100 + i)), kModelName)->outputs);
        ++answered;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(answered.load(), kThreads * kCalls);
  EXPECT_LE(most_in_flight.load(), kBound);
  EXPECT_EQ(session->in_flight(), 0u);
}

TEST_F(SessionTest, CloseWaitsForEveryAnswerAndRefusesLaterCalls) {
  std::unique_ptr<Session> session = Open();
  ASSERT_NE(session, nullptr);
  constexpr int kCalls = 20;
  std::atomic<int> ok{0};
  for (int i = 0; i < kCalls; ++i) {
    session->SubmitDelta(
        OnesSubmission(),
        [&](absl::StatusOr<SubmitDeltaResult> result) {
          if (result.ok()) ++ok;
        },
        kModelName);
  }
  EXPECT_TRUE(session->Close().ok());
  EXPECT_EQ(ok.load(), kCalls);
  EXPECT_EQ(client->GetParameters(kModelName)->version, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(session->ForwardSync(Inputs(1, 0), kModelName).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionTest, ServerShutdownFailsTheSessionUnavailable) {
  std::unique_ptr<Session> session = Open();
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(session->ForwardSync(Inputs(1, 0), kModelName).ok());
  server->Shutdown();
  absl::StatusOr<ForwardResult> after = session->ForwardSync(Inputs(1, 0), kModelName);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
  EXPECT_EQ(session->Close().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SessionTest, DestroyingAnOpenSessionAnswersEveryCallOnce) {
  std::atomic<int> answered{0};
  {
    std::unique_ptr<Session> session = Open();
    ASSERT_NE(session, nullptr);
    for (int i = 0; i < 30; ++i) {
      session->Forward(
          Inputs(1, static_cast<float>(i)),
          [&](absl::StatusOr<ForwardResult> result) {
            EXPECT_TRUE(result.ok() || absl::IsCancelled(result.status())) << result.status();
            ++answered;
          },
          kModelName);
    }
  }
  EXPECT_EQ(answered.load(), 30);
}

TEST(SessionWithoutCallbackApi, OpenSessionIsUnimplemented) {
  auto stub = std::make_shared<testing::FakeTrainerStub>();
  TrainerClient client(stub);
  EXPECT_EQ(client.OpenSession().status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(client.OpenSession(0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::client
