// Hostile strings (issue 25): a client's string reaches an error message only
// as a bounded, ASCII-safe slice (ClientString), a model name over
// kMaxModelNameBytes is INVALID_ARGUMENT before any lookup, and a long name
// cannot break the client's connection: errors travel in HTTP/2 trailers,
// and a trailer over the client's 8 KiB metadata limit ends every call on it.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/errors.h"
#include "deltaserve/server/core/heap_release.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using ::testing::HasSubstr;
using testing::WireMatrix;

// Every error message a hostile string provokes is at most this long.
constexpr size_t kMaxMessageBytes = 1024;

bool PrintableAscii(const std::string& text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// The names a client may send that the server does not serve: over the
// limit (INVALID_ARGUMENT) or under it with non-printable bytes (NOT_FOUND).
struct HostileName {
  std::string name;
  grpc::StatusCode code;
};

std::vector<HostileName> HostileNames() {
  return {{std::string(kMaxModelNameBytes + 1, 'm'), grpc::StatusCode::INVALID_ARGUMENT},
          {std::string(9000, 'm'), grpc::StatusCode::INVALID_ARGUMENT},
          {std::string(1 << 20, 'm'), grpc::StatusCode::INVALID_ARGUMENT},
          {std::string(kMaxModelNameBytes, 'm'), grpc::StatusCode::NOT_FOUND},
          {"no\n\"pe\x01\xc3\xa9", grpc::StatusCode::NOT_FOUND}};
}

// A bounded, printable message of `code` for a request naming `name`.
void ExpectBounded(const grpc::Status& status, const HostileName& hostile,
                   const std::string& what) {
  SCOPED_TRACE(absl::StrCat(what, " with a name of ", hostile.name.size(), " bytes"));
  EXPECT_EQ(status.error_code(), hostile.code) << status.error_message().substr(0, 200);
  EXPECT_LE(status.error_message().size(), kMaxMessageBytes);
  EXPECT_TRUE(PrintableAscii(status.error_message())) << status.error_message();
  if (hostile.name.size() > kClientStringBytes) {
    EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat(hostile.name.size(), " bytes")));
  }
}

TEST(ClientString, QuotesShortStringsWhole) {
  EXPECT_EQ(ClientString("cartpole"), "\"cartpole\"");
  EXPECT_EQ(ClientString(""), "\"\"");
}

TEST(ClientString, EscapesNonPrintableBytesQuotesAndBackslashes) {
  EXPECT_EQ(ClientString(std::string("a\"b\\c\n\xff\x00", 8)), "\"a\\\"b\\\\c\\n\\xff\\x00\"");
}

TEST(ClientString, CutsLongStringsAndSaysHowLongTheyWere) {
  const std::string cut = ClientString(std::string(1 << 20, 'm'));
  EXPECT_EQ(cut, absl::StrCat("\"", std::string(kClientStringBytes, 'm'), "\"... (1048576 bytes)"));
  // The worst case: every kept byte escaped to four.
  EXPECT_LE(ClientString(std::string(1 << 20, '\xff')).size(), 4 * kClientStringBytes + 32);
}

// A ServerConfig of one 1 -> 1 model named `name`.
v1::ServerConfig OneModelNamed(const std::string& name) {
  return testing::ParseText<v1::ServerConfig>(
      absl::StrCat("models { name: \"", name,
                   "\" input_dim: 1 layers { units: 1 activation: ACTIVATION_IDENTITY } }"));
}

TEST(ModelNameLimit, AConfiguredNameOverTheLimitIsRefused) {
  absl::StatusOr<v1::ServerConfig> config =
      PrepareServerConfig(OneModelNamed(std::string(kMaxModelNameBytes + 1, 'm')));
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("expected at most 128 bytes"));
  EXPECT_LE(config.status().message().size(), kMaxMessageBytes);
}

TEST(ModelNameLimit, ANameAtTheLimitIsServed) {
  absl::StatusOr<v1::ServerConfig> config =
      PrepareServerConfig(OneModelNamed(std::string(kMaxModelNameBytes, 'n')));
  EXPECT_TRUE(config.ok()) << config.status();
}

TEST(FloodHeapRelease, TrimsAsAFloodEbbsAndWhenItHasEnded) {
  FloodHeapRelease release(/*flood=*/8, /*delay=*/absl::ZeroDuration());
  for (int i = 0; i < 12; ++i) release.Opened();
  for (int i = 0; i < 8; ++i) release.Closed();  // 4 left: more than 12 / 4.
  EXPECT_EQ(release.trims(), 0u);
  release.Closed();  // 3 left: a quarter of the peak.
  EXPECT_TRUE(release.AwaitTrims(1, absl::Seconds(30)));
  release.Closed();
  release.Closed();
  EXPECT_EQ(release.trims(), 1u);
  release.Closed();  // None left: the flood is over.
  EXPECT_TRUE(release.AwaitTrims(2, absl::Seconds(30)));
  for (int i = 0; i < 7; ++i) release.Opened();  // Below a new flood: no more trims.
  for (int i = 0; i < 7; ++i) release.Closed();
  EXPECT_EQ(release.trims(), 2u);
}

