// How a client checks the server (TLS) and proves who it is (mutual TLS, a
// bearer token); docs/security.md.
//
// SecurityOptions is what users set (ClientOptions::security, the binaries'
// --tls_* / --token_file flags, see client/security_flags.h);
// ChannelSecurity is the loaded form: credentials built from the PEM files
// and the token, read once. Every channel it creates sends
// `authorization: Bearer <token>` on every call (a client interceptor, so
// stubs of any service — Trainer, Admin, health — carry it; over TLS or, on
// loopback, plaintext).
//
// The token is taken from, in order: SecurityOptions::token, the file
// token_file (surrounding whitespace stripped), the environment variable
// DELTASERVE_TOKEN. None: no authorization metadata.
#ifndef DELTASERVE_CLIENT_CHANNEL_SECURITY_H_
#define DELTASERVE_CLIENT_CHANNEL_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace deltaserve::client {

// The environment variable a token is read from when no other is given.
inline constexpr char kTokenEnvVar[] = "DELTASERVE_TOKEN";

struct SecurityOptions {
  // TLS is used when any tls_* field is set. tls_ca_file: PEM bundle the
  // server's certificate must chain to; empty (with TLS) = the system roots.
  std::string tls_ca_file;
  // Client certificate chain and its key (PEM), for servers with mutual TLS.
  // Both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server's certificate must carry; empty: the target's host.
  // Set it when connecting by an address the certificate does not name.
  std::string tls_server_name;
  // Bearer token (see the top of this file for the fallbacks).
  std::string token;
  std::string token_file;
};

class ChannelSecurity {
 public:
  // Plaintext, no token.
  ChannelSecurity() = default;

  // Reads the files and the token. INVALID_ARGUMENT naming the file or field
  // when a file cannot be read, only one of cert/key is set, or the token is
  // empty or has characters metadata cannot carry (whitespace, non-ASCII).
  static absl::StatusOr<ChannelSecurity> Load(const SecurityOptions& options);

  // A channel to `target` with these credentials and `args` (the server name
  // override is added when set). Never blocks.
  std::shared_ptr<grpc::Channel> CreateChannel(const std::string& target,
                                               grpc::ChannelArguments args) const;

  bool tls() const { return tls_; }
  bool has_token() const { return !authorization_.empty(); }

 private:
  bool tls_ = false;
  grpc::SslCredentialsOptions ssl_;
  std::string server_name_;
  std::string authorization_;  // "Bearer <token>", or empty.
};

}  // namespace deltaserve::client

#endif  // DELTASERVE_CLIENT_CHANNEL_SECURITY_H_
