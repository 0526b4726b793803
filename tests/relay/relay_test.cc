// The relay (`deltaserve --upstream`, server/relay/relay.h) between a real
// upstream DeltaServer and clients, all on 127.0.0.1 port 0: reads equal the
// upstream's bit for bit, submissions train upstream with their request_id,
// the mirror follows an upstream that dies and comes back (lower, without
// state), TLS and tokens on both sides, and the bounds.
#include "deltaserve/server/relay/relay.h"

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/token.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/client/test_server.h"
#include "deltaserve/tests/security/test_pki.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/v1/admin.grpc.pb.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

namespace v1 = ::deltaserve::v1;
using client::TrainerClient;
using grpc::health::v1::HealthCheckResponse;
using server::DeltaServer;
using server::Relay;

constexpr absl::Duration kWait = absl::Seconds(30);
constexpr char kNormalized[] = "normalized";

// The client tests' small model, plus a second model with input
// normalisation (its versions carry input_statistics).
v1::ServerConfig TwoModels() {
  v1::ServerConfig config = client::testing::SmallConfig();
  v1::ModelSpec second = config.models(0);
  second.set_name(kNormalized);
  second.set_seed(11);
  second.mutable_input_normalization()->set_kind(v1::InputNormalization::RUNNING_MEAN_STD);
  *config.add_models() = second;
  return config;
}

model::Matrix Inputs() {
  model::Matrix x(2, client::testing::kInputDim);
  x << 0.5f, -0.25f, 1.0f, 2.0f, 0.125f, -3.0f;
  return x;
}

model::Matrix Deltas(float value = 0.5f) {
  return model::Matrix::Constant(2, client::testing::kOutputDim, value);
}

client::DeltaSubmission Submission(uint64_t version, const std::string& request_id = "") {
  client::DeltaSubmission s;
  s.inputs = Inputs();
  s.deltas = Deltas();
  s.version = version;
  s.request_id = request_id;
  return s;
}

std::unique_ptr<TrainerClient> Connect(const std::string& address,
                                       client::SecurityOptions security = {}) {
  client::ClientOptions options;
  options.submit_retries = 0;  // Every answer is the relay's own, not a retry's.
  options.timeout = kWait;
  options.security = std::move(security);
  auto connected = TrainerClient::Connect(address, options);
  EXPECT_TRUE(connected.ok()) << connected.status();
  return connected.ok() ? *std::move(connected) : nullptr;
}

// Waits (health Watch, no polling) until `address` reports `want` for
// `service`; false if it did not within kWait.
bool AwaitHealth(
    const std::string& address, const std::string& service, HealthCheckResponse::ServingStatus want,
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials()) {
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kWait));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  auto stream = health->Watch(&context, request);
  HealthCheckResponse response;
  while (stream->Read(&response)) {
    if (response.status() == want) {
      context.TryCancel();
      (void)stream->Finish();
      return true;
    }
  }
  ADD_FAILURE() << "health of \"" << service << "\" never became "
                << HealthCheckResponse::ServingStatus_Name(want) << ": "
                << stream->Finish().error_message();
  return false;
}

// Trains the upstream's model `model` by `steps` versions (one row a step is
// not required: every submission of SmallConfig steps).
void Train(TrainerClient& client, int steps, const std::string& model = "") {
  for (int i = 0; i < steps; ++i) {
    auto info = client.GetModelInfo(model);
    ASSERT_TRUE(info.ok()) << info.status();
    auto done = client.SubmitDelta(Submission(info->version()), model);
    ASSERT_TRUE(done.ok()) << done.status();
  }
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(std::getenv(client::kTokenEnvVar), nullptr)
        << "unset " << client::kTokenEnvVar << ": these tests choose each token";
  }

  void StartUpstream(const std::string& listen = "127.0.0.1:0") {
    server::ServerOptions options;
    options.listen_address = listen;
    options.learner_gate = gate_;
    auto started = DeltaServer::Start(TwoModels(), options);
    ASSERT_TRUE(started.ok()) << started.status();
    upstream_ = *std::move(started);
    upstream_client_ = Connect(upstream_->address());
  }

  absl::StatusOr<std::unique_ptr<Relay>> TryRelay(server::ServerOptions options = {},
                                                  server::RelayOptions relay = {}) {
    if (options.listen_address.empty()) options.listen_address = "127.0.0.1:0";
    if (relay.upstream.empty()) relay.upstream = upstream_->address();
    relay.wait_for_upstream = kWait;
    return Relay::Start(v1::ServerConfig(), options, relay);
  }

  void StartRelay(server::ServerOptions options = {}, server::RelayOptions relay = {}) {
    auto started = TryRelay(std::move(options), std::move(relay));
    ASSERT_TRUE(started.ok()) << started.status();
    relay_ = *std::move(started);
    relay_client_ = Connect(relay_->address());
  }

  // The relay's mirror of `model` reaches `version` (a long-poll on it).
  client::Parameters AwaitRelayVersion(uint64_t version, const std::string& model = "") {
    auto params = relay_client_->GetParameters(model, version, kWait);
    EXPECT_TRUE(params.ok()) << params.status();
    return params.ok() ? *std::move(params) : client::Parameters{};
  }

  std::shared_ptr<server::testing::HeldGate> gate_ = std::make_shared<server::testing::HeldGate>();
  std::unique_ptr<DeltaServer> upstream_;
  std::unique_ptr<TrainerClient> upstream_client_;
  std::unique_ptr<Relay> relay_;
  std::unique_ptr<TrainerClient> relay_client_;
};

