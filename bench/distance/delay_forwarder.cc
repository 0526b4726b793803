// deltaserve_delay_forwarder: a TCP forwarder that adds a fixed one-way delay
// in each direction, for bench/distance when the kernel has no netem qdisc.
//
//   deltaserve_delay_forwarder --listen=127.0.0.1:0 --target=10.0.0.1:50051 --delay_ms=5
//
// prints "listening on HOST:PORT" and serves until SIGTERM / SIGINT. Every
// accepted connection gets its own connection to --target (TCP_NODELAY on
// both). Each chunk read from one side is stamped with (arrival + delay) and
// written to the other side no earlier than that, in order; an end of stream
// (FIN) is delayed the same way and passed on as shutdown(SHUT_WR). So a
// request/answer round trip through the forwarder costs 2 x delay plus the
// path's own round trip. Not delayed: the TCP handshakes (the forwarder
// connects upstream when it accepts), so the delay is paid per message, not
// per connection. Bandwidth is not limited here (bench/distance uses tbf).
//
// One thread, epoll, a timerfd at the earliest release time (nanosecond
// resolution, timer slack set to 1 ns). A direction holding more than
// --max_queue_bytes stops reading its source until it drains (backpressure,
// like a full link). An error on either side closes both.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "deltaserve/base/address.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "host:port to accept on (port 0: the OS picks)");
ABSL_FLAG(std::string, target, "", "host:port every accepted connection is forwarded to");
ABSL_FLAG(double, delay_ms, 0.0, "one-way delay added in each direction, milliseconds");
ABSL_FLAG(int64_t, max_queue_bytes, 16 << 20,
          "bytes one direction may hold before it stops reading its source");

namespace deltaserve::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kReadBytes = 64 * 1024;

struct Chunk {
  Clock::time_point release;
  std::string data;  // empty: end of stream
};

// One direction of a connection: bytes read from `from`, due to `to`.
struct Pipe {
  int from = -1;
  int to = -1;
  std::deque<Chunk> queue;
  size_t queued_bytes = 0;
  size_t written = 0;          // of queue.front().data
  bool read_eof = false;       // `from` sent FIN
  bool sent_eof = false;       // FIN passed on to `to`
  bool write_blocked = false;  // `to` said EAGAIN; wait for EPOLLOUT
  bool paused = false;         // stopped reading at max_queue_bytes
  bool discard = false;        // `to` is gone: drop what comes due
};

constexpr uint32_t kDetached = ~0u;  // Conn::*_events of a side epoll no longer watches

struct Conn {
  int client = -1;
  int upstream = -1;
  Pipe up;    // client -> upstream
  Pipe down;  // upstream -> client
  bool closed = false;
  uint32_t client_events = EPOLLIN;  // what epoll watches on each side now
  uint32_t upstream_events = EPOLLIN;
};

bool SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

void SetNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// getaddrinfo for host:port, IPv4 or IPv6; nullptr (with a message) on failure.
addrinfo* Resolve(const std::string& text, bool passive) {
  const absl::StatusOr<base::Address> address = base::ParseAddress(text);
  if (!address.ok()) {
    std::fprintf(stderr, "delay_forwarder: %s\n", std::string(address.status().message()).c_str());
    return nullptr;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* result = nullptr;
  const std::string port = std::to_string(address->port);
  const int rc = getaddrinfo(address->host.empty() ? nullptr : address->host.c_str(), port.c_str(),
                             &hints, &result);
  if (rc != 0) {
    std::fprintf(stderr, "delay_forwarder: cannot resolve '%s': %s\n", text.c_str(),
                 gai_strerror(rc));
    return nullptr;
  }
  return result;
}

class Forwarder {
 public:
  Forwarder(int listen_fd, addrinfo* target, Clock::duration delay, size_t max_queue_bytes)
      : listen_fd_(listen_fd), target_(target), delay_(delay), max_queue_bytes_(max_queue_bytes) {}

  // Runs until epoll fails; returns the exit code.
  int Run() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epoll_fd_ < 0 || timer_fd_ < 0) return Fail("epoll_create1/timerfd_create");
    Watch(listen_fd_, EPOLLIN, EPOLL_CTL_ADD);
    Watch(timer_fd_, EPOLLIN, EPOLL_CTL_ADD);
    epoll_event events[256];
    for (;;) {
      const int n = epoll_wait(epoll_fd_, events, 256, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == listen_fd_) {
          Accept();
        } else if (fd == timer_fd_) {
          uint64_t expirations;
          while (read(timer_fd_, &expirations, sizeof(expirations)) > 0) {
          }
        } else {
          OnSocket(fd, events[i].events);
        }
      }
      FlushDue();
      ArmTimer();
      Reap();
    }
  }

 private:
  int Fail(const char* what) {
    std::fprintf(stderr, "delay_forwarder: %s: %s\n", what, std::strerror(errno));
    return 1;
  }

  void Watch(int fd, uint32_t events, int op) {
    epoll_event event{};
    event.events = events;
    event.data.fd = fd;
    epoll_ctl(epoll_fd_, op, fd, &event);
  }

  void Accept() {
    for (;;) {
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) return;  // EAGAIN, or a transient error: the next event retries
      int upstream = -1;
      for (addrinfo* a = target_; a != nullptr && upstream < 0; a = a->ai_next) {
        upstream = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (upstream < 0) continue;
        if (connect(upstream, a->ai_addr, a->ai_addrlen) != 0) {
          close(upstream);
          upstream = -1;
        }
      }
      if (upstream < 0 || !SetNonBlocking(upstream)) {
        std::fprintf(stderr, "delay_forwarder: cannot connect to the target: %s\n",
                     std::strerror(errno));
        if (upstream >= 0) close(upstream);
        close(client);
        continue;
      }
      SetNoDelay(client);
      SetNoDelay(upstream);
      auto conn = std::make_shared<Conn>();
      conn->client = client;
      conn->upstream = upstream;
      conn->up.from = client;
      conn->up.to = upstream;
      conn->down.from = upstream;
      conn->down.to = client;
      by_fd_[client] = conn;
      by_fd_[upstream] = conn;
      Watch(client, EPOLLIN, EPOLL_CTL_ADD);
      Watch(upstream, EPOLLIN, EPOLL_CTL_ADD);
    }
  }

  void OnSocket(int fd, uint32_t events) {
    const auto it = by_fd_.find(fd);
    if (it == by_fd_.end()) return;
    const std::shared_ptr<Conn> conn = it->second;
    if (conn->closed) return;
    Pipe& out = fd == conn->client ? conn->up : conn->down;  // fd is out.from
    Pipe& in = fd == conn->client ? conn->down : conn->up;   // fd is in.to
    if ((events & EPOLLERR) != 0) {
      Close(*conn);  // reset
      return;
    }
    if ((events & EPOLLOUT) != 0) in.write_blocked = false;
    if ((events & (EPOLLIN | EPOLLHUP)) != 0) ReadFrom(*conn, out);
    if ((events & EPOLLHUP) != 0 && out.read_eof && !conn->closed) {
      // This side is closed both ways: nothing more to read from it, and what
      // is still due to it cannot arrive. Stop watching it (epoll reports HUP
      // whatever the mask); the other direction still delivers its queue.
      in.discard = true;
      in.write_blocked = false;
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      (fd == conn->client ? conn->client_events : conn->upstream_events) = kDetached;
    }
    UpdateInterest(*conn);
  }

  // Reads what `pipe.from` has, stamping each chunk with now + delay.
  void ReadFrom(Conn& conn, Pipe& pipe) {
    pipe.paused = false;
    for (;;) {
      if (conn.closed || pipe.read_eof) return;
      if (pipe.queued_bytes >= max_queue_bytes_) {
        pipe.paused = true;
        return;
      }
      const ssize_t n = read(pipe.from, buffer_, sizeof(buffer_));
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        Close(conn);
        return;
      }
      Chunk chunk;
      chunk.release = Clock::now() + delay_;
      if (n == 0) {
        pipe.read_eof = true;
      } else {
        chunk.data.assign(buffer_, static_cast<size_t>(n));
        pipe.queued_bytes += static_cast<size_t>(n);
      }
      pipe.queue.push_back(std::move(chunk));
    }
  }

  // Writes every chunk of `pipe` whose release time has come.
  void Flush(Conn& conn, Pipe& pipe, Clock::time_point now) {
    while (!conn.closed && !pipe.write_blocked && !pipe.queue.empty() &&
           pipe.queue.front().release <= now) {
      Chunk& front = pipe.queue.front();
      if (front.data.empty()) {  // end of stream
        if (!pipe.discard) shutdown(pipe.to, SHUT_WR);
        pipe.sent_eof = true;
        pipe.queue.pop_front();
        continue;
      }
      if (pipe.discard) {
        pipe.queued_bytes -= front.data.size();
        pipe.written = 0;
        pipe.queue.pop_front();
        continue;
      }
      const ssize_t n = send(pipe.to, front.data.data() + pipe.written,
                             front.data.size() - pipe.written, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          pipe.write_blocked = true;
          return;
        }
        if (errno == EINTR) continue;
        Close(conn);
        return;
      }
      pipe.written += static_cast<size_t>(n);
      if (pipe.written == front.data.size()) {
        pipe.queued_bytes -= front.data.size();
        pipe.written = 0;
        pipe.queue.pop_front();
      }
    }
  }

  void FlushDue() {
    const Clock::time_point now = Clock::now();
    for (auto& [fd, conn] : by_fd_) {
      if (fd != conn->client || conn->closed) continue;  // each connection once
      Flush(*conn, conn->up, now);
      Flush(*conn, conn->down, now);
      if (!conn->closed) {
        // A paused direction that drained may read again.
        if (conn->up.paused && conn->up.queued_bytes < max_queue_bytes_) {
          ReadFrom(*conn, conn->up);
        }
        if (conn->down.paused && conn->down.queued_bytes < max_queue_bytes_) {
          ReadFrom(*conn, conn->down);
        }
        Flush(*conn, conn->up, now);
        Flush(*conn, conn->down, now);
      }
      UpdateInterest(*conn);
      if (conn->up.sent_eof && conn->down.sent_eof) Close(*conn);
    }
  }

  // EPOLLIN while a direction reads, EPOLLOUT while it waits to write.
  void UpdateInterest(Conn& conn) {
    if (conn.closed) return;
    for (const int fd : {conn.client, conn.upstream}) {
      const Pipe& out = fd == conn.client ? conn.up : conn.down;
      const Pipe& in = fd == conn.client ? conn.down : conn.up;
      uint32_t events = 0;
      if (!out.read_eof && out.queued_bytes < max_queue_bytes_) events |= EPOLLIN;
      if (in.write_blocked) events |= EPOLLOUT;
      uint32_t& watched = fd == conn.client ? conn.client_events : conn.upstream_events;
      if (events == watched || watched == kDetached) continue;
      watched = events;
      Watch(fd, events, EPOLL_CTL_MOD);
    }
  }

  // The timer at the earliest release among the directions that can write.
  void ArmTimer() {
    bool any = false;
    Clock::time_point earliest = Clock::time_point::max();
    for (const auto& [fd, conn] : by_fd_) {
      if (fd != conn->client || conn->closed) continue;
      for (const Pipe* pipe : {&conn->up, &conn->down}) {
        if (pipe->queue.empty() || pipe->write_blocked) continue;
        any = true;
        if (pipe->queue.front().release < earliest) earliest = pipe->queue.front().release;
      }
    }
    itimerspec spec{};
    if (any) {
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(earliest.time_since_epoch()).count();
      spec.it_value.tv_sec = ns / 1000000000;
      spec.it_value.tv_nsec = ns % 1000000000;
      if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    }
    // steady_clock is CLOCK_MONOTONIC on Linux, so its epoch is the timerfd's.
    timerfd_settime(timer_fd_, any ? TFD_TIMER_ABSTIME : 0, &spec, nullptr);
  }

  void Close(Conn& conn) {
    if (conn.closed) return;
    conn.closed = true;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn.client, nullptr);
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn.upstream, nullptr);
    close(conn.client);
    close(conn.upstream);
  }

  void Reap() {
    for (auto it = by_fd_.begin(); it != by_fd_.end();) {
      it = it->second->closed ? by_fd_.erase(it) : std::next(it);
    }
  }

  const int listen_fd_;
  addrinfo* const target_;
  const Clock::duration delay_;
  const size_t max_queue_bytes_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  char buffer_[kReadBytes];
  std::map<int, std::shared_ptr<Conn>> by_fd_;
};

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const double delay_ms = absl::GetFlag(FLAGS_delay_ms);
  if (!(delay_ms >= 0 && delay_ms <= 60000)) {
    std::fprintf(stderr, "delay_forwarder: --delay_ms must be in [0, 60000], got %g\n", delay_ms);
    return 2;
  }
  if (absl::GetFlag(FLAGS_max_queue_bytes) <= 0) {
    std::fprintf(stderr, "delay_forwarder: --max_queue_bytes must be positive\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_target).empty()) {
    std::fprintf(stderr, "delay_forwarder: --target=HOST:PORT is required\n");
    return 2;
  }
  addrinfo* target = Resolve(absl::GetFlag(FLAGS_target), /*passive=*/false);
  addrinfo* listen_at = Resolve(absl::GetFlag(FLAGS_listen), /*passive=*/true);
  if (target == nullptr || listen_at == nullptr) return 2;
  const int listen_fd = socket(listen_at->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(listen_fd, listen_at->ai_addr, listen_at->ai_addrlen) != 0 ||
      listen(listen_fd, 1024) != 0) {
    std::fprintf(stderr, "delay_forwarder: cannot listen on %s: %s\n",
                 absl::GetFlag(FLAGS_listen).c_str(), std::strerror(errno));
    return 1;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (bound.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&bound);
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    port = ntohs(v6->sin6_port);
    std::printf("listening on [%s]:%u\n", host, port);
  } else {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&bound);
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    port = ntohs(v4->sin_port);
    std::printf("listening on %s:%u\n", host, port);
  }
  std::fflush(stdout);
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // release chunks on time, not 50 us late
  signal(SIGPIPE, SIG_IGN);
  const auto delay = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(delay_ms));
  Forwarder forwarder(listen_fd, target, delay,
                      static_cast<size_t>(absl::GetFlag(FLAGS_max_queue_bytes)));
  return forwarder.Run();
}

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) { return deltaserve::bench::Main(argc, argv); }
