// The Session stream over a real server on loopback: calls answered by id
// exactly as their unary rpcs would answer them, per-call errors that leave
// the stream open, flow control against a client that does not read,
// cancellation, shutdown, metrics — and Forward batching seen from the wire.
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/server/service/session_reactor.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using ::testing::HasSubstr;
using testing::kWait;
using testing::Sample;
using testing::WireMatrix;

using SessionStream = grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionResponse>;

v1::SessionRequest ForwardCall(uint64_t id, v1::Matrix inputs, const std::string& model = "m") {
  v1::SessionRequest request;
  request.set_id(id);
  request.mutable_forward()->set_model(model);
  *request.mutable_forward()->mutable_inputs() = std::move(inputs);
  return request;
}

v1::SessionRequest SubmitCall(uint64_t id, const v1::SubmitDeltaRequest& submit) {
  v1::SessionRequest request;
  request.set_id(id);
  *request.mutable_submit() = submit;
  return request;
}

v1::Matrix Row(float a) { return WireMatrix(1, 4, {a, -a, 0.5f * a, 1.0f}); }

// Each test runs twice, once per Forward path: this small model's Forwards
// are computed in the reaction by default, and with min_batch_macs: 1 every
// one goes to the batcher thread, whose answers reach the stream from
// outside any reaction.
class SessionTest : public testing::LoopbackServerTest,
                    public ::testing::WithParamInterface<std::string> {
 protected:
  void Start(const std::string& extra = "max_staleness: 1000") {
    StartServer(testing::SmallModelConfig(absl::StrCat(extra, " ", GetParam())));
  }

  v1::SubmitDeltaRequest OneRowSubmit(uint64_t version = 0) {
    v1::SubmitDeltaRequest request;
    request.set_model("m");
    *request.mutable_inputs() = WireMatrix(1, 4, {0.5f, 0.5f, 0.5f, 0.5f});
    *request.mutable_deltas() = WireMatrix(1, 2, {1.0f, 1.0f});
    request.set_version(version);
    return request;
  }

  // Reads `n` answers, keyed by id (each id at most once).
  static std::map<uint64_t, v1::SessionResponse> ReadAnswers(SessionStream& stream, size_t n) {
    std::map<uint64_t, v1::SessionResponse> answers;
    v1::SessionResponse response;
    while (answers.size() < n && stream.Read(&response)) {
      EXPECT_TRUE(answers.emplace(response.id(), response).second) << "id " << response.id();
    }
    return answers;
  }

  double Count(const std::string& rpc, const std::string& code, const std::string& model = "m") {
    return Sample(server_->metrics()->Scrape(), "deltaserve_rpc_requests_total",
                  {{"model", model}, {"rpc", rpc}, {"code", code}})
        .value_or(-1);
  }
};

