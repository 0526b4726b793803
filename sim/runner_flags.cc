#include "sim/runner_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "client/security_flags.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "deltaserve address (host:port or unix:PATH)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
ABSL_FLAG(std::string, transport, "session",
          "'session' (Forward and SubmitDelta on one Session stream) or 'unary' (one rpc each)");

namespace deltaserve::sim {

RunnerOptions RunnerOptionsFromFlags() {
  RunnerOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.model = absl::GetFlag(FLAGS_model);
  options.security = client::SecurityOptionsFromFlags();
  options.transport = absl::GetFlag(FLAGS_transport);
  return options;
}

}  // namespace deltaserve::sim
