#include "deltaserve/server/service/connection_listener.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/address.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/metrics.h"

namespace deltaserve::server {
namespace {

// How often the open count is refreshed when nothing else asks for it.
constexpr absl::Duration kSweepEvery = absl::Seconds(1);
// At the cap, how long a sweep's answer holds: a flood is refused without
// re-reading every connection for each one.
constexpr absl::Duration kSweepAtCapEvery = absl::Milliseconds(50);
// At most one log line per kind of refusal this often (a flood is counted
// in metrics, not logged line by line).
constexpr absl::Duration kRefusalLogEvery = absl::Seconds(10);
// Accepts per listening socket per wake-up, so two sockets take turns.
constexpr int kAcceptsPerWake = 64;

// A listening socket on `addr`, or -1 with errno set.
int ListenOn(const sockaddr* addr, socklen_t length, bool v6only) {
  const int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  const int v6 = v6only ? 1 : 0;
  // SO_REUSEADDR lets a restarted server take a port whose old connections
  // linger in TIME_WAIT; unlike SO_REUSEPORT it never lets two listen.
  // TCP_NODELAY is inherited by the accepted sockets.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      (addr->sa_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) != 0) ||
      bind(fd, addr, length) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  return bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

void CloseAll(const std::vector<int>& fds) {
  for (const int fd : fds) close(fd);
}

// The listening sockets for `where` on `port` (0: the OS picks, one port
// for all). EADDRINUSE anywhere fails the whole bind; an address family the
// host lacks is skipped if another bound.
absl::StatusOr<std::vector<int>> ListenAll(const std::string& address, const base::Address& where,
                                           uint16_t port) {
  std::vector<int> fds;
  const auto failed = [&](int error) {
    CloseAll(fds);
    if (error == EADDRINUSE) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on \"", address,
                       "\": address already in use (is another deltaserve running there?)"));
    }
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", address, "\": ", std::strerror(error)));
  };
  // A wildcard is one dual-stack IPv6 socket, or IPv4 alone on a host
  // without IPv6.
  if (where.is_wildcard()) {
    sockaddr_in6 any6{};
    any6.sin6_family = AF_INET6;
    any6.sin6_addr = in6addr_any;
    any6.sin6_port = htons(port);
    int fd = ListenOn(reinterpret_cast<sockaddr*>(&any6), sizeof any6, /*v6only=*/false);
    if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
      sockaddr_in any4{};
      any4.sin_family = AF_INET;
      any4.sin_addr.s_addr = htonl(INADDR_ANY);
      any4.sin_port = htons(port);
      fd = ListenOn(reinterpret_cast<sockaddr*>(&any4), sizeof any4, false);
    }
    if (fd < 0) return failed(errno);
    fds.push_back(fd);
    return fds;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  const int gai = getaddrinfo(where.host.c_str(), "0", &hints, &resolved);
  if (gai != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", address, "\": ", gai_strerror(gai)));
  }
  int last_error = EADDRNOTAVAIL;
  for (addrinfo* a = resolved; a != nullptr; a = a->ai_next) {
    sockaddr_storage at{};
    std::memcpy(&at, a->ai_addr, a->ai_addrlen);
    const uint16_t want = fds.empty() ? port : static_cast<uint16_t>(BoundPort(fds.front()));
    if (at.ss_family == AF_INET6) {
      reinterpret_cast<sockaddr_in6*>(&at)->sin6_port = htons(want);
    } else if (at.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&at)->sin_port = htons(want);
    } else {
      continue;
    }
    const int fd = ListenOn(reinterpret_cast<sockaddr*>(&at), a->ai_addrlen, /*v6only=*/true);
    if (fd >= 0) {
      fds.push_back(fd);
      continue;
    }
    last_error = errno;
    if (last_error == EADDRINUSE) break;
  }
  freeaddrinfo(resolved);
  if (fds.empty() || last_error == EADDRINUSE) return failed(last_error);
  return fds;
}

