// The server's transport security (docs/security.md): TLS and mutual TLS
// credentials that reload on SIGHUP, and the rule that a server never listens
// openly by accident.
//
// Reloading. gRPC 1.51 can change a running server's certificates only
// through a certificate provider; its FileWatcherCertificateProvider re-reads
// files on a timer and needs the key and certificate to change atomically.
// So ServerTls validates the operator's PEM files (the key matches the
// certificate, every file parses), copies them into a private directory of
// its own (mkdtemp under $TMPDIR, mode 0700; the key 0600) as one generation
// and points the symlink `current` at it; gRPC watches `current/*.pem`.
// Reload (SIGHUP) validates the files again and, only if they are good,
// writes a new generation and swaps the symlink: within
// kTlsRefreshSeconds new handshakes use it. Connections already established
// keep their session, so healthy streams are never dropped; a bad file on
// disk never replaces good credentials in use.
#ifndef DELTASERVE_SERVER_SERVICE_TLS_H_
#define DELTASERVE_SERVER_SERVICE_TLS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/security/server_credentials.h"

namespace deltaserve::server {

// How often gRPC looks at the staged files (seconds).
inline constexpr unsigned kTlsRefreshSeconds = 1;

struct TlsFiles {
  std::string cert_file;       // PEM certificate chain, leaf first. Required.
  std::string key_file;        // PEM private key of the leaf. Required.
  std::string client_ca_file;  // PEM CA bundle; non-empty: mutual TLS.
};

class ServerTls {
 public:
  // Reads and validates `files` (INVALID_ARGUMENT naming the flag and the
  // problem: unreadable, not PEM, key does not match the certificate) and
  // stages them (INTERNAL if the private directory cannot be written).
  static absl::StatusOr<std::unique_ptr<ServerTls>> Create(TlsFiles files);

  // Removes the private directory.
  ~ServerTls();
  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;

  // Server credentials over the staged files: TLS 1.2+, and with a client CA
  // mutual TLS where a client without a certificate that CA signed fails
  // the handshake.
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }

  bool mutual() const { return !files_.client_ca_file.empty(); }

  // Re-reads the files. OK: staged, in force within kTlsRefreshSeconds.
  // Error: the credentials in use stay, and the error says why.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ServerTls(TlsFiles files, std::string dir);
  absl::Status Stage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsFiles files_;
  const std::string dir_;  // The private directory.
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  absl::Mutex mu_;
  int generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// FAILED_PRECONDITION with one line saying what to do when `listen_address`
// is not loopback (base::IsLoopbackAddress; an address that does not parse is
// not loopback), there is no auth file and open access was not asked for
// (--allow_unauthenticated); OK otherwise.
absl::Status CheckListenExposure(absl::string_view listen_address, bool has_auth_file,
                                 bool allow_unauthenticated);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_TLS_H_
