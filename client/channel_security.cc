#include "deltaserve/client/channel_security.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "deltaserve/base/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/client_interceptor.h"

namespace deltaserve::client {
namespace {

absl::StatusOr<std::string> ReadFile(absl::string_view what, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": cannot open"));
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The token from the options, the token file or the environment ("" if none).
absl::StatusOr<std::string> ResolveToken(const SecurityOptions& options) {
  std::string token;
  std::string source;
  if (!options.token.empty()) {
    token = options.token;
    source = "token";
  } else if (!options.token_file.empty()) {
    DELTASERVE_ASSIGN_OR_RETURN(token, ReadFile("token file", options.token_file));
    token = std::string(absl::StripAsciiWhitespace(token));
    source = absl::StrCat("token file ", options.token_file);
    if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(source, " is empty"));
  } else if (const char* env = std::getenv(kTokenEnvVar); env != nullptr && *env != '\0') {
    token = std::string(absl::StripAsciiWhitespace(env));
    source = kTokenEnvVar;
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": a token is printable ASCII without spaces (deltaserve-cli token makes one)"));
    }
  }
  return token;
}

// Adds the authorization metadata to every call of the channel.
class AuthorizationInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit AuthorizationInterceptor(const std::string* value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *value_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const value_;  // Owned by the factory, which the channel owns.
};

class AuthorizationInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit AuthorizationInterceptorFactory(std::string value) : value_(std::move(value)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new AuthorizationInterceptor(&value_);
  }

 private:
  const std::string value_;
};

}  // namespace

absl::StatusOr<ChannelSecurity> ChannelSecurity::Load(const SecurityOptions& options) {
  ChannelSecurity security;
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both tls_cert_file and tls_key_file");
  }
  security.tls_ = !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
                  !options.tls_server_name.empty();
  if (!options.tls_ca_file.empty()) {
    DELTASERVE_ASSIGN_OR_RETURN(security.ssl_.pem_root_certs,
                                ReadFile("CA file", options.tls_ca_file));
  }
  if (!options.tls_cert_file.empty()) {
    DELTASERVE_ASSIGN_OR_RETURN(security.ssl_.pem_cert_chain,
                                ReadFile("certificate file", options.tls_cert_file));
    DELTASERVE_ASSIGN_OR_RETURN(security.ssl_.pem_private_key,
                                ReadFile("key file", options.tls_key_file));
  }
  security.server_name_ = options.tls_server_name;
  DELTASERVE_ASSIGN_OR_RETURN(std::string token, ResolveToken(options));
  if (!token.empty()) security.authorization_ = absl::StrCat("Bearer ", token);
  return security;
}

std::shared_ptr<grpc::Channel> ChannelSecurity::CreateChannel(const std::string& target,
                                                              grpc::ChannelArguments args) const {
  if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      tls_ ? grpc::SslCredentials(ssl_) : grpc::InsecureChannelCredentials();
  if (authorization_.empty()) return grpc::CreateCustomChannel(target, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<AuthorizationInterceptorFactory>(authorization_));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, args,
                                                                 std::move(factories));
}

}  // namespace deltaserve::client