// Descriptors open in this process now (for the log line and the cap).
uint64_t OpenDescriptors() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  uint64_t count = 0;
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count >= 3 ? count - 3 : 0;  // ".", ".." and the directory's own.
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionListener>> ConnectionListener::Bind(
    const std::string& address, const ConnectionListenerOptions& options) {
  // TCP only: unix sockets stay with gRPC's own listener.
  absl::StatusOr<base::Address> where =
      base::ParseAddress(address, {/*any_host=*/true, /*unix_socket=*/false});
  if (!where.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("listen address ", where.status().message()));
  }
  absl::StatusOr<std::vector<int>> fds = ListenAll(address, *where, where->port);
  // Port 0 on a name with several addresses: the port the first one got
  // can be taken on another; the OS picks again.
  for (int attempt = 0; where->port == 0 && !fds.ok() && attempt < 3; ++attempt) {
    fds = ListenAll(address, *where, 0);
  }
  if (!fds.ok()) return fds.status();
  const int port = BoundPort(fds->front());

  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const int spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (wake_fd < 0 || spare_fd < 0) {
    const int error = errno;
    CloseAll(*fds);
    if (wake_fd >= 0) close(wake_fd);
    if (spare_fd >= 0) close(spare_fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", address, "\": ", std::strerror(error)));
  }

  rlimit limit{};
  uint64_t open_files = 1u << 20;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    open_files = limit.rlim_cur;
  }
  const uint64_t reserved = std::min<uint64_t>(options.reserved_descriptors, open_files / 2);
  const uint64_t ceiling = open_files - reserved;
  const uint64_t in_use = OpenDescriptors();
  const uint64_t room = ceiling > in_use ? ceiling - in_use : 1;
  const auto max_connections =
      static_cast<uint32_t>(std::min<uint64_t>(options.max_connections, room));
  std::unique_ptr<ConnectionListener> listener(new ConnectionListener(
      *std::move(fds), port, wake_fd, spare_fd, max_connections, ceiling, options.metrics));
  listener->why_ = absl::StrCat("max_connections ", options.max_connections, ", open files limit ",
                                open_files, ", ", reserved, " kept for the server");
  return listener;
}

ConnectionListener::ConnectionListener(std::vector<int> listen_fds, int port, int wake_fd,
                                       int spare_fd, uint32_t max_connections,
                                       uint64_t descriptor_ceiling, ServerMetrics* metrics)
    : listen_fds_(std::move(listen_fds)),
      port_(port),
      wake_fd_(wake_fd),
      spare_fd_(spare_fd),
      max_connections_(max_connections),
      descriptor_ceiling_(descriptor_ceiling),
      metrics_(metrics) {}

ConnectionListener::~ConnectionListener() { Stop(); }

void ConnectionListener::Start(HandOff hand_off) {
  LogInfo("accepting at most ", max_connections_, " connections (", why_, ")");
  hand_off_ = std::move(hand_off);
  thread_ = std::thread([this] { Run(); });
}

void ConnectionListener::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of overflow.
    if (write(wake_fd_, &one, sizeof one) != static_cast<ssize_t>(sizeof one)) {
      LogError("listener: cannot wake the accept thread: ", std::strerror(errno));
    }
    thread_.join();
  }
  CloseAll(listen_fds_);
  close(wake_fd_);
  if (spare_fd_ >= 0) close(spare_fd_);
}

