#include "deltaserve/client/security_flags.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: PEM CA bundle the server's certificate must chain to; empty: plaintext unless "
          "another --tls_* flag is set (then the system roots)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate chain, for a server with mutual TLS (needs --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "name the server's certificate must carry; empty: the host of the target");
ABSL_FLAG(std::string, token_file, "",
          "file holding the bearer token (sent as \"authorization: Bearer <token>\"); empty: "
          "$DELTASERVE_TOKEN if set, else no token");

namespace deltaserve::client {

SecurityOptions SecurityOptionsFromFlags() {
  SecurityOptions options;
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.token_file = absl::GetFlag(FLAGS_token_file);
  return options;
}

}  // namespace deltaserve::client
