// DeltaServer: the trainer process's gRPC server, startable in-process (tests,
// benchmarks) or from main.cc.
#ifndef DELTASERVE_SERVER_SERVER_H_
#define DELTASERVE_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::server {

struct ServerOptions {
  // "host:port" (port 0: the OS picks) or "unix:PATH".
  std::string listen_address = "127.0.0.1:0";
};

class DeltaServer {
 public:
  // Validates `config` (INVALID_ARGUMENT with a one-line reason), builds one
  // Trainer per model, registers the Trainer, health and reflection services
  // and binds the address (UNAVAILABLE if it cannot). Serves on return.
  static absl::StatusOr<std::unique_ptr<DeltaServer>> Start(
      const deltaserve::v1::ServerConfig& config, const ServerOptions& options);

  // Shuts down (see Shutdown).
  ~DeltaServer();

  // The address actually bound: "127.0.0.1:41234", "[::1]:5000", "unix:/p".
  const std::string& address() const;

  // Stops accepting calls; in-flight calls finish or fail with UNAVAILABLE;
  // stops the learner threads. Idempotent; blocks until done.
  void Shutdown();

  // Blocks until Shutdown has completed (from another thread).
  void Wait();

  // (implementation-defined private members)
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVER_H_
