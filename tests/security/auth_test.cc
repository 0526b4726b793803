// The Authorizer and the token helpers as specifications: which role each
// method needs (deny by default), what an AuthConfig must look like, and how
// each kind of bad credential is answered.
#include "deltaserve/server/service/auth.h"

#include <cctype>

#include <set>
#include <string>

#include "deltaserve/base/address.h"
#include "deltaserve/base/token.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/service/tls.h"
#include "deltaserve/tests/security/test_pki.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using deltaserve::testing::WriteFileOrDie;

TEST(Token, Sha256MatchesTheStandardTestVector) {
  EXPECT_EQ(base::Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Token, NewTokensAre256RandomBitsInHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::string> token = base::NewToken();
    ASSERT_TRUE(token.ok());
    EXPECT_EQ(token->size(), 64u);
    EXPECT_EQ(token->find_first_not_of("0123456789abcdef"), std::string::npos) << *token;
    seen.insert(*token);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Token, ParseSha256HexRejectsWhatIsNotADigest) {
  EXPECT_TRUE(base::ParseSha256Hex(base::Sha256Hex("x")).ok());
  EXPECT_FALSE(base::ParseSha256Hex("abc").ok());
  EXPECT_FALSE(base::ParseSha256Hex(std::string(64, 'g')).ok());
  EXPECT_TRUE(base::DigestsEqual(base::Sha256("a"), base::Sha256("a")));
  EXPECT_FALSE(base::DigestsEqual(base::Sha256("a"), base::Sha256("b")));
}

TEST(RequiredRole, FollowsTheDesignAndDeniesUnknownMethodsByDefault) {
  EXPECT_EQ(RequiredRole(kGetModelInfoMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kForwardMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kGetParametersMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kWatchParametersMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kListModelsMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole("/deltaserve.v1.Trainer/ListModels"), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kGetMetricsHistoryMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole("/deltaserve.v1.Trainer/GetMetricsHistory"), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kInputGradientMethod), v1::OBSERVER);
  EXPECT_EQ(RequiredRole(kSubmitDeltaMethod), v1::SIMULATOR);
  EXPECT_EQ(RequiredRole(kSessionMethod), v1::SIMULATOR);
  EXPECT_EQ(RequiredRole("/deltaserve.v1.Admin/Checkpoint"), v1::ADMIN);
  EXPECT_EQ(RequiredRole("/deltaserve.v1.Admin/ImportParameters"), v1::ADMIN);
  EXPECT_EQ(RequiredRole("/deltaserve.v1.Trainer/SomethingNew"), v1::ADMIN);
  EXPECT_EQ(RequiredRole(""), v1::ADMIN);
  EXPECT_EQ(RequiredRole("/deltaserve.v1.Trainer/forward"), v1::ADMIN);  // Exact names only.
}

v1::AuthConfig Config(const std::string& name, v1::Role role, const std::string& digest) {
  v1::AuthConfig config;
  v1::Principal* p = config.add_principals();
  p->set_name(name);
  p->set_role(role);
  p->set_token_sha256(digest);
  return config;
}

TEST(ValidateAuthConfig, RejectsWhatCouldNotBeMeant) {
  const std::string digest = base::Sha256Hex("t");
  EXPECT_TRUE(ValidateAuthConfig(Config("a", v1::ADMIN, digest)).ok());
  EXPECT_TRUE(ValidateAuthConfig(v1::AuthConfig()).ok());  // Denies everything.
  EXPECT_FALSE(ValidateAuthConfig(Config("", v1::ADMIN, digest)).ok());
  EXPECT_FALSE(ValidateAuthConfig(Config("a", v1::ROLE_UNSPECIFIED, digest)).ok());
  EXPECT_FALSE(ValidateAuthConfig(Config("a", static_cast<v1::Role>(7), digest)).ok());
  const absl::Status token_itself = ValidateAuthConfig(Config("a", v1::ADMIN, "t"));
  EXPECT_NE(token_itself.message().find("never the token itself"), absl::string_view::npos);
  std::string upper = digest;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_FALSE(ValidateAuthConfig(Config("a", v1::ADMIN, upper)).ok());

  v1::AuthConfig twice = Config("a", v1::ADMIN, digest);
  *twice.add_principals() = Config("a", v1::OBSERVER, base::Sha256Hex("u")).principals(0);
  EXPECT_NE(ValidateAuthConfig(twice).message().find("name used twice"), absl::string_view::npos);
  v1::AuthConfig shared = Config("a", v1::ADMIN, digest);
  *shared.add_principals() = Config("b", v1::OBSERVER, digest).principals(0);
  EXPECT_NE(ValidateAuthConfig(shared).message().find("another principal's"),
            absl::string_view::npos);
}

class AuthorizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto metrics = ServerMetrics::Create({});
    ASSERT_TRUE(metrics.ok());
    metrics_ = *std::move(metrics);
    path_ = ::testing::TempDir() + "/authorizer_test.textproto";
    WriteFileOrDie(path_, "principals { name: \"obs\" role: OBSERVER token_sha256: \"" +
                              base::Sha256Hex("obs-token") +
                              "\" }\n"
                              "principals { name: \"sim\" role: SIMULATOR token_sha256: \"" +
                              base::Sha256Hex("sim-token") +
                              "\" }\n"
                              "principals { name: \"root\" role: ADMIN token_sha256: \"" +
                              base::Sha256Hex("admin-token") + "\" }\n");
    auto authorizer = Authorizer::FromFile(path_, metrics_.get());
    ASSERT_TRUE(authorizer.ok()) << authorizer.status();
    authorizer_ = *std::move(authorizer);
  }

  absl::StatusCode Code(std::optional<absl::string_view> header, absl::string_view method) {
    return authorizer_->Check(header, method).status().code();
  }

  double Failures(const std::string& reason, const std::string& principal) {
    return testing::Sample(metrics_->Scrape(), "deltaserve_auth_failures_total",
                           {{"reason", reason}, {"principal", principal}})
        .value_or(0);
  }

  std::unique_ptr<ServerMetrics> metrics_;
  std::string path_;
  std::unique_ptr<Authorizer> authorizer_;
};