TEST_F(RelayTest, ReadsThroughTheRelayEqualTheUpstreamsBitForBit) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_NO_FATAL_FAILURE(Train(*upstream_client_, 3));
  ASSERT_NO_FATAL_FAILURE(Train(*upstream_client_, 2, kNormalized));
  ASSERT_NO_FATAL_FAILURE(StartRelay());

  auto listed_up = upstream_client_->ListModels();
  auto listed_relay = relay_client_->ListModels();
  ASSERT_TRUE(listed_up.ok() && listed_relay.ok());
  ASSERT_EQ(listed_relay->size(), 2u);
  for (size_t i = 0; i < listed_up->size(); ++i) {
    EXPECT_EQ((*listed_relay)[i].SerializeAsString(), (*listed_up)[i].SerializeAsString())
        << "model " << i << " as listed";
  }
  for (const std::string& model :
       {std::string(client::testing::kModelName), std::string(kNormalized)}) {
    auto up = upstream_client_->GetParameters(model);
    auto mirrored = relay_client_->GetParameters(model);
    ASSERT_TRUE(up.ok() && mirrored.ok());
    EXPECT_EQ(mirrored->version, up->version);
    EXPECT_EQ(mirrored->parameters, up->parameters) << model;  // Bit for bit.
    ASSERT_EQ(mirrored->input_statistics != nullptr, up->input_statistics != nullptr);
    if (up->input_statistics != nullptr) {
      EXPECT_EQ(mirrored->input_statistics->mean(), up->input_statistics->mean());
      EXPECT_EQ(mirrored->input_statistics->var(), up->input_statistics->var());
      EXPECT_EQ(mirrored->input_statistics->count(), up->input_statistics->count());
    }
    auto y_up = upstream_client_->Forward(Inputs(), model);
    auto y_relay = relay_client_->Forward(Inputs(), model);
    ASSERT_TRUE(y_up.ok() && y_relay.ok());
    EXPECT_EQ(y_relay->version, y_up->version);
    EXPECT_TRUE(y_relay->outputs == y_up->outputs) << model;
    auto g_up = upstream_client_->InputGradient(Inputs(), Deltas(), model);
    auto g_relay = relay_client_->InputGradient(Inputs(), Deltas(), model);
    ASSERT_TRUE(g_up.ok() && g_relay.ok());
    EXPECT_TRUE(g_relay->input_gradient == g_up->input_gradient) << model;
  }

  // A watcher on the relay and a long-poll both see the next upstream version.
  absl::Mutex mu;
  std::vector<uint64_t> seen;
  auto watch = relay_client_->Watch("", [&](client::Parameters p) {
    absl::MutexLock lock(&mu);
    seen.push_back(p.version);
  });
  ASSERT_TRUE(watch.ok());
  ASSERT_NO_FATAL_FAILURE(Train(*upstream_client_, 1));
  const client::Parameters polled = AwaitRelayVersion(4);
  EXPECT_EQ(polled.version, 4u);
  EXPECT_EQ(polled.parameters, upstream_client_->GetParameters()->parameters);
  {
    absl::MutexLock lock(&mu);
    auto reached = [&] { return !seen.empty() && seen.back() == 4; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&reached), kWait));
  }
  (*watch)->Cancel();
}

