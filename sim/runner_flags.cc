#include "deltaserve/sim/runner_flags.h"

#include <algorithm>
#include <string>

#include "absl/flags/flag.h"
#include "deltaserve/client/security_flags.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "deltaserve address (host:port or unix:PATH)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
ABSL_FLAG(deltaserve::sim::Transport, transport, deltaserve::sim::Transport::kSession,
          "'session' (Forward and SubmitDelta on one Session stream) or 'unary' (one rpc each)");
ABSL_FLAG(int, rows_per_forward, 0,
          "rows per Forward call when several environments step at once: 0 = all in one call, "
          "1 = one call per environment (on a Session all in flight together)");
ABSL_FLAG(deltaserve::sim::ReplicaCatchUp, replica_catch_up,
          deltaserve::sim::ReplicaCatchUp::kFetch,
          "with --actions=replica, how the simulator gets the weights of a SubmitDelta answer "
          "before acting on: 'fetch' (one GetParameters round trip) or 'push' (wait for the "
          "server's weight push, paced at least 10 ms apart per stream)");

namespace deltaserve::sim {

RunnerOptions RunnerOptionsFromFlags() {
  RunnerOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.model = absl::GetFlag(FLAGS_model);
  options.security = client::SecurityOptionsFromFlags();
  options.transport = absl::GetFlag(FLAGS_transport);
  options.rows_per_forward = std::max(0, absl::GetFlag(FLAGS_rows_per_forward));
  options.replica_catch_up = absl::GetFlag(FLAGS_replica_catch_up);
  return options;
}

}  // namespace deltaserve::sim
