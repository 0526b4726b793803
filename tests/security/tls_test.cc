// Security over real TLS on loopback: a DeltaServer in-process with
// certificates made in the test (test_pki.h) and an auth file, against the
// C++ client. Specification of docs/security.md: plaintext and wrong-CA
// clients fail the handshake, a call without a valid token is
// UNAUTHENTICATED, a role too low is PERMISSION_DENIED and changes nothing,
// mutual TLS refuses clients without a certificate from its CA, and SIGHUP's
// Reload rotates tokens and certificates without dropping open streams.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/base/token.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/client/test_server.h"
#include "deltaserve/tests/security/test_pki.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

using client::SecurityOptions;
using client::TrainerClient;
using deltaserve::testing::ReadFileOrDie;
using deltaserve::testing::TestPki;
using deltaserve::testing::WriteFileOrDie;

constexpr absl::Duration kWait = absl::Seconds(30);

struct Principal {
  std::string name;
  std::string role;
  std::string token;
};

std::string AuthFileText(const std::vector<Principal>& principals) {
  std::string text;
  for (const Principal& p : principals) {
    absl::StrAppend(&text, "principals { name: \"", p.name, "\" role: ", p.role,
                    " token_sha256: \"", base::Sha256Hex(p.token), "\" }\n");
  }
  return text;
}

Principal MakePrincipal(const std::string& name, const std::string& role) {
  absl::StatusOr<std::string> token = base::NewToken();
  EXPECT_TRUE(token.ok()) << token.status();
  return {name, role, token.value_or("")};
}

model::Matrix Inputs() {
  model::Matrix x(1, client::testing::kInputDim);
  x << 0.5f, -0.25f, 1.0f;
  return x;
}

model::Matrix Deltas() { return model::Matrix::Constant(1, client::testing::kOutputDim, 1.0f); }

client::DeltaSubmission Submission(uint64_t version) {
  client::DeltaSubmission s;
  s.inputs = Inputs();
  s.deltas = model::Matrix::Constant(1, client::testing::kOutputDim, 0.5f);
  s.version = version;
  return s;
}

// Collects the versions a watch receives; waits for one.
class VersionLog {
 public:
  void Add(uint64_t version) {
    absl::MutexLock lock(&mu_);
    versions_.push_back(version);
  }
  bool AwaitAtLeast(uint64_t version) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !versions_.empty() && versions_.back() >= version;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kWait);
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> versions_ ABSL_GUARDED_BY(mu_);
};

class SecureServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki("tls_test");
    pki_->MakeCa("ca");
    pki_->MakeLeaf("ca", "server", /*server=*/true);
    pki_->MakeLeaf("ca", "client", /*server=*/false);
    pki_->MakeCa("other_ca");
    pki_->MakeLeaf("other_ca", "other_server", /*server=*/true);
    pki_->MakeLeaf("other_ca", "other_client", /*server=*/false);
  }
  static void TearDownTestSuite() { delete pki_; }

  void SetUp() override {
    ASSERT_FALSE(HasFatalFailure()) << "making the test certificates failed";
    ASSERT_EQ(std::getenv(client::kTokenEnvVar), nullptr)
        << "unset " << client::kTokenEnvVar << ": these tests choose each client's token";
    // The server reads its own copies, so rotation tests can rewrite them.
    const std::string dir = pki_->dir();
    cert_file_ = absl::StrCat(dir, "/", Name(), ".served.pem");
    key_file_ = absl::StrCat(dir, "/", Name(), ".served.key");
    auth_file_ = absl::StrCat(dir, "/", Name(), ".auth.textproto");
    WriteFileOrDie(cert_file_, ReadFileOrDie(pki_->cert("server")));
    WriteFileOrDie(key_file_, ReadFileOrDie(pki_->key("server")));
    WriteFileOrDie(auth_file_, AuthFileText({observer_, simulator_, admin_}));
  }

  static std::string Name() {
    return ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  void StartServer(bool mutual = false) {
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tls_cert_file = cert_file_;
    options.tls_key_file = key_file_;
    if (mutual) options.tls_client_ca_file = pki_->cert("ca");
    options.auth_file = auth_file_;
    auto started = server::DeltaServer::Start(client::testing::SmallConfig(), options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }

  // TLS trusting `ca` ("" = plaintext), with `token` ("" = none).
  static SecurityOptions Security(const std::string& ca, const std::string& token) {
    SecurityOptions security;
    if (!ca.empty()) security.tls_ca_file = pki_->cert(ca);
    security.token = token;
    return security;
  }

  std::unique_ptr<TrainerClient> Connect(const SecurityOptions& security) {
    client::ClientOptions options;
    options.security = security;
    options.submit_retries = 0;  // A refused handshake is reported, not retried.
    auto connected = TrainerClient::Connect(server_->address(), options);
    EXPECT_TRUE(connected.ok()) << connected.status();
    return connected.ok() ? *std::move(connected) : nullptr;
  }

  std::unique_ptr<TrainerClient> As(const Principal& who) {
    return Connect(Security("ca", who.token));
  }

  std::vector<float> Parameters() {
    auto params = As(admin_)->GetParameters();
    EXPECT_TRUE(params.ok()) << params.status();
    return params.ok() ? params->parameters : std::vector<float>{};
  }

  double AuthFailures(const std::string& reason, const std::string& principal) {
    return server::testing::Sample(server_->metrics()->Scrape(), "deltaserve_auth_failures_total",
                                   {{"reason", reason}, {"principal", principal}})
        .value_or(0);
  }

  static TestPki* pki_;
  Principal observer_ = MakePrincipal("obs", "OBSERVER");
  Principal simulator_ = MakePrincipal("sim", "SIMULATOR");
  Principal admin_ = MakePrincipal("admin", "ADMIN");
  std::string cert_file_, key_file_, auth_file_;
  std::unique_ptr<server::DeltaServer> server_;
};

TestPki* SecureServerTest::pki_ = nullptr;

TEST_F(SecureServerTest, PlaintextClientFailsAgainstTlsServer) {
  StartServer();
  auto plaintext = Connect(Security("", simulator_.token));
  EXPECT_EQ(plaintext->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(plaintext->SubmitDelta(Submission(0)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_->trainer("")->snapshot()->version, 0u);
}

TEST_F(SecureServerTest, ClientTrustingAnotherCaFailsTheHandshake) {
  StartServer();
  auto wrong_ca = Connect(Security("other_ca", simulator_.token));
  EXPECT_EQ(wrong_ca->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SecureServerTest, EveryRpcWithoutAValidTokenIsUnauthenticated) {
  StartServer();
  const std::vector<float> before = Parameters();
  for (const std::string& token : {std::string(), std::string("not-a-token")}) {
    SCOPED_TRACE(token.empty() ? "no token" : "unknown token");
    auto anonymous = Connect(Security("ca", token));
    EXPECT_EQ(anonymous->GetModelInfo().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(anonymous->Forward(Inputs()).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(anonymous->GetParameters().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(anonymous->InputGradient(Inputs(), Deltas()).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(anonymous->SubmitDelta(Submission(0)).status().code(),
              absl::StatusCode::kUnauthenticated);
    const absl::Status watch =
        anonymous->WatchParameters("", [](client::Parameters) { return true; });
    EXPECT_EQ(watch.code(), absl::StatusCode::kUnauthenticated) << watch;
  }
  EXPECT_EQ(Parameters(), before);
  EXPECT_EQ(server_->trainer("")->snapshot()->version, 0u);
  EXPECT_EQ(AuthFailures("missing", ""), 6);
  EXPECT_EQ(AuthFailures("unknown_token", ""), 6);
}

TEST_F(SecureServerTest, ObserverReadsButSubmittingIsDeniedAndChangesNothing) {
  StartServer();
  auto observer = As(observer_);
  ASSERT_TRUE(observer->GetModelInfo().ok());
  ASSERT_TRUE(observer->Forward(Inputs()).ok());
  const std::vector<float> before = Parameters();
  ASSERT_FALSE(before.empty());
  // InputGradient is a read (OBSERVER), and changes nothing.
  const absl::StatusOr<client::InputGradientResult> gradient =
      observer->InputGradient(Inputs(), Deltas());
  ASSERT_TRUE(gradient.ok()) << gradient.status();
  EXPECT_EQ(gradient->input_gradient.cols(), client::testing::kInputDim);

  const absl::Status denied = observer->SubmitDelta(Submission(0)).status();
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied) << denied;
  EXPECT_NE(denied.message().find("needs SIMULATOR"), absl::string_view::npos) << denied;

  const std::vector<float> after = Parameters();
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(std::memcmp(after.data(), before.data(), before.size() * sizeof(float)), 0)
      << "parameters changed after a denied SubmitDelta";
  EXPECT_EQ(server_->trainer("")->snapshot()->version, 0u);
  EXPECT_EQ(AuthFailures("permission_denied", "obs"), 1);
  // The token never appears in the metrics.
  EXPECT_EQ(server_->metrics()->Scrape().find(observer_.token), std::string::npos);
}

// ListModels and the GetParameters long-poll are OBSERVER reads: refused
// without a token before anything parks, allowed for every role.
TEST_F(SecureServerTest, ListModelsAndTheLongPollNeedAnObserverToken) {
  StartServer();
  auto anonymous = Connect(Security("ca", ""));
  EXPECT_EQ(anonymous->ListModels().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous->GetParameters("", 5).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(server::testing::Sample(server_->metrics()->Scrape(), "deltaserve_parameter_waiters",
                                    {{"model", client::testing::kModelName}})
                .value_or(-1),
            0.0);
  EXPECT_EQ(AuthFailures("missing", ""), 2);
  for (const Principal* who : {&observer_, &simulator_, &admin_}) {
    auto client = As(*who);
    auto models = client->ListModels();
    ASSERT_TRUE(models.ok()) << who->name << ": " << models.status();
    ASSERT_EQ(models->size(), 1u);
    auto params = client->GetParameters("", 0);
    EXPECT_TRUE(params.ok()) << who->name << ": " << params.status();
  }
}

TEST_F(SecureServerTest, SimulatorAndAdminTrain) {
  StartServer();
  const std::vector<float> before = Parameters();
  for (const Principal* who : {&simulator_, &admin_}) {
    SCOPED_TRACE(who->name);
    auto trainer = As(*who);
    const uint64_t version = server_->trainer("")->snapshot()->version;
    auto result = trainer->SubmitDelta(Submission(version));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->version, version + 1);
  }
  EXPECT_NE(Parameters(), before);
}

// Session is authorized once, at its start, as SIMULATOR: without it the
// stream ends before a call is read, and every call on it fails with the
// stream's status.
TEST_F(SecureServerTest, ASessionNeedsSimulatorAndEndsAtOnceWithoutIt) {
  StartServer();
  auto anonymous = Connect(Security("ca", ""));
  auto observer = As(observer_);
  const std::pair<TrainerClient*, absl::StatusCode> refused[] = {
      {anonymous.get(), absl::StatusCode::kUnauthenticated},
      {observer.get(), absl::StatusCode::kPermissionDenied}};
  for (const auto& [who, code] : refused) {
    absl::StatusOr<std::unique_ptr<client::Session>> session = who->OpenSession();
    ASSERT_TRUE(session.ok()) << session.status();
    EXPECT_EQ((*session)->SubmitDeltaSync(Submission(0)).status().code(), code);
    EXPECT_EQ((*session)->Close().code(), code);
  }
  EXPECT_EQ(server_->trainer("")->snapshot()->version, 0u);
  auto simulator = As(simulator_);
  absl::StatusOr<std::unique_ptr<client::Session>> session = simulator->OpenSession();
  ASSERT_TRUE(session.ok()) << session.status();
  absl::StatusOr<client::SubmitDeltaResult> result = (*session)->SubmitDeltaSync(Submission(0));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 1u);
  EXPECT_TRUE((*session)->Close().ok());
}

TEST_F(SecureServerTest, OnlyAdminMayUseTheAdminService) {
  StartServer();
  const std::vector<float> before = Parameters();
  std::vector<float> imported(before.size(), 0.25f);
  for (const Principal* who : {&observer_, &simulator_}) {
    SCOPED_TRACE(who->name);
    auto denied = As(*who);
    EXPECT_EQ(denied->ImportParameters("", imported).status().code(),
              absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(denied->Checkpoint("").status().code(), absl::StatusCode::kPermissionDenied);
  }
  auto anonymous = Connect(Security("ca", ""));
  EXPECT_EQ(anonymous->ImportParameters("", imported).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Parameters(), before);
  EXPECT_EQ(AuthFailures("permission_denied", "sim"), 2);

  auto admin = As(admin_);
  absl::StatusOr<uint64_t> version = admin->ImportParameters("", imported);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(Parameters(), imported);
  // Past the Authorizer: the server has no --state_dir, which is the only refusal.
  EXPECT_EQ(admin->Checkpoint("").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SecureServerTest, HealthNeedsNoToken) {
  StartServer();
  auto security = client::ChannelSecurity::Load(Security("ca", ""));
  ASSERT_TRUE(security.ok()) << security.status();
  auto health = grpc::health::v1::Health::NewStub(
      client::CreateChannel(server_->address(), client::kDefaultMaxMessageBytes, *security));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, {}, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(SecureServerTest, MutualTlsRefusesClientsWithoutACertificateFromItsCa) {
  StartServer(/*mutual=*/true);
  SecurityOptions no_cert = Security("ca", simulator_.token);
  EXPECT_EQ(Connect(no_cert)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);

  SecurityOptions foreign_cert = no_cert;
  foreign_cert.tls_cert_file = pki_->cert("other_client");
  foreign_cert.tls_key_file = pki_->key("other_client");
  EXPECT_EQ(Connect(foreign_cert)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);

  SecurityOptions good = no_cert;
  good.tls_cert_file = pki_->cert("client");
  good.tls_key_file = pki_->key("client");
  auto client = Connect(good);
  auto result = client->SubmitDelta(Submission(0));
  ASSERT_TRUE(result.ok()) << result.status();
  // A certificate is not a token: mutual TLS still checks the role.
  good.token = observer_.token;
  EXPECT_EQ(Connect(good)->SubmitDelta(Submission(1)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(SecureServerTest, AuthReloadRotatesTokensAndKeepsOpenStreams) {
  StartServer();
  // A watch of the observer that is about to be removed.
  VersionLog seen;
  auto watcher = As(observer_);
  auto watch = watcher->Watch("", [&seen](client::Parameters p) { seen.Add(p.version); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(seen.AwaitAtLeast(0));

  const Principal replacement = MakePrincipal("obs2", "OBSERVER");
  WriteFileOrDie(auth_file_, AuthFileText({replacement, simulator_}));
  ASSERT_TRUE(server_->Reload().ok());

  EXPECT_EQ(As(observer_)->GetModelInfo().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(As(admin_)->GetModelInfo().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(As(replacement)->GetModelInfo().ok());
  ASSERT_TRUE(As(simulator_)->SubmitDelta(Submission(0)).ok());
  // The stream authorized before the reload runs on and sees the new version.
  EXPECT_TRUE(seen.AwaitAtLeast(1));
  EXPECT_FALSE((*watch)->WaitWithTimeout(absl::ZeroDuration()).has_value());
}

TEST_F(SecureServerTest, InvalidAuthFileOnReloadKeepsThePrincipalsInForce) {
  StartServer();
  WriteFileOrDie(auth_file_, "principals { name: \"x\" role: ADMIN token_sha256: \"ABC\" }\n");
  const absl::Status reload = server_->Reload();
  EXPECT_EQ(reload.code(), absl::StatusCode::kInvalidArgument) << reload;
  EXPECT_TRUE(As(observer_)->GetModelInfo().ok());
  EXPECT_EQ(server::testing::Sample(server_->metrics()->Scrape(), "deltaserve_reloads_total",
                                    {{"what", "auth"}, {"result", "error"}}),
            1);
}

// Until the server's new certificate is in force (gRPC re-reads the staged
// files every kTlsRefreshSeconds): true once a fresh client trusting only
// `ca` completes a call, false after kWait.
bool AwaitServedBy(const std::string& address, const SecurityOptions& security) {
  const absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    client::ClientOptions options;
    options.security = security;
    options.submit_retries = 0;
    auto fresh = TrainerClient::Connect(address, options);
    if (fresh.ok() && (*fresh)->GetModelInfo().ok()) return true;
    absl::SleepFor(absl::Milliseconds(50));  // Polls the refresh; not a synchronisation.
  }
  return false;
}

TEST_F(SecureServerTest, CertificateReloadTakesEffectWithoutDroppingStreams) {
  StartServer();
  auto simulator = As(simulator_);  // Connected before the rotation.
  ASSERT_TRUE(simulator->GetModelInfo().ok());
  VersionLog seen;
  auto watch = As(observer_)->Watch("", [&seen](client::Parameters p) { seen.Add(p.version); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(seen.AwaitAtLeast(0));

  // A bad pair (key of another certificate) is refused; the old one stays.
  WriteFileOrDie(key_file_, ReadFileOrDie(pki_->key("other_server")));
  EXPECT_EQ(server_->Reload().code(), absl::StatusCode::kInvalidArgument);

  WriteFileOrDie(cert_file_, ReadFileOrDie(pki_->cert("other_server")));
  ASSERT_TRUE(server_->Reload().ok());
  EXPECT_TRUE(AwaitServedBy(server_->address(), Security("other_ca", observer_.token)));
  EXPECT_EQ(As(observer_)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable)
      << "a new connection trusting only the old CA still succeeded";

  // The connections made before the rotation still work.
  ASSERT_TRUE(simulator->SubmitDelta(Submission(0)).ok());
  EXPECT_TRUE(seen.AwaitAtLeast(1));
  EXPECT_FALSE((*watch)->WaitWithTimeout(absl::ZeroDuration()).has_value());
}

TEST_F(SecureServerTest, StartRefusesUnusableTlsFiles) {
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.tls_cert_file = pki_->cert("server");
  options.tls_key_file = pki_->key("client");
  auto mismatched = server::DeltaServer::Start(client::testing::SmallConfig(), options);
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  options.tls_key_file = "";
  EXPECT_EQ(server::DeltaServer::Start(client::testing::SmallConfig(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.tls_key_file = pki_->key("server");
  options.tls_client_ca_file = pki_->key("ca");  // A key is not a CA certificate.
  EXPECT_EQ(server::DeltaServer::Start(client::testing::SmallConfig(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SecureServerTest, RefusesAnOpenListenerWithoutAnAuthFile) {
  server::ServerOptions options;
  options.listen_address = "0.0.0.0:0";
  auto open = server::DeltaServer::Start(client::testing::SmallConfig(), options);
  EXPECT_EQ(open.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(open.status().message().find("--auth_file"), absl::string_view::npos);
  // (--allow_unauthenticated is covered by ListenExposure: tests never bind
  // a non-loopback address.)
}

}  // namespace
}  // namespace deltaserve