TEST_F(RelayTest, SubmitsTrainUpstreamAndARetriedRequestIdAppliesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_NO_FATAL_FAILURE(StartRelay());
  client::DeltaSubmission asking = Submission(0, "retry-me");
  asking.return_parameters = true;  // The upstream's answer, weights and all.
  auto first = relay_client_->SubmitDelta(asking);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->version, 1u);
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(upstream_client_->GetModelInfo()->version(), 1u);
  const std::vector<float> trained = upstream_client_->GetParameters()->parameters;
  ASSERT_NE(first->parameters, nullptr);
  EXPECT_EQ(first->parameters->version, 1u);
  EXPECT_EQ(first->parameters->parameters, trained);

  auto again = relay_client_->SubmitDelta(Submission(0, "retry-me"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->parameters, nullptr);  // Not asked for this time.
  EXPECT_EQ(again->version, 1u);
  EXPECT_EQ(again->surrogate_loss, first->surrogate_loss);
  EXPECT_EQ(upstream_client_->GetParameters()->parameters, trained);
  EXPECT_EQ(AwaitRelayVersion(1).parameters, trained);

  // A Session on the relay: its submit goes upstream, its Forward is local.
  auto session = relay_client_->OpenSession();
  ASSERT_TRUE(session.ok()) << session.status();
  auto via_session = (*session)->SubmitDeltaSync(Submission(1, "session-1"));
  ASSERT_TRUE(via_session.ok()) << via_session.status();
  EXPECT_EQ(via_session->version, 2u);
  EXPECT_EQ(upstream_client_->GetModelInfo()->version(), 2u);
  auto dup = (*session)->SubmitDeltaSync(Submission(1, "session-1"));
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_TRUE(dup->duplicate);
  AwaitRelayVersion(2);
  auto y = (*session)->ForwardSync(Inputs());
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->version, 2u);
  EXPECT_TRUE(y->outputs == upstream_client_->Forward(Inputs())->outputs);

  // Errors come back with the upstream's code and message.
  client::DeltaSubmission bad = Submission(0);
  bad.deltas = model::Matrix::Constant(2, 5, 1.0f);
  auto direct = upstream_client_->SubmitDelta(bad);
  auto relayed = relay_client_->SubmitDelta(bad);
  EXPECT_EQ(relayed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(relayed.status(), direct.status());
  auto unknown = relay_client_->SubmitDelta(Submission(0), "no-such-model");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(upstream_client_->GetModelInfo()->version(), 2u);

  // Admin rpcs do not change a mirror.
  auto admin = v1::Admin::NewStub(
      grpc::CreateChannel(relay_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::ImportParametersRequest import;
  for (float p : trained) import.add_parameters(p);
  v1::ImportParametersResponse imported;
  EXPECT_EQ(admin->ImportParameters(&context, import, &imported).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(RelayTest, ForwardedSubmissionsAreBoundedNotQueued) {
  gate_->Close();  // The upstream's learner holds every submission.
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  server::RelayOptions relay;
  relay.max_in_flight_submits = 1;
  ASSERT_NO_FATAL_FAILURE(StartRelay({}, relay));
  auto session = relay_client_->OpenSession();
  ASSERT_TRUE(session.ok());
  auto held = (*session)->SubmitDelta(Submission(0, "held"));
  ASSERT_TRUE(upstream_->trainer("")->AwaitQueued(1, kWait));
  auto refused = relay_client_->SubmitDelta(Submission(0, "refused"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("--upstream_max_in_flight"), absl::string_view::npos)
      << refused.status();
  gate_->Open();
  auto answered = held.get();
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_EQ(answered->version, 1u);
}

TEST_F(RelayTest, UpstreamDownThenBackLowerWithoutState) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_NO_FATAL_FAILURE(Train(*upstream_client_, 3));
  ASSERT_NO_FATAL_FAILURE(StartRelay());
  const std::string address = upstream_->address();
  const std::vector<float> at3 = upstream_client_->GetParameters()->parameters;
  ASSERT_TRUE(AwaitHealth(relay_->address(), "", HealthCheckResponse::SERVING));

  // A watcher on the relay from before the outage.
  absl::Mutex mu;
  std::vector<uint64_t> seen;
  auto watch = relay_client_->Watch("", [&](client::Parameters p) {
    absl::MutexLock lock(&mu);
    seen.push_back(p.version);
  });
  ASSERT_TRUE(watch.ok());
  {
    absl::MutexLock lock(&mu);
    auto first = [&] { return !seen.empty(); };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&first), kWait));
    EXPECT_EQ(seen.front(), 3u);
  }

  upstream_client_.reset();
  upstream_.reset();  // Shut down: gone.
  EXPECT_TRUE(AwaitHealth(relay_->address(), "", HealthCheckResponse::NOT_SERVING));
  EXPECT_TRUE(
      AwaitHealth(relay_->address(), "deltaserve.v1.Trainer", HealthCheckResponse::NOT_SERVING));
  EXPECT_FALSE(relay_->mirrored());
  auto still = relay_client_->GetParameters();
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->version, 3u);
  EXPECT_EQ(still->parameters, at3);
  auto y = relay_client_->Forward(Inputs());
  EXPECT_TRUE(y.ok()) << y.status();
  auto refused = relay_client_->SubmitDelta(Submission(3, "while-down"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();

  // A new process on the same port, without state: version 0.
  ASSERT_NO_FATAL_FAILURE(StartUpstream(address));
  ASSERT_EQ(upstream_->address(), address);
  EXPECT_TRUE(AwaitHealth(relay_->address(), "", HealthCheckResponse::SERVING));
  auto followed = relay_client_->GetParameters();
  ASSERT_TRUE(followed.ok());
  EXPECT_EQ(followed->version, 0u);
  EXPECT_EQ(followed->parameters, upstream_client_->GetParameters()->parameters);
  {
    absl::MutexLock lock(&mu);
    auto lowered = [&] { return seen.back() == 0; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&lowered), kWait))
        << "the relay's watcher did not follow the upstream down";
  }
  // And it trains through the relay again.
  auto trained = relay_client_->SubmitDelta(Submission(0, "after"));
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->version, 1u);
  EXPECT_EQ(AwaitRelayVersion(1).parameters, upstream_client_->GetParameters()->parameters);
  (*watch)->Cancel();
}

