// TrainerClient, Watch and Replica against a real server on loopback.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/client/replica.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/tests/client/test_server.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::deltaserve::client::testing::kInputDim;
using ::deltaserve::client::testing::kModelName;
using ::deltaserve::client::testing::kOutputDim;
using ::deltaserve::client::testing::ServerTest;
namespace v1 = ::deltaserve::v1;

constexpr absl::Duration kWait = absl::Seconds(20);
constexpr float kTolerance = 1e-5f;

model::Matrix SomeInputs() {
  model::Matrix x(4, kInputDim);
  x << 0.5f, -1.0f, 2.0f,  //
      0.0f, 0.0f, 0.0f,    //
      -0.3f, 0.7f, 0.1f,   //
      1.5f, 1.5f, -2.0f;
  return x;
}

// Submits a fixed δ for SomeInputs() (ỹ omitted); one optimizer step each.
void TakeSteps(const TrainerClient& client, int steps) {
  for (int i = 0; i < steps; ++i) {
    auto forward = client.Forward(SomeInputs().topRows(1));
    ASSERT_TRUE(forward.ok()) << forward.status();
    DeltaSubmission submission;
    submission.inputs = SomeInputs().topRows(1);
    submission.deltas = model::Matrix::Constant(1, kOutputDim, 0.5f);
    submission.version = forward->version;
    auto result = client.SubmitDelta(submission);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->stepped);
  }
}

// Parameter versions seen by a Watch callback.
class VersionLog {
 public:
  void Add(uint64_t version) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    versions_.push_back(version);
  }
  // True once a version ≥ min_version has arrived (false after `timeout`).
  bool WaitFor(uint64_t min_version, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !versions_.empty() && versions_.back() >= min_version;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  std::vector<uint64_t> versions() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return versions_;
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> versions_ ABSL_GUARDED_BY(mu_);
};

using ClientIntegration = ServerTest;

TEST_F(ClientIntegration, ForwardEqualsTheModelCoreOnTheFetchedParameters) {
  TakeSteps(*client, 2);  // Off the initial parameters, so the check is not trivial.
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec().name(), kModelName);
  auto spec = wire::MlpSpecFromProto(info->spec());
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto mlp = model::Mlp::Create(*spec);
  ASSERT_TRUE(mlp.ok()) << mlp.status();

  auto params = client->GetParameters();
  auto served = client->Forward(SomeInputs());

  ASSERT_TRUE(params.ok()) << params.status();
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(params->model, kModelName);
  EXPECT_EQ(params->version, 2u);
  ASSERT_EQ(served->version, params->version);
  EXPECT_EQ(params->parameters.size(), info->parameter_count());
  auto expected = mlp->Forward(params->parameters, SomeInputs());
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_EQ(served->outputs.rows(), 4);
  ASSERT_EQ(served->outputs.cols(), kOutputDim);
  EXPECT_TRUE(served->outputs.isApprox(*expected, kTolerance)) << "server:\n"
                                                               << served->outputs << "\ncore:\n"
                                                               << *expected;
}

TEST_F(ClientIntegration, ServerErrorsArriveWithTheirCodes) {
  EXPECT_EQ(client->GetModelInfo("no-such-model").status().code(), absl::StatusCode::kNotFound);
  const absl::Status bad_shape = client->Forward(model::Matrix::Ones(2, kInputDim + 1)).status();
  EXPECT_EQ(bad_shape.code(), absl::StatusCode::kInvalidArgument) << bad_shape;
  EXPECT_FALSE(bad_shape.message().empty());
  EXPECT_EQ(Replica::Create(client, "no-such-model").status().code(), absl::StatusCode::kNotFound);
}

// The server's count of parked GetParameters long-polls reaches `want`
// (polled; false after kWait).
bool AwaitWaiters(const server::DeltaServer& server, double want) {
  const absl::Time deadline = absl::Now() + kWait;
  while (server::testing::Sample(server.metrics()->Scrape(), "deltaserve_parameter_waiters",
                                 {{"model", kModelName}}) != want) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));  // Polls the gauge; not a synchronisation.
  }
  return true;
}