TEST_P(SessionTest, CallsAreAnsweredByIdExactlyAsTheirUnaryRpcs) {
  Start();
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  v1::SubmitDeltaRequest bad_submit = OneRowSubmit();
  *bad_submit.mutable_deltas() = WireMatrix(1, 3, {1, 2, 3});
  v1::ForwardRequest unknown_model;
  unknown_model.set_model("nope");
  *unknown_model.mutable_inputs() = Row(1);
  ASSERT_TRUE(stream->Write(ForwardCall(7, Row(1.5f))));
  ASSERT_TRUE(stream->Write(ForwardCall(9, WireMatrix(1, 3, {1, 2, 3}))));
  ASSERT_TRUE(stream->Write(ForwardCall(10, Row(1), "nope")));
  ASSERT_TRUE(stream->Write(SubmitCall(11, bad_submit)));
  std::map<uint64_t, v1::SessionResponse> answers = ReadAnswers(*stream, 4);
  ASSERT_EQ(answers.size(), 4u);

  // The answer: bit-identical to the unary Forward at the same version.
  v1::ForwardResponse unary;
  v1::ForwardRequest same;
  same.set_model("m");
  *same.mutable_inputs() = Row(1.5f);
  ASSERT_TRUE(stub_->Forward(Context().get(), same, &unary).ok());
  ASSERT_EQ(answers[7].result_case(), v1::SessionResponse::kForward);
  EXPECT_EQ(answers[7].forward().SerializeAsString(), unary.SerializeAsString());

  // Errors: the unary rpc's code and message.
  auto expect_error = [&](uint64_t id, const grpc::Status& unary_status) {
    ASSERT_EQ(answers[id].result_case(), v1::SessionResponse::kError) << id;
    EXPECT_NE(unary_status.error_code(), grpc::StatusCode::OK) << id;
    EXPECT_EQ(answers[id].error().code(), static_cast<int>(unary_status.error_code())) << id;
    EXPECT_EQ(answers[id].error().message(), unary_status.error_message()) << id;
  };
  v1::ForwardRequest bad_forward;
  bad_forward.set_model("m");
  *bad_forward.mutable_inputs() = WireMatrix(1, 3, {1, 2, 3});
  v1::ForwardResponse ignored;
  expect_error(9, stub_->Forward(Context().get(), bad_forward, &ignored));
  expect_error(10, stub_->Forward(Context().get(), unknown_model, &ignored));
  expect_error(11, Submit(bad_submit));

  // A good submission after the bad ones, on the same stream.
  ASSERT_TRUE(stream->Write(SubmitCall(12, OneRowSubmit())));
  answers = ReadAnswers(*stream, 1);
  ASSERT_EQ(answers[12].result_case(), v1::SessionResponse::kSubmit);
  EXPECT_EQ(answers[12].submit().version(), 1u);
  EXPECT_TRUE(answers[12].submit().stepped());

  ASSERT_TRUE(stream->WritesDone());
  v1::SessionResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();

  // Counted by kind and code, before each answer was written.
  EXPECT_EQ(Count("SessionForward", "OK"), 1.0);
  EXPECT_EQ(Count("SessionForward", "INVALID_ARGUMENT"), 1.0);
  EXPECT_EQ(Count("SessionForward", "NOT_FOUND", ""), 1.0);
  EXPECT_EQ(Count("SessionSubmitDelta", "INVALID_ARGUMENT"), 1.0);
  EXPECT_EQ(Count("SessionSubmitDelta", "OK"), 1.0);
}