TEST_F(RelayTest, RefusesStateAnOpenListenerAndAnUnreachableUpstream) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  server::ServerOptions open;
  open.listen_address = "0.0.0.0:0";
  auto refused = TryRelay(open);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--auth_file"), absl::string_view::npos)
      << refused.status();
  server::ServerOptions stateful;
  stateful.state_dir = ::testing::TempDir();
  EXPECT_EQ(TryRelay(stateful).status().code(), absl::StatusCode::kFailedPrecondition);

  server::RelayOptions nowhere;
  nowhere.upstream = "127.0.0.1:1";  // Nothing listens on port 1.
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  nowhere.wait_for_upstream = absl::ZeroDuration();
  auto unreachable = Relay::Start(v1::ServerConfig(), options, nowhere);
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable) << unreachable.status();
}

// TLS and tokens on both sides.
class SecureRelayTest : public RelayTest {
 protected:
  static void SetUpTestSuite() {
    pki_ = new testing::TestPki("relay_test");
    pki_->MakeCa("ca");
    pki_->MakeLeaf("ca", "server", /*server=*/true);
  }
  static void TearDownTestSuite() { delete pki_; }

  struct Principal {
    std::string name, role, token;
  };
  static Principal Make(const std::string& name, const std::string& role) {
    absl::StatusOr<std::string> token = base::NewToken();
    EXPECT_TRUE(token.ok());
    return {name, role, token.value_or("")};
  }
  static std::string AuthFile(const std::string& name, const std::vector<Principal>& principals) {
    std::string text;
    for (const Principal& p : principals) {
      absl::StrAppend(&text, "principals { name: \"", p.name, "\" role: ", p.role,
                      " token_sha256: \"", base::Sha256Hex(p.token), "\" }\n");
    }
    const std::string path = absl::StrCat(pki_->dir(), "/", name, ".auth.textproto");
    testing::WriteFileOrDie(path, text);
    return path;
  }
  server::ServerOptions Tls(const std::string& auth_file) {
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tls_cert_file = pki_->cert("server");
    options.tls_key_file = pki_->key("server");
    options.auth_file = auth_file;
    return options;
  }
  client::SecurityOptions As(const Principal& who) {
    client::SecurityOptions security;
    security.tls_ca_file = pki_->cert("ca");
    security.token = who.token;
    return security;
  }