void ConnectionListener::Run() {
  std::vector<pollfd> polled;
  for (const int fd : listen_fds_) polled.push_back({fd, POLLIN, 0});
  polled.push_back({wake_fd_, POLLIN, 0});
  absl::Time paused_until = absl::InfinitePast();
  while (true) {
    const absl::Time now = absl::Now();
    const bool paused = now < paused_until;
    // While paused only the wake-up is watched.
    for (size_t i = 0; i + 1 < polled.size(); ++i) polled[i].events = paused ? 0 : POLLIN;
    const absl::Duration wait = paused ? paused_until - now : kSweepEvery;
    const int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1;
    if (poll(polled.data(), polled.size(), timeout_ms) < 0 && errno != EINTR) {
      LogError("listener: poll: ", std::strerror(errno));
      paused_until = absl::Now() + kResourcePause;
      continue;
    }
    if ((polled.back().revents & POLLIN) != 0) return;
    if (absl::Now() - last_sweep_ >= kSweepEvery) ForgetClosed();
    if (paused) continue;
    for (size_t i = 0; i + 1 < polled.size(); ++i) {
      if ((polled[i].revents & POLLIN) != 0 && !AcceptReady(polled[i].fd)) {
        paused_until = absl::Now() + kResourcePause;
      }
    }
  }
}

bool ConnectionListener::AcceptReady(int listen_fd) {
  for (int n = 0; n < kAcceptsPerWake; ++n) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      switch (error) {
        case EAGAIN:
          return true;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENETUNREACH:
        case EHOSTDOWN:
        case EHOSTUNREACH:
        case ENONET:
        case ENOPROTOOPT:
        case EOPNOTSUPP:
          continue;  // That connection failed; the next may not (accept(2)).
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM: {
          // The waiting connection would be retried at every wake-up; with a
          // descriptor of our own freed, it is accepted and closed instead.
          if (absl::Now() - last_refusal_log_ >= kRefusalLogEvery) {
            last_refusal_log_ = absl::Now();
            LogWarning("listener: accept: ", std::strerror(error), "; refusing connections for ",
                       absl::FormatDuration(kResourcePause));
          }
          if (spare_fd_ >= 0) close(spare_fd_);
          const int shed = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (shed >= 0) Refuse(shed, "open_files");
          // Fails while nothing is free; tried again at the next shortage.
          spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
          return false;
        }
        default:
          LogError("listener: accept: ", std::strerror(error));
          return false;
      }
    }
    if (static_cast<uint64_t>(fd) >= descriptor_ceiling_) {
      Refuse(fd, "open_files");
      continue;
    }
    if (open_.size() >= max_connections_ && absl::Now() - last_sweep_ >= kSweepAtCapEvery) {
      ForgetClosed();
    }
    if (open_.size() >= max_connections_) {
      Refuse(fd, "max_connections");
      continue;
    }
    struct stat socket_stat {};
    if (fstat(fd, &socket_stat) != 0) {
      close(fd);
      continue;
    }
    // A remembered descriptor with this number was closed by gRPC: the
    // kernel handed the number out again.
    open_[fd] = socket_stat.st_ino;
    if (metrics_ != nullptr) metrics_->SetConnections(static_cast<int64_t>(open_.size()));
    hand_off_(listen_fd, fd);
  }
  return true;
}

void ConnectionListener::ForgetClosed() {
  last_sweep_ = absl::Now();
  for (auto it = open_.begin(); it != open_.end();) {
    struct stat now {};
    const bool same =
        fstat(it->first, &now) == 0 && S_ISSOCK(now.st_mode) && now.st_ino == it->second;
    if (same) {
      ++it;
    } else {
      open_.erase(it++);
    }
  }
  if (metrics_ != nullptr) metrics_->SetConnections(static_cast<int64_t>(open_.size()));
}

void ConnectionListener::Refuse(int fd, const char* reason) {
  // Counted before the client can see it closed.
  if (metrics_ != nullptr) metrics_->RecordConnectionRefused(reason);
  close(fd);
  if (absl::Now() - last_refusal_log_ >= kRefusalLogEvery) {
    last_refusal_log_ = absl::Now();
    LogWarning("listener: refusing connections (", reason, "): ", open_.size(), " open, at most ",
               max_connections_, "; counted in deltaserve_connections_refused_total");
  }
}

}  // namespace deltaserve::server