TEST_F(ClientIntegration, ListModelsReturnsTheModelAsGetModelInfo) {
  TakeSteps(*client, 1);
  auto models = client->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 1u);
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ((*models)[0].SerializeAsString(), info->SerializeAsString());
  EXPECT_EQ((*models)[0].version(), 1u);
}

TEST_F(ClientIntegration, GetParametersWithMinVersionWaitsForTheStep) {
  auto at_once = client->GetParameters(kModelName, 0);
  ASSERT_TRUE(at_once.ok()) << at_once.status();
  EXPECT_EQ(at_once->version, 0u);
  absl::StatusOr<Parameters> waited;
  std::thread poller([&] { waited = client->GetParameters(kModelName, 1, kWait); });
  ASSERT_TRUE(AwaitWaiters(*server, 1));
  TakeSteps(*client, 1);
  poller.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->version, 1u);
  auto now = client->GetParameters();
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(waited->parameters, now->parameters);
}

TEST_F(ClientIntegration, GetParametersWithMinVersionEndsAtItsTimeoutOrCancel) {
  const absl::Status timed_out =
      client->GetParameters(kModelName, 5, absl::Milliseconds(200)).status();
  EXPECT_EQ(timed_out.code(), absl::StatusCode::kDeadlineExceeded) << timed_out;
  EXPECT_TRUE(AwaitWaiters(*server, 0));

  grpc::ClientContext context;
  absl::Status cancelled;
  std::thread poller([&] { cancelled = client->GetParameters(&context, "", 1).status(); });
  ASSERT_TRUE(AwaitWaiters(*server, 1));
  context.TryCancel();
  poller.join();
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled) << cancelled;
  EXPECT_TRUE(AwaitWaiters(*server, 0));

  const absl::Status negative = client->GetParameters("", 1, absl::Seconds(-1)).status();
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument) << negative;
}

TEST_F(ClientIntegration, ReplicaMatchesTheServerAndCatchesUpAfterSteps) {
  auto replica = Replica::Create(client);
  ASSERT_TRUE(replica.ok()) << replica.status();
  EXPECT_EQ((*replica)->model_name(), kModelName);

  auto local = (*replica)->Forward(SomeInputs());
  auto remote = client->Forward(SomeInputs());
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(local->version, 0u);
  EXPECT_EQ(remote->version, 0u);
  EXPECT_TRUE(local->outputs.isApprox(remote->outputs, kTolerance));

  TakeSteps(*client, 3);
  ASSERT_TRUE((*replica)->WaitForVersion(3, kWait)) << (*replica)->watch_status();

  auto local_after = (*replica)->Forward(SomeInputs());
  auto remote_after = client->Forward(SomeInputs());
  ASSERT_TRUE(local_after.ok()) << local_after.status();
  ASSERT_TRUE(remote_after.ok()) << remote_after.status();
  EXPECT_EQ(local_after->version, 3u);
  EXPECT_EQ(remote_after->version, 3u);
  EXPECT_TRUE(local_after->outputs.isApprox(remote_after->outputs, kTolerance))
      << "replica:\n"
      << local_after->outputs << "\nserver:\n"
      << remote_after->outputs;
  EXPECT_FALSE(local_after->outputs.isApprox(local->outputs, kTolerance))
      << "three SGD steps should have moved the outputs";
  EXPECT_TRUE((*replica)->watch_status().ok()) << (*replica)->watch_status();
}