  void StartSecure(const Principal& relay_identity) {
    server::ServerOptions up = Tls(AuthFile("upstream", {relay_sim_, relay_obs_, admin_}));
    up.learner_gate = gate_;
    auto started = DeltaServer::Start(TwoModels(), up);
    ASSERT_TRUE(started.ok()) << started.status();
    upstream_ = *std::move(started);
    upstream_client_ = Connect(upstream_->address(), As(admin_));
    server::RelayOptions relay;
    relay.upstream = upstream_->address();
    relay.security = As(relay_identity);
    relay.security.token.clear();
    relay.security.token_file = absl::StrCat(pki_->dir(), "/relay.token");
    testing::WriteFileOrDie(relay.security.token_file, relay_identity.token + "\n");
    relay.wait_for_upstream = kWait;
    auto relayed = Relay::Start(v1::ServerConfig(), Tls(AuthFile("relay", {sim_, obs_})), relay);
    ASSERT_TRUE(relayed.ok()) << relayed.status();
    relay_ = *std::move(relayed);
  }

  static testing::TestPki* pki_;
  Principal relay_sim_ = Make("relay-sim", "SIMULATOR");
  Principal relay_obs_ = Make("relay-obs", "OBSERVER");
  Principal admin_ = Make("admin", "ADMIN");
  Principal sim_ = Make("sim", "SIMULATOR");  // The relay's own clients.
  Principal obs_ = Make("obs", "OBSERVER");
};

testing::TestPki* SecureRelayTest::pki_ = nullptr;

TEST_F(SecureRelayTest, TlsAndTokensOnBothSides) {
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_NO_FATAL_FAILURE(StartSecure(relay_sim_));
  auto sim = Connect(relay_->address(), As(sim_));
  auto done = sim->SubmitDelta(Submission(0, "tls-1"));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(upstream_client_->GetModelInfo()->version(), 1u);
  auto mirrored = sim->GetParameters("", 1, kWait);
  ASSERT_TRUE(mirrored.ok()) << mirrored.status();
  EXPECT_EQ(mirrored->parameters, upstream_client_->GetParameters()->parameters);

  // The relay's own gate: its tokens, not the upstream's.
  EXPECT_EQ(Connect(relay_->address(), As(relay_sim_))->GetModelInfo().status().code(),
            absl::StatusCode::kUnauthenticated);
  client::SecurityOptions no_token = As(sim_);
  no_token.token.clear();
  EXPECT_EQ(Connect(relay_->address(), no_token)->ListModels().status().code(),
            absl::StatusCode::kUnauthenticated);
  auto obs = Connect(relay_->address(), As(obs_));
  EXPECT_TRUE(obs->GetParameters().ok());
  EXPECT_EQ(obs->SubmitDelta(Submission(1)).status().code(), absl::StatusCode::kPermissionDenied);
  // Health is open, over TLS.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = testing::ReadFileOrDie(pki_->cert("ca"));
  EXPECT_TRUE(
      AwaitHealth(relay_->address(), "", HealthCheckResponse::SERVING, grpc::SslCredentials(ssl)));
}

TEST_F(SecureRelayTest, AnObserverUpstreamTokenForwardsNoSubmission) {
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_NO_FATAL_FAILURE(StartSecure(relay_obs_));
  auto sim = Connect(relay_->address(), As(sim_));
  EXPECT_TRUE(sim->GetParameters().ok());
  auto denied = sim->SubmitDelta(Submission(0, "denied"));
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied) << denied.status();
  EXPECT_EQ(upstream_client_->GetModelInfo()->version(), 0u);
}

TEST_F(SecureRelayTest, ABadUpstreamTokenFailsTheStartAtOnce) {
  ASSERT_FALSE(HasFatalFailure());
  server::ServerOptions up = Tls(AuthFile("upstream", {admin_}));
  auto started = DeltaServer::Start(TwoModels(), up);
  ASSERT_TRUE(started.ok()) << started.status();
  upstream_ = *std::move(started);
  server::RelayOptions relay;
  relay.upstream = upstream_->address();
  relay.security = As(sim_);  // Not a principal of the upstream.
  relay.wait_for_upstream = kWait;
  auto refused = Relay::Start(v1::ServerConfig(), Tls(AuthFile("relay", {sim_})), relay);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated) << refused.status();
}

}  // namespace
}  // namespace deltaserve
