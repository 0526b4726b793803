// The flags every simulator binary has, for the Runner's connection:
//   --server  deltaserve address (host:port or unix:PATH)
//   --model   model name; empty = the server's default model
//   --tls_ca_file, --tls_cert_file, --tls_key_file, --tls_server_name,
//   --token_file   TLS and token (client/security_flags.h)
//   --transport  session (default: one Session stream) | unary
//   --rows_per_forward  rows per Forward call (0: all of a step's rows in one)
// Each binary defines its own flags (--actions among them) in its .cc file;
// tests/deploy/check_deploy.py reads both files.
#ifndef DELTASERVE_SIM_RUNNER_FLAGS_H_
#define DELTASERVE_SIM_RUNNER_FLAGS_H_

#include "deltaserve/sim/runner.h"

namespace deltaserve::sim {

// RunnerOptions with server, model and security from the flags, the rest
// defaulted.
RunnerOptions RunnerOptionsFromFlags();

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_RUNNER_FLAGS_H_