TEST_P(SessionTest, ARequestWithoutACallIsACallErrorAndTheStreamGoesOn) {
  Start();
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  v1::SessionRequest empty;
  empty.set_id(3);
  ASSERT_TRUE(stream->Write(empty));
  ASSERT_TRUE(stream->Write(ForwardCall(4, Row(2))));
  std::map<uint64_t, v1::SessionResponse> answers = ReadAnswers(*stream, 2);
  ASSERT_EQ(answers[3].result_case(), v1::SessionResponse::kError);
  EXPECT_EQ(answers[3].error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(answers[3].error().message(), HasSubstr("expected a SessionRequest with `forward`"));
  EXPECT_EQ(answers[4].result_case(), v1::SessionResponse::kForward);
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

// input_gradient calls answer like the unary rpc (a bad one: its error as a
// CallError, and the stream goes on); a submit asking for it gets it.
TEST_P(SessionTest, InputGradientCallsAnswerLikeTheUnaryRpc) {
  Start();
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  v1::InputGradientRequest bad;
  *bad.mutable_inputs() = Row(1);
  *bad.mutable_deltas() = WireMatrix(1, 3, {1, 2, 3});
  v1::InputGradientRequest good = bad;
  *good.mutable_deltas() = WireMatrix(1, 2, {1, -2});
  v1::SessionRequest call;
  call.set_id(5);
  *call.mutable_input_gradient() = bad;
  ASSERT_TRUE(stream->Write(call));
  call.set_id(6);
  *call.mutable_input_gradient() = good;
  ASSERT_TRUE(stream->Write(call));
  std::map<uint64_t, v1::SessionResponse> answers = ReadAnswers(*stream, 2);
  ASSERT_EQ(answers[5].result_case(), v1::SessionResponse::kError);
  v1::InputGradientResponse unary;
  const grpc::Status refused = stub_->InputGradient(Context().get(), bad, &unary);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(answers[5].error().code(), static_cast<int>(refused.error_code()));
  EXPECT_EQ(answers[5].error().message(), refused.error_message());
  ASSERT_EQ(answers[6].result_case(), v1::SessionResponse::kInputGradient);
  ASSERT_TRUE(stub_->InputGradient(Context().get(), good, &unary).ok());
  EXPECT_EQ(answers[6].input_gradient().SerializeAsString(), unary.SerializeAsString())
      << "the same version, the same bits";

  v1::SubmitDeltaRequest asking = OneRowSubmit();
  asking.set_return_input_gradient(true);
  ASSERT_TRUE(stream->Write(SubmitCall(7, asking)));
  answers = ReadAnswers(*stream, 1);
  ASSERT_EQ(answers[7].result_case(), v1::SessionResponse::kSubmit);
  EXPECT_EQ(answers[7].submit().input_gradient().rows(), 1u);
  EXPECT_EQ(answers[7].submit().input_gradient().cols(), 4u);
  EXPECT_FALSE(answers[7].submit().has_parameters());
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

// A submit asking for the parameters gets the weights its answer's version
// has, as GetParameters returns them (nothing else submits).
TEST_P(SessionTest, ASubmitAskingForTheParametersGetsThem) {
  Start();
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  v1::SubmitDeltaRequest asking = OneRowSubmit();
  asking.set_return_parameters(true);
  ASSERT_TRUE(stream->Write(SubmitCall(3, asking)));
  std::map<uint64_t, v1::SessionResponse> answers = ReadAnswers(*stream, 1);
  ASSERT_EQ(answers[3].result_case(), v1::SessionResponse::kSubmit);
  const v1::SubmitDeltaResponse& answer = answers[3].submit();
  ASSERT_TRUE(answer.has_parameters());
  EXPECT_EQ(answer.parameters().version(), answer.version());
  v1::GetParametersRequest request;
  v1::ParameterUpdate newest;
  ASSERT_TRUE(stub_->GetParameters(Context().get(), request, &newest).ok());
  EXPECT_EQ(answer.parameters().SerializeAsString(), newest.SerializeAsString());
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

// A raw bidi client, for bytes the typed stub cannot send.
class RawSession final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawSession(grpc::GenericStub& stub, grpc::ClientContext* context, const std::string& bytes) {
    grpc::Slice slice(bytes.data(), bytes.size());
    request_ = grpc::ByteBuffer(&slice, 1);
    stub.PrepareBidiStreamingCall(context, "/deltaserve.v1.Trainer/Session", grpc::StubOptions(),
                                  this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }
  bool Wait() { return done_.WaitForNotificationWithTimeout(kWait); }
  const grpc::Status& status() const { return status_; }

 private:
  grpc::ByteBuffer request_, response_;
  grpc::Status status_;
  absl::Notification done_;
};

TEST_P(SessionTest, BytesThatAreNotASessionRequestEndTheStreamInvalidArgument) {
  Start();
  grpc::GenericStub generic(channel_);
  auto context = Context();
  RawSession raw(generic, context.get(), "\xff\xff\xff\x0a");
  ASSERT_TRUE(raw.Wait());
  EXPECT_EQ(raw.status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(raw.status().error_message(),
              HasSubstr("expected a serialized deltaserve.v1.SessionRequest"));
  // The server goes on.
  auto other = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(other.get());
  ASSERT_TRUE(stream->Write(ForwardCall(1, Row(1))));
  EXPECT_EQ(ReadAnswers(*stream, 1)[1].result_case(), v1::SessionResponse::kForward);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// A client that waits for each answer, whose calls the learner answers,
// rejects (too stale) or that are rejected at once, and that then pipelines
// many calls at once and half-closes: every call is answered exactly once,
// in the learner's order, and the stream ends OK. (Answers from the learner
// thread start the stream's writes from outside any reaction.)
TEST_P(SessionTest, OneAtATimeThenPipelinedCallsAreEachAnsweredOnce) {
  Start("max_staleness: 3");
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  v1::SubmitDeltaRequest bad_submit = OneRowSubmit();
  *bad_submit.mutable_deltas() = WireMatrix(1, 3, {1, 2, 3});
  uint64_t version = 0;
  uint64_t id = 0;
  constexpr int kOneAtATime = 48;
  for (int i = 0; i < kOneAtATime; ++i, ++id) {
    // Every 7th call is too stale (the learner rejects it), every 11th has
    // the wrong shape (rejected before the learner).
    const bool stale = i % 7 == 6 && version > 3;
    const bool malformed = i % 11 == 10;
    ASSERT_TRUE(
        stream->Write(SubmitCall(id, malformed ? bad_submit : OneRowSubmit(stale ? 0 : version))));
    std::map<uint64_t, v1::SessionResponse> answers = ReadAnswers(*stream, 1);
    ASSERT_EQ(answers.size(), 1u) << "call " << id << " was not answered";
    const v1::SessionResponse& answer = answers.begin()->second;
    ASSERT_EQ(answer.id(), id);
    if (malformed) {
      ASSERT_EQ(answer.result_case(), v1::SessionResponse::kError) << id;
      EXPECT_EQ(answer.error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    } else if (stale) {
      ASSERT_EQ(answer.result_case(), v1::SessionResponse::kError) << id;
      EXPECT_EQ(answer.error().code(), static_cast<int>(grpc::StatusCode::ABORTED));
    } else {
      ASSERT_EQ(answer.result_case(), v1::SessionResponse::kSubmit) << id;
      EXPECT_EQ(answer.submit().version(), version + 1) << id;
      EXPECT_TRUE(answer.submit().stepped()) << id;
      version = answer.submit().version();
    }
  }
  // Pipelined: all written before any answer is read, all at `version`;
  // the learner applies them in order, so the first four step (staleness
  // 0..3) and the rest are too stale.
  constexpr uint64_t kPipelined = 64;
  const uint64_t first = id;
  for (uint64_t k = 0; k < kPipelined; ++k) {
    ASSERT_TRUE(stream->Write(SubmitCall(first + k, OneRowSubmit(version))));
  }
  ASSERT_TRUE(stream->WritesDone());
  std::map<uint64_t, v1::SessionResponse> answers = ReadAnswers(*stream, kPipelined);
  ASSERT_EQ(answers.size(), kPipelined);
  for (uint64_t k = 0; k < kPipelined; ++k) {
    const v1::SessionResponse& answer = answers[first + k];
    if (k < 4) {
      ASSERT_EQ(answer.result_case(), v1::SessionResponse::kSubmit) << k;
      EXPECT_EQ(answer.submit().version(), version + k + 1) << k;
    } else {
      ASSERT_EQ(answer.result_case(), v1::SessionResponse::kError) << k;
      EXPECT_EQ(answer.error().code(), static_cast<int>(grpc::StatusCode::ABORTED)) << k;
    }
  }
  v1::SessionResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(server_->trainer("m")->snapshot()->version, version + 4);
}

// Many clients at once, each waiting for each answer: every submission is
// answered exactly once, on its own stream, and each stepped to a version no
// other one got.
TEST_P(SessionTest, ConcurrentSessionsGetEverySubmissionAnsweredOnce) {
  Start();
  constexpr int kSessions = 8;
  constexpr int kCalls = 60;
  std::vector<std::vector<uint64_t>> versions(kSessions);
  std::vector<std::thread> clients;
  for (int s = 0; s < kSessions; ++s) {
    clients.emplace_back([&, s] {
      auto context = Context();
      std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
      for (int i = 0; i < kCalls; ++i) {
        const uint64_t id = static_cast<uint64_t>(s) * 1000 + static_cast<uint64_t>(i);
        if (!stream->Write(SubmitCall(id, OneRowSubmit()))) {
          ADD_FAILURE() << "session " << s << ": write of call " << i << " failed";
          return;
        }
        v1::SessionResponse answer;
        if (!stream->Read(&answer)) {
          ADD_FAILURE() << "session " << s << ": call " << i << " was not answered";
          return;
        }
        EXPECT_EQ(answer.id(), id);
        EXPECT_EQ(answer.result_case(), v1::SessionResponse::kSubmit) << answer.ShortDebugString();
        versions[static_cast<size_t>(s)].push_back(answer.submit().version());
      }
      EXPECT_TRUE(stream->WritesDone());
      v1::SessionResponse extra;
      EXPECT_FALSE(stream->Read(&extra)) << "an answer no call asked for";
      const grpc::Status status = stream->Finish();
      EXPECT_TRUE(status.ok()) << status.error_message();
    });
  }
  for (std::thread& t : clients) t.join();
  std::vector<uint64_t> all;
  for (const std::vector<uint64_t>& v : versions) all.insert(all.end(), v.begin(), v.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kSessions * kCalls));
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i + 1) << "versions 1.." << all.size();
  EXPECT_EQ(Count("SessionSubmitDelta", "OK"), kSessions * kCalls);
}

// With the learner held, every submission stays unanswered: the server reads
// exactly kDefaultMaxInFlight calls and then no more, however many the
// client sends — its writes stop at HTTP/2 flow control.
TEST_P(SessionTest, AClientThatFloodsCallsIsReadOnlyUpToTheInFlightBound) {
  gate_->Close();
  Start("max_staleness: 1000 queue_capacity: 100000");
  Trainer* trainer = server_->trainer("m");
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  constexpr int kSent = 200000;  // ~16 MB: more than any transport window.
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < kSent; ++i) {
      if (!stream->Write(SubmitCall(static_cast<uint64_t>(i), OneRowSubmit()))) return;
      ++written;
    }
  });
  const size_t bound = SessionReactor::kDefaultMaxInFlight;
  ASSERT_TRUE(trainer->AwaitQueued(bound, kWait));
  // One more would have to be read to be queued.
  EXPECT_FALSE(trainer->AwaitQueued(bound + 1, absl::Milliseconds(300)));
  EXPECT_EQ(trainer->queued(), bound);

  // Other clients are not affected.
  v1::ForwardRequest forward;
  forward.set_model("m");
  *forward.mutable_inputs() = Row(1);
  v1::ForwardResponse response;
  EXPECT_TRUE(stub_->Forward(Context().get(), forward, &response).ok());

  // Cancel: the writer is released, the stream ends CANCELLED.
  context->TryCancel();
  writer.join();
  EXPECT_LT(written.load(), kSent);
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  gate_->Open();
  // The learner applies what it had accepted; the server still serves.
  EXPECT_TRUE(Submit(OneRowSubmit()).ok());
}

// Forward answers come back at once, but the client reads none: the write
// queue fills, the server stops reading, others are unaffected, and cancel
// ends the stream.
TEST_P(SessionTest, AClientThatNeverReadsAnswersIsFlowControlled) {
  Start();
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  constexpr int kSent = 200000;
  std::atomic<int> written{0};
  absl::Notification many_written;
  std::thread writer([&] {
    for (int i = 0; i < kSent; ++i) {
      if (!stream->Write(ForwardCall(static_cast<uint64_t>(i), Row(0.25f)))) break;
      if (++written == 1000) many_written.Notify();
    }
  });
  ASSERT_TRUE(many_written.WaitForNotificationWithTimeout(kWait));
  // Another Session and a unary call on another connection work meanwhile.
  auto other_context = Context();
  std::unique_ptr<SessionStream> other = stub_->Session(other_context.get());
  ASSERT_TRUE(other->Write(ForwardCall(1, Row(1))));
  EXPECT_EQ(ReadAnswers(*other, 1)[1].result_case(), v1::SessionResponse::kForward);
  other->WritesDone();
  EXPECT_TRUE(other->Finish().ok());

  context->TryCancel();
  writer.join();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server answered only what fit in flight plus what the client's
  // transport took: far less than the client tried to send.
  EXPECT_LT(Count("SessionForward", "OK"), kSent / 4);
}

TEST_P(SessionTest, CancellingWithCallsInFlightEndsTheStreamAndLosesNothingElse) {
  gate_->Close();
  Start();
  Trainer* trainer = server_->trainer("m");
  auto context = Context();
  std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
  ASSERT_TRUE(stream->Write(SubmitCall(1, OneRowSubmit())));
  ASSERT_TRUE(trainer->AwaitQueued(1, kWait));
  context->TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  gate_->Open();
  // The accepted submission is still applied; the next one sees its step.
  v1::SubmitDeltaResponse next;
  ASSERT_TRUE(Submit(OneRowSubmit(), &next).ok());
  EXPECT_EQ(next.version(), 2u);
}

TEST_P(SessionTest, ShutdownEndsOpenSessionsUnavailableWithoutHanging) {
  gate_->Close();
  Start();
  Trainer* trainer = server_->trainer("m");
  auto idle_context = Context();
  std::unique_ptr<SessionStream> idle = stub_->Session(idle_context.get());
  ASSERT_TRUE(idle->Write(ForwardCall(1, Row(1))));
  ASSERT_EQ(ReadAnswers(*idle, 1)[1].result_case(), v1::SessionResponse::kForward);
  auto busy_context = Context();
  std::unique_ptr<SessionStream> busy = stub_->Session(busy_context.get());
  ASSERT_TRUE(busy->Write(SubmitCall(2, OneRowSubmit())));
  ASSERT_TRUE(trainer->AwaitQueued(1, kWait));

  absl::Notification shut_down;
  std::thread shutdown([&] {
    server_->Shutdown();
    shut_down.Notify();
  });
  ASSERT_TRUE(shut_down.WaitForNotificationWithTimeout(kWait));
  shutdown.join();
  for (SessionStream* stream : {idle.get(), busy.get()}) {
    v1::SessionResponse response;
    while (stream->Read(&response)) {
      // The held submission may be answered UNAVAILABLE before the end.
      ASSERT_EQ(response.result_case(), v1::SessionResponse::kError);
      EXPECT_EQ(response.error().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
    }
    const grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  }
}

// Many sessions with one row per call: the batcher stacks their rows (fewer
// products than calls) and every answer equals the unary Forward bit for bit.
// (Only with min_batch_macs: 1 — inline, every call is a product of its own.)
using SessionBatchingTest = SessionTest;
TEST_P(SessionBatchingTest, ConcurrentSessionsAreBatchedAndEachGetsItsOwnRows) {
  Start("max_staleness: 1000 max_batch_rows: 64");
  constexpr int kSessions = 8;
  constexpr int kCalls = 64;  // Per session, all written before reading.
  std::vector<std::thread> clients;
  std::vector<std::map<uint64_t, v1::SessionResponse>> answers(kSessions);
  for (int s = 0; s < kSessions; ++s) {
    clients.emplace_back([&, s] {
      auto context = Context();
      std::unique_ptr<SessionStream> stream = stub_->Session(context.get());
      for (int i = 0; i < kCalls; ++i) {
        stream->Write(ForwardCall(static_cast<uint64_t>(i), Row(static_cast<float>(s * 100 + i))));
      }
      answers[s] = ReadAnswers(*stream, kCalls);
      stream->WritesDone();
      EXPECT_TRUE(stream->Finish().ok());
    });
  }
  for (std::thread& client : clients) client.join();
  for (int s = 0; s < kSessions; ++s) {
    ASSERT_EQ(answers[s].size(), static_cast<size_t>(kCalls));
    for (int i = 0; i < kCalls; ++i) {
      v1::ForwardRequest alone;
      alone.set_model("m");
      *alone.mutable_inputs() = Row(static_cast<float>(s * 100 + i));
      v1::ForwardResponse unary;
      ASSERT_TRUE(stub_->Forward(Context().get(), alone, &unary).ok());
      const v1::SessionResponse& got = answers[s][static_cast<uint64_t>(i)];
      ASSERT_EQ(got.result_case(), v1::SessionResponse::kForward);
      EXPECT_EQ(got.forward().SerializeAsString(), unary.SerializeAsString())
          << "session " << s << " call " << i;
    }
  }
  const std::string text = server_->metrics()->Scrape();
  const double products =
      Sample(text, "deltaserve_forward_batch_rows_count", {{"model", "m"}}).value_or(0);
  const double rows =
      Sample(text, "deltaserve_forward_batch_rows_sum", {{"model", "m"}}).value_or(0);
  EXPECT_EQ(rows, kSessions * kCalls * 2.0);  // Session calls, then the unary ones.
  EXPECT_LT(products, rows) << "no two Forward requests were ever batched together";
}

std::string ForwardPathName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param.empty() ? "InlineForward" : "BatchedForward";
}

INSTANTIATE_TEST_SUITE_P(ForwardPaths, SessionTest,
                         ::testing::Values(std::string(), std::string("min_batch_macs: 1")),
                         ForwardPathName);
INSTANTIATE_TEST_SUITE_P(ForwardPaths, SessionBatchingTest,
                         ::testing::Values(std::string("min_batch_macs: 1")), ForwardPathName);

}  // namespace
}  // namespace deltaserve::server
