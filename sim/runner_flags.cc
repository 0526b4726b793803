#include "deltaserve/sim/runner_flags.h"

#include <algorithm>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "deltaserve/client/security_flags.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "deltaserve address (host:port or unix:PATH)");
ABSL_FLAG(std::string, model, "", "model name; empty = the server's default model");
ABSL_FLAG(deltaserve::sim::Transport, transport, deltaserve::sim::Transport::kSession,
          "'session' (Forward and SubmitDelta on one Session stream) or 'unary' (one rpc each)");
ABSL_FLAG(int, rows_per_forward, 0,
          "rows per Forward call when several environments step at once: 0 = all in one call, "
          "1 = one call per environment (on a Session all in flight together)");
ABSL_FLAG(deltaserve::sim::ReplicaCatchUp, replica_catch_up,
          deltaserve::sim::ReplicaCatchUp::kAnswer,
          "with --actions=replica, how the simulator gets the weights of a SubmitDelta answer "
          "before acting on: 'answer' (they come with the answer: return_parameters), 'fetch' "
          "(one more round trip, GetParameters) or 'push' (wait for the server's weight push, "
          "paced at least 10 ms apart per stream)");

ABSL_FLAG(absl::Duration, retry_for, absl::Minutes(10),
          "how long one call keeps retrying while the trainer is unreachable or its queue full "
          "(UNAVAILABLE, RESOURCE_EXHAUSTED), in backoffs of 20 ms doubling to 2 s, before the "
          "simulator exits with code 1: long enough to ride out a trainer's restart");

namespace deltaserve::sim {

RunnerOptions RunnerOptionsFromFlags() {
  RunnerOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.model = absl::GetFlag(FLAGS_model);
  options.security = client::SecurityOptionsFromFlags();
  options.transport = absl::GetFlag(FLAGS_transport);
  options.rows_per_forward = std::max(0, absl::GetFlag(FLAGS_rows_per_forward));
  options.replica_catch_up = absl::GetFlag(FLAGS_replica_catch_up);
  options.retry.retry_for = std::max(absl::ZeroDuration(), absl::GetFlag(FLAGS_retry_for));
  return options;
}

}  // namespace deltaserve::sim
