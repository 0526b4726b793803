// The security flags every deltaserve client binary takes (deltaserve-cli,
// the simulators, deltaserve_load), so they are spelled the same everywhere:
//   --tls_ca_file=PEM      TLS; the server's certificate must chain to this CA
//   --tls_cert_file=PEM    client certificate, for servers with mutual TLS
//   --tls_key_file=PEM     its private key
//   --tls_server_name=NAME the name the server's certificate carries, when the
//                          target address is not it (e.g. 127.0.0.1 vs trainer)
//   --token_file=FILE      bearer token; without it $DELTASERVE_TOKEN is used
// There is deliberately no --token flag: a command line is visible to every
// user of the machine (ps).
#ifndef DELTASERVE_CLIENT_SECURITY_FLAGS_H_
#define DELTASERVE_CLIENT_SECURITY_FLAGS_H_

#include "deltaserve/client/channel_security.h"

namespace deltaserve::client {

// The flags' values.
SecurityOptions SecurityOptionsFromFlags();

// For base::ProgramInfo::flag_files: lists these flags in --help.
inline constexpr char kSecurityFlagsFile[] = "client/security_flags.cc";

}  // namespace deltaserve::client

#endif  // DELTASERVE_CLIENT_SECURITY_FLAGS_H_
