// The server under test as a separate process: either started here from the
// deltaserve binary (ServerProcess::Start), or an already running one named
// by its pid (only its RSS is read). Linux only (/proc, prctl).
#ifndef DELTASERVE_BENCH_LOAD_SERVER_PROCESS_H_
#define DELTASERVE_BENCH_LOAD_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace deltaserve::load {

// VmRSS of `pid` in KiB, from /proc/<pid>/status. NOT_FOUND if the process
// is gone, INTERNAL if the file has no VmRSS line (e.g. a zombie).
absl::StatusOr<int64_t> ReadRssKib(pid_t pid);

// True for targets that stay on this machine: base::IsLoopbackAddress after an
// optional ipv4:, ipv6: or dns:/// scheme (127.x.y.z:port, [::1]:port,
// localhost:port, unix:PATH, unix-abstract:NAME).
bool IsLocalTarget(absl::string_view target);

class ServerProcess {
 public:
  // Runs `binary --config=CONFIG --listen=127.0.0.1:0 --log_level=LEVEL
  // EXTRA_ARGS...` (no --config if `config` is empty) with stdout on a pipe,
  // and waits up to
  // `startup_timeout` for its "listening on ADDR" line. The child gets
  // SIGTERM if this process dies. FAILED_PRECONDITION if the server exits
  // first (with its exit status in the message), DEADLINE_EXCEEDED if the
  // line does not come in time (the child is killed), INTERNAL if it cannot
  // be started or prints something else.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::string& config, const std::string& log_level,
      absl::Duration startup_timeout, std::vector<std::string> extra_args = {});

  // Kills (SIGKILL) and reaps the child if Stop has not.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The bound address from the "listening on" line, e.g. "127.0.0.1:41234".
  const std::string& address() const { return address_; }

  // If the child has exited (reaped here), how: "exit 0", "signal 9".
  // nullopt while it runs.
  std::optional<std::string> Exited();

  // SIGTERM, then waits up to `grace` (then SIGKILL). Returns "exit N" or
  // "signal N" and sets *clean to whether it was "exit 0" before the grace
  // ran out. Idempotent: later calls return the first result.
  std::string Stop(absl::Duration grace, bool* clean);

 private:
  ServerProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  // Reads stdout until the "listening on" line; see Start.
  absl::Status AwaitListening(absl::Duration timeout);

  const pid_t pid_;
  int stdout_fd_;
  std::string address_;
  std::optional<std::string> exit_;  // set once reaped
  bool clean_ = false;
};

}  // namespace deltaserve::load

#endif  // DELTASERVE_BENCH_LOAD_SERVER_PROCESS_H_