TEST_F(ClientIntegration, ReplicaForwardRejectsBadShapes) {
  auto replica = Replica::Create(client, kModelName);
  ASSERT_TRUE(replica.ok()) << replica.status();
  EXPECT_EQ((*replica)->Forward(model::Matrix::Ones(1, kInputDim + 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*replica)->Forward(model::Matrix(0, kInputDim)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientIntegration, WatchDeliversStrictlyIncreasingVersionsUntilCancelled) {
  VersionLog log;
  auto handle = client->Watch("", [&log](Parameters update) { log.Add(update.version); });
  ASSERT_TRUE(handle.ok()) << handle.status();
  ASSERT_TRUE(log.WaitFor(0, kWait)) << "no initial update";

  TakeSteps(*client, 5);
  ASSERT_TRUE(log.WaitFor(5, kWait));
  (*handle)->Cancel();
  const absl::Status end = (*handle)->Wait();

  EXPECT_EQ(end.code(), absl::StatusCode::kCancelled) << end;
  const std::vector<uint64_t> versions = log.versions();
  ASSERT_FALSE(versions.empty());
  EXPECT_EQ(versions.front(), 0u);
  EXPECT_EQ(versions.back(), 5u);
  for (size_t i = 1; i < versions.size(); ++i) {
    EXPECT_LT(versions[i - 1], versions[i]) << "at update " << i;
  }
}

TEST_F(ClientIntegration, BlockingWatchReturnsOkWhenTheCallbackStops) {
  std::vector<uint64_t> versions;
  const absl::Status status = client->WatchParameters(kModelName, [&](Parameters update) {
    versions.push_back(update.version);
    EXPECT_EQ(update.model, kModelName);
    return false;
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(versions, (std::vector<uint64_t>{0}));
}

TEST_F(ClientIntegration, WatchEndsWhenTheServerShutsDown) {
  VersionLog log;
  auto handle = client->Watch("", [&log](Parameters update) { log.Add(update.version); });
  ASSERT_TRUE(handle.ok()) << handle.status();
  ASSERT_TRUE(log.WaitFor(0, kWait));

  server->Shutdown();
  const std::optional<absl::Status> end = (*handle)->WaitWithTimeout(kWait);

  ASSERT_TRUE(end.has_value()) << "watch still running after shutdown";
  EXPECT_FALSE(end->ok());
  EXPECT_NE(end->code(), absl::StatusCode::kCancelled) << *end;
}

TEST_F(ClientIntegration, ReplicaKeepsServingItsSnapshotWhenTheServerGoesAway) {
  TakeSteps(*client, 1);
  auto replica = Replica::Create(client);
  ASSERT_TRUE(replica.ok()) << replica.status();
  auto before = (*replica)->Forward(SomeInputs());
  ASSERT_TRUE(before.ok()) << before.status();

  server->Shutdown();
  auto after = (*replica)->Forward(SomeInputs());

  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->version, 1u);
  EXPECT_EQ(after->outputs, before->outputs);
  // Destruction now interrupts the watcher's reconnect attempts; a hang here
  // fails by the ctest timeout.
  replica->reset();
}

// A listening socket on a free 127.0.0.1 port, standing in for a server that
// is not there: a connection it accepts and closes before gRPC's handshake is
// a failed attempt for the client. Returns the descriptor (-1 and errno on
// failure) and sets *address to "127.0.0.1:port".
int ListenOnLoopback(std::string* address) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&addr), length) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  *address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  return fd;
}

// Accepts and closes connections at `stand_in` until *done; returns how many.
int RefuseConnectionsUntil(int stand_in, const std::atomic<bool>* done) {
  int attempts = 0;
  while (!done->load()) {
    pollfd waiting{stand_in, POLLIN, 0};
    if (poll(&waiting, 1, /*timeout_ms=*/20) != 1) continue;
    const int connection = accept(stand_in, nullptr, nullptr);
    if (connection < 0) continue;
    close(connection);
    ++attempts;
  }
  return attempts;
}

// While the server is down, a channel tries again at most
// max_reconnect_backoff apart. With gRPC's own backoff (1 s, growing 1.6× to
// 120 s) a client noticed a server back after a long outage up to two minutes
// late, well past a simulator's retry budget. Counted at a stand-in that
// fails every attempt, during one call that waits for ready for 1.5 s: with
// a 100 ms cap ≈ 15 attempts, with gRPC's backoff 2.
TEST(ClientChannel, ReconnectAttemptsComeAtMostMaxReconnectBackoffApart) {
  std::string address;
  const int stand_in = ListenOnLoopback(&address);
  ASSERT_GE(stand_in, 0) << std::strerror(errno);
  std::unique_ptr<v1::Trainer::Stub> stub = v1::Trainer::NewStub(
      CreateChannel(address, kDefaultMaxMessageBytes, {}, absl::Milliseconds(100)));
  std::atomic<bool> done{false};
  grpc::Status status;
  std::thread caller([&] {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1500));
    v1::GetModelInfoRequest request;
    v1::ModelInfo response;
    status = stub->GetModelInfo(&context, request, &response);
    done = true;
  });
  const int attempts = RefuseConnectionsUntil(stand_in, &done);
  caller.join();
  close(stand_in);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_GE(attempts, 6) << "the channel waited longer than its 100 ms cap between attempts";
}