TEST_F(AuthorizerTest, BadCredentialsAreUnauthenticatedAndCountedByReason) {
  EXPECT_EQ(Code(std::nullopt, kForwardMethod), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("obs-token", kForwardMethod), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Basic b2JzOg==", kForwardMethod), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Bearer ", kForwardMethod), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Bearer wrong", kForwardMethod), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Bearer " + base::Sha256Hex("obs-token"), kForwardMethod),
            absl::StatusCode::kUnauthenticated);  // The digest is not the token.
  EXPECT_EQ(Failures("missing", ""), 1);
  EXPECT_EQ(Failures("malformed", ""), 3);
  EXPECT_EQ(Failures("unknown_token", ""), 2);
}

TEST_F(AuthorizerTest, EachRoleMayCallWhatItsRoleAllows) {
  const std::string admin_method = "/deltaserve.v1.Admin/Checkpoint";
  EXPECT_EQ(*authorizer_->Check("Bearer obs-token", kForwardMethod), "obs");
  EXPECT_EQ(Code("bearer obs-token", kWatchParametersMethod), absl::StatusCode::kOk);
  EXPECT_EQ(Code("Bearer obs-token", kSubmitDeltaMethod), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code("Bearer obs-token", kSessionMethod), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code("Bearer sim-token", kSubmitDeltaMethod), absl::StatusCode::kOk);
  EXPECT_EQ(Code("Bearer sim-token", kSessionMethod), absl::StatusCode::kOk);
  EXPECT_EQ(Code("Bearer sim-token", admin_method), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code("Bearer sim-token", "/deltaserve.v1.Trainer/NewRpc"),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(*authorizer_->Check("Bearer admin-token", admin_method), "root");
  EXPECT_EQ(Code("Bearer admin-token", kSubmitDeltaMethod), absl::StatusCode::kOk);
  EXPECT_EQ(Failures("permission_denied", "obs"), 2);
  EXPECT_EQ(Failures("permission_denied", "sim"), 2);
  const absl::Status denied = authorizer_->Check("Bearer sim-token", admin_method).status();
  EXPECT_EQ(denied.message(),
            "principal \"sim\" (SIMULATOR) may not call /deltaserve.v1.Admin/Checkpoint: it "
            "needs ADMIN");
}

TEST_F(AuthorizerTest, ReloadSwapsPrincipalsOnlyWhenTheNewFileIsValid) {
  WriteFileOrDie(path_, "principals { name: \"new\" role: ADMIN token_sha256: \"" +
                            base::Sha256Hex("new-token") + "\" }\n");
  ASSERT_TRUE(authorizer_->Reload().ok());
  EXPECT_EQ(Code("Bearer obs-token", kForwardMethod), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Bearer new-token", kForwardMethod), absl::StatusCode::kOk);

  WriteFileOrDie(path_, "principals { name: ");
  const absl::Status broken = authorizer_->Reload();
  EXPECT_EQ(broken.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(broken.message().find(path_), absl::string_view::npos) << broken;
  EXPECT_EQ(Code("Bearer new-token", kForwardMethod), absl::StatusCode::kOk);
}

TEST(Authorizer, AllowAllAllowsEverything) {
  auto metrics = ServerMetrics::Create({});
  ASSERT_TRUE(metrics.ok());
  auto open = Authorizer::AllowAll(metrics->get());
  EXPECT_FALSE(open->enabled());
  EXPECT_TRUE(open->Check(std::nullopt, "/deltaserve.v1.Admin/Checkpoint").ok());
  EXPECT_TRUE(open->Reload().ok());
}

TEST(Authorizer, FromFileNamesTheFileInItsErrors) {
  auto metrics = ServerMetrics::Create({});
  ASSERT_TRUE(metrics.ok());
  auto missing = Authorizer::FromFile("/nonexistent/auth.textproto", metrics->get());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/auth.textproto"),
            absl::string_view::npos);
}

TEST(ListenExposure, OnlyLoopbackMayListenWithoutAnAuthFile) {
  for (const char* loopback : {"127.0.0.1:50051", "127.8.9.1:1", "[::1]:50051", "localhost:0",
                               "LOCALHOST:1", "unix:/tmp/ds.sock", "unix-abstract:ds"}) {
    EXPECT_TRUE(base::IsLoopbackAddress(loopback)) << loopback;
    EXPECT_TRUE(CheckListenExposure(loopback, false, false).ok()) << loopback;
  }
  for (const char* open : {"0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.1:1", "trainer:50051",
                           "128.0.0.1:1", "[::2]:1", "garbage"}) {
    EXPECT_FALSE(base::IsLoopbackAddress(open)) << open;
    const absl::Status refused = CheckListenExposure(open, false, false);
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << open;
    EXPECT_EQ(refused.message().find('\n'), absl::string_view::npos);
    EXPECT_TRUE(CheckListenExposure(open, /*has_auth_file=*/true, false).ok()) << open;
    EXPECT_TRUE(CheckListenExposure(open, false, /*allow_unauthenticated=*/true).ok()) << open;
  }
}

}  // namespace
}  // namespace deltaserve::server
