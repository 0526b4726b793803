// ConnectionListener: deltaserve's own TCP accept loop in front of gRPC.
//
// gRPC 1.51 has no cap on connections, and its listener stops for good the
// first time accept() fails with EMFILE (grpc/grpc#20418): one flood of idle
// connections used to leave a server that never accepted again. So the
// server binds and accepts itself, on one thread, and hands every connection
// it keeps to gRPC (DeltaServer passes gRPC's external connection acceptor as
// the HandOff), which runs the same TLS or plaintext handshake on it as on
// its own listener's. The loop:
//   - keeps at most `max_connections` open; one more is accepted and closed
//     at once (the client sees UNAVAILABLE and retries with backoff);
//   - never lets connections take the last `reserved_descriptors` below the
//     open-files limit: the kernel hands out the lowest free descriptor, so
//     an accepted descriptor numbered at or above limit − reserved means the
//     table is that full, and it is closed at once;
//   - when accept() itself fails for want of descriptors or memory (EMFILE,
//     ENFILE, ENOBUFS, ENOMEM: something else took them), closes a spare
//     descriptor it holds to accept and close the waiting connection, pauses
//     kResourcePause and goes on accepting: it never stops while the server
//     runs.
// Refusals count in deltaserve_connections_refused_total{reason}; the open
// count is deltaserve_connections.
//
// Open connections are counted without gRPC's help (it tells no one when it
// closes one): the listener remembers each descriptor it handed off with its
// socket's inode, and a descriptor that is closed, or now names another file,
// no longer counts. It checks when the cap is reached and once a second.
#ifndef DELTASERVE_SERVER_SERVICE_CONNECTION_LISTENER_H_
#define DELTASERVE_SERVER_SERVICE_CONNECTION_LISTENER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "deltaserve/proto/config_defaults.h"

namespace deltaserve::server {

class ServerMetrics;

struct ConnectionListenerOptions {
  // Open connections at most (ServerConfig.max_connections). Lowered to what
  // the open-files limit leaves after reserved_descriptors.
  uint32_t max_connections = wire::kDefaultMaxConnections;
  // Descriptors below the open-files limit that connections never take.
  uint32_t reserved_descriptors = 128;
  // Records the open count and refusals. Must outlive the listener; may be null.
  ServerMetrics* metrics = nullptr;
};

class ConnectionListener {
 public:
  // Takes ownership of `fd` (a connected, non-blocking, close-on-exec socket
  // accepted on `listener_fd`).
  using HandOff = std::function<void(int listener_fd, int fd)>;

  // How long accept pauses after failing for want of descriptors or memory.
  static constexpr absl::Duration kResourcePause = absl::Milliseconds(100);

  // Binds and listens on `address`, "host:port", "[v6]:port" or ":port"
  // (base/address.h; port 0: the OS picks; a wildcard host, none, "0.0.0.0"
  // or "[::]", listens on IPv6 and IPv4 where the host has both; a name
  // listens on every address it resolves to, with one port). Connections
  // wait in the kernel's backlog until Start. UNAVAILABLE naming the address
  // if it cannot bind (e.g. another process listens there: SO_REUSEPORT is
  // never set), INVALID_ARGUMENT if the address is none of those forms (a
  // unix socket included: gRPC listens on those itself).
  static absl::StatusOr<std::unique_ptr<ConnectionListener>> Bind(
      const std::string& address, const ConnectionListenerOptions& options);

  // Stops (see Stop).
  ~ConnectionListener();

  ConnectionListener(const ConnectionListener&) = delete;
  ConnectionListener& operator=(const ConnectionListener&) = delete;

  // The port bound (the OS's choice for port 0).
  int port() const { return port_; }

  // The cap in force: max_connections, lowered to leave reserved_descriptors
  // free below the open-files limit read at Bind.
  uint32_t max_connections() const { return max_connections_; }

  // Starts the accept thread, which hands each kept connection to `hand_off`.
  // Call once.
  void Start(HandOff hand_off);

  // Stops accepting and closes the listening sockets; connections already
  // handed off are not touched. Idempotent; blocks until the thread is gone.
  void Stop();

 private:
  ConnectionListener(std::vector<int> listen_fds, int port, int wake_fd, int spare_fd,
                     uint32_t max_connections, uint64_t descriptor_ceiling, ServerMetrics* metrics);
  void Run();
  // Accepts what is waiting on `listen_fd`. False if accept failed for want
  // of descriptors or memory (then the loop pauses).
  bool AcceptReady(int listen_fd);
  // Drops remembered connections that gRPC has closed; updates the gauge.
  void ForgetClosed();
  void Refuse(int fd, const char* reason);

  const std::vector<int> listen_fds_;
  const int port_;
  const int wake_fd_;  // eventfd: Stop writes it to end the loop.
  int spare_fd_;       // /dev/null, closed to accept once when descriptors run out.
  const uint32_t max_connections_;
  const uint64_t descriptor_ceiling_;  // Accepted descriptors at or above it are refused.
  std::string why_;                    // How max_connections_ was chosen, for the log.
  ServerMetrics* const metrics_;
  HandOff hand_off_;
  std::thread thread_;
  bool stopped_ = false;

  // Touched by the accept thread only: handed-off descriptor → socket inode.
  absl::flat_hash_map<int, ino_t> open_;
  absl::Time last_sweep_ = absl::InfinitePast();
  absl::Time last_refusal_log_ = absl::InfinitePast();
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_CONNECTION_LISTENER_H_