TEST(FloodHeapRelease, FewStreamsNeverTrim) {
  FloodHeapRelease release(/*flood=*/8, /*delay=*/absl::ZeroDuration());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 7; ++i) release.Opened();
    for (int i = 0; i < 7; ++i) release.Closed();
  }
  EXPECT_EQ(release.trims(), 0u);
}

class HostileStringsTest : public testing::LoopbackServerTest {
 protected:
  void SetUp() override { StartServer(testing::SmallModelConfig("max_staleness: 1000")); }

  uint64_t Version() {
    v1::GetParametersRequest request;
    v1::ParameterUpdate update;
    EXPECT_TRUE(stub_->GetParameters(Context().get(), request, &update).ok());
    return update.version();
  }

  v1::SubmitDeltaRequest OneRow(const std::string& model) {
    v1::SubmitDeltaRequest request;
    request.set_model(model);
    *request.mutable_inputs() = WireMatrix(1, 4, {0.5f, 0.5f, 0.5f, 0.5f});
    *request.mutable_deltas() = WireMatrix(1, 2, {1.0f, 1.0f});
    request.set_version(Version());
    return request;
  }
};

TEST_F(HostileStringsTest, LongNamesGetAShortErrorAndTheChannelKeepsWorking) {
  // A watch on the same channel: it must outlive every hostile call.
  v1::WatchParametersRequest watch_request;
  auto watch_context = Context();
  auto watch = stub_->WatchParameters(watch_context.get(), watch_request);
  v1::ParameterUpdate update;
  ASSERT_TRUE(watch->Read(&update));
  ASSERT_EQ(update.version(), 0u);

  for (const HostileName& hostile : HostileNames()) {
    v1::ForwardRequest forward;
    forward.set_model(hostile.name);
    *forward.mutable_inputs() = WireMatrix(1, 4, {0, 0, 0, 0});
    v1::ForwardResponse forwarded;
    ExpectBounded(stub_->Forward(Context().get(), forward, &forwarded), hostile, "Forward");

    v1::SubmitDeltaResponse submitted;
    ExpectBounded(stub_->SubmitDelta(Context().get(), OneRow(hostile.name), &submitted), hostile,
                  "SubmitDelta");

    v1::GetParametersRequest get;
    get.set_model(hostile.name);
    v1::ParameterUpdate parameters;
    ExpectBounded(stub_->GetParameters(Context().get(), get, &parameters), hostile,
                  "GetParameters");

    v1::GetModelInfoRequest info_request;
    info_request.set_model(hostile.name);
    v1::ModelInfo info;
    ExpectBounded(stub_->GetModelInfo(Context().get(), info_request, &info), hostile,
                  "GetModelInfo");

    v1::WatchParametersRequest bad_watch;
    bad_watch.set_model(hostile.name);
    auto bad_context = Context();
    auto refused = stub_->WatchParameters(bad_context.get(), bad_watch);
    EXPECT_FALSE(refused->Read(&update));
    ExpectBounded(refused->Finish(), hostile, "WatchParameters");

    // On a Session, the CallError carries the message; the stream stays open.
    auto session_context = Context();
    auto session = stub_->Session(session_context.get());
    v1::SessionRequest call;
    call.set_id(1);
    *call.mutable_forward() = forward;
    ASSERT_TRUE(session->Write(call));
    call.set_id(2);
    *call.mutable_submit() = OneRow(hostile.name);
    ASSERT_TRUE(session->Write(call));
    for (int i = 0; i < 2; ++i) {
      v1::SessionResponse answer;
      ASSERT_TRUE(session->Read(&answer));
      ASSERT_TRUE(answer.has_error());
      ExpectBounded(grpc::Status(static_cast<grpc::StatusCode>(answer.error().code()),
                                 answer.error().message()),
                    hostile, absl::StrCat("Session call ", answer.id()));
    }
    call.set_id(3);
    forward.set_model("m");
    *call.mutable_forward() = forward;
    ASSERT_TRUE(session->Write(call));
    v1::SessionResponse answer;
    ASSERT_TRUE(session->Read(&answer));
    EXPECT_TRUE(answer.has_forward()) << answer.error().message();
    session->WritesDone();
    EXPECT_TRUE(session->Finish().ok());
  }

  // A request_id over its limit: INVALID_ARGUMENT, short.
  v1::SubmitDeltaRequest long_id = OneRow("m");
  long_id.set_request_id(std::string(1 << 20, 'r'));
  v1::SubmitDeltaResponse submitted;
  grpc::Status refused = stub_->SubmitDelta(Context().get(), long_id, &submitted);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LE(refused.error_message().size(), kMaxMessageBytes);

  // The channel still works, and the watch sees the next version.
  ASSERT_TRUE(stub_->SubmitDelta(Context().get(), OneRow("m"), &submitted).ok());
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.version(), 1u);
  EXPECT_EQ(Version(), 1u);
  watch_context->TryCancel();
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace deltaserve::server