// TrainerClient::Connect gives its channels options.max_reconnect_backoff
// (the watch channel here: a Watch waits for ready), and refuses a cap that
// is not finite and positive.
TEST(ClientChannel, ConnectUsesMaxReconnectBackoff) {
  for (const absl::Duration bad : {absl::ZeroDuration(), absl::InfiniteDuration()}) {
    ClientOptions options;
    options.max_reconnect_backoff = bad;
    auto refused = TrainerClient::Connect("127.0.0.1:1", options);
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
    EXPECT_NE(refused.status().message().find("max_reconnect_backoff"), std::string::npos)
        << refused.status();
  }
  std::string address;
  const int stand_in = ListenOnLoopback(&address);
  ASSERT_GE(stand_in, 0) << std::strerror(errno);
  ClientOptions options;
  options.max_reconnect_backoff = absl::Milliseconds(100);
  options.watch_timeout = absl::Milliseconds(1500);
  auto client = TrainerClient::Connect(address, options);
  ASSERT_TRUE(client.ok()) << client.status();
  std::atomic<bool> done{false};
  auto handle = (*client)->Watch("", [](Parameters) {});
  ASSERT_TRUE(handle.ok()) << handle.status();
  std::thread waiter([&] {
    (*handle)->Wait().IgnoreError();  // checked below
    done = true;
  });
  const int attempts = RefuseConnectionsUntil(stand_in, &done);
  waiter.join();
  close(stand_in);
  EXPECT_TRUE(absl::IsDeadlineExceeded((*handle)->Wait())) << (*handle)->Wait();
  EXPECT_GE(attempts, 6) << "the watch channel waited longer than its 100 ms cap between attempts";
}

// gRPC 1.51 sometimes fails a loopback connection attempt that had not failed
// (it reads connect's errno after calls that overwrote it; fixed upstream in
// grpc/grpc#35064) and with it every call that does not wait for ready; the
// channel reconnects a second later. A Watch started then ended at once with
// UNAVAILABLE and never received an update (one of 64 watchers of
// deltaserve_transport_bench's push section, about once in 50 runs on a busy
// machine). Here the first attempt fails for real: a socket standing in for
// the server closes it, then the server starts on that port.
TEST(ClientWatch, AWatchWhoseFirstConnectionAttemptFailsWaitsForTheServer) {
  std::string address;
  const int stand_in = ListenOnLoopback(&address);
  ASSERT_GE(stand_in, 0) << std::strerror(errno);
  auto client = TrainerClient::Connect(address);
  ASSERT_TRUE(client.ok()) << client.status();

  VersionLog log;
  auto handle = (*client)->Watch("", [&log](Parameters update) { log.Add(update.version); });
  ASSERT_TRUE(handle.ok()) << handle.status();
  // The watch's first connection is closed before any handshake: that
  // attempt fails.
  pollfd waiting{stand_in, POLLIN, 0};
  ASSERT_EQ(poll(&waiting, 1, static_cast<int>(absl::ToInt64Milliseconds(kWait))), 1)
      << "the watch never connected";
  const int first = accept(stand_in, nullptr, nullptr);
  ASSERT_GE(first, 0) << std::strerror(errno);
  close(first);
  close(stand_in);

  server::ServerOptions options;
  options.listen_address = address;
  auto server = server::DeltaServer::Start(::deltaserve::client::testing::SmallConfig(), options);
  ASSERT_TRUE(server.ok()) << server.status();

  EXPECT_TRUE(log.WaitFor(0, kWait))
      << "no update; the watch ended: "
      << (*handle)->WaitWithTimeout(absl::ZeroDuration()).value_or(absl::OkStatus());
  EXPECT_FALSE((*handle)->WaitWithTimeout(absl::ZeroDuration()).has_value()) << "the watch ended";
}

// Input normalisation: the server's updates carry the version's statistics,
// and a Replica's forward (normalise, then the MLP) equals the server's
// Forward; an import through the client replaces the statistics.
TEST(ClientNormalization, ReplicaNormalizesAsTheServerDoes) {
  v1::ServerConfig config = testing::SmallConfig();
  v1::InputNormalization* n = config.mutable_models(0)->mutable_input_normalization();
  n->set_kind(v1::InputNormalization::RUNNING_MEAN_STD);
  n->set_clip(2.0f);
  n->set_epsilon(1e-8f);
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto started = server::DeltaServer::Start(config, options);
  ASSERT_TRUE(started.ok()) << started.status();
  auto connected = TrainerClient::Connect((*started)->address());
  ASSERT_TRUE(connected.ok()) << connected.status();
  std::shared_ptr<TrainerClient> client = *std::move(connected);

  auto replica = Replica::Create(client);
  ASSERT_TRUE(replica.ok()) << replica.status();
  ASSERT_NE((*replica)->snapshot()->input_statistics, nullptr);
  EXPECT_EQ((*replica)->snapshot()->input_statistics->count(), 1e-4);
  TakeSteps(*client, 3);  // Row 0 of SomeInputs() three times: mean moves to it.
  ASSERT_TRUE((*replica)->WaitForVersion(3, kWait)) << (*replica)->watch_status();

  auto params = client->GetParameters();
  ASSERT_TRUE(params.ok()) << params.status();
  ASSERT_NE(params->input_statistics, nullptr);
  EXPECT_EQ(params->input_statistics->count(), 1e-4 + 1 + 1 + 1);
  EXPECT_NEAR(params->input_statistics->mean()[0], 0.5, 1e-4);
  EXPECT_EQ(params->input_statistics->clip(), 2.0f);
  EXPECT_EQ((*replica)->snapshot()->input_statistics->mean(), params->input_statistics->mean());

  auto local = (*replica)->Forward(SomeInputs());
  auto remote = client->Forward(SomeInputs());
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(local->version, 3u);
  EXPECT_EQ(remote->version, 3u);
  EXPECT_TRUE(local->outputs.isApprox(remote->outputs, kTolerance))
      << "replica:\n"
      << local->outputs << "\nserver:\n"
      << remote->outputs;
  // The replica does normalise: the plain MLP gives other outputs.
  auto plain = (*replica)->mlp().Forward(params->parameters, SomeInputs());
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->isApprox(remote->outputs, 1e-3f));

  model::InputNormalizationConfig any;
  any.kind = model::InputNormalizationConfig::Kind::kRunningMeanStd;
  auto imported = model::RunningMeanStd::FromStatistics(any, {1, 2, 3}, {4, 4, 4}, 9);
  ASSERT_TRUE(imported.ok());
  auto version = client->ImportParameters(kModelName, params->parameters, &*imported);
  ASSERT_TRUE(version.ok()) << version.status();
  ASSERT_TRUE((*replica)->WaitForVersion(*version, kWait)) << (*replica)->watch_status();
  EXPECT_EQ((*replica)->snapshot()->input_statistics->mean(), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ((*replica)->snapshot()->input_statistics->clip(), 2.0f);  // The server's.
  auto local_imported = (*replica)->Forward(SomeInputs());
  auto remote_imported = client->Forward(SomeInputs());
  ASSERT_TRUE(local_imported.ok() && remote_imported.ok());
  EXPECT_TRUE(local_imported->outputs.isApprox(remote_imported->outputs, kTolerance));
  replica->reset();
  (*started)->Shutdown();
}

}  // namespace
}  // namespace deltaserve::client
