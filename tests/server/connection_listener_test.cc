// ConnectionListener on its own (no gRPC behind it): the hand-off keeps the
// descriptors it is given, as gRPC does, so the tests control how many are
// open. The defect it replaces: gRPC 1.51's listener stopped accepting for
// good after one accept() failed with EMFILE.
#include "deltaserve/server/service/connection_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/support/closed_by_peer.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using deltaserve::server::testing::Sample;
using deltaserve::testing::ClosedByPeer;

// What the hand-off was given, kept open until Release.
class HeldConnections {
 public:
  ConnectionListener::HandOff HandOff() {
    return [this](int, int fd) {
      absl::MutexLock lock(&mu_);
      fds_.push_back(fd);
    };
  }
  // True once `count` descriptors have been handed off (10 s at most).
  bool AwaitCount(size_t count) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, count]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return fds_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10));
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return fds_.size();
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    for (const int fd : fds_) close(fd);
    fds_.clear();
  }
  ~HeldConnections() { Release(); }

 private:
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
};

int UnconnectedSocket() { return socket(AF_INET, SOCK_STREAM, 0); }

bool Connect(int fd, int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  return connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
}

double Refused(ServerMetrics& metrics, const std::string& reason) {
  return Sample(metrics.Scrape(), "deltaserve_connections_refused_total", {{"reason", reason}})
      .value_or(0);
}

TEST(ConnectionListener, KeepsAcceptingAfterAcceptRanOutOfDescriptors) {
  auto metrics = ServerMetrics::Create({});
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  ConnectionListenerOptions options;
  options.reserved_descriptors = 0;  // Let accept() itself hit the limit.
  options.metrics = metrics->get();
  auto listener = ConnectionListener::Bind("127.0.0.1:0", options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  HeldConnections held;
  (*listener)->Start(held.HandOff());

  // The client sockets exist before the limit drops; connect() needs no
  // descriptor. Then only a few more descriptors may be opened: accept()
  // fails with EMFILE once the hand-off holds them.
  constexpr int kClients = 24;
  std::vector<int> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(UnconnectedSocket());
  const int probe = UnconnectedSocket();
  ASSERT_GE(probe, 0);
  close(probe);  // The lowest free descriptor: the limit is set just above it.
  // What the listener thread records while descriptors are short is
  // recorded once before: UBSan's vptr check opens files the first time it
  // meets a type, and would report a false "invalid vptr" at the limit.
  (*metrics)->RecordConnectionRefused("open_files");
  (*metrics)->SetConnections(0);
  const double refused_before = Refused(**metrics, "open_files");
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  rlimit lowered = original;
  lowered.rlim_cur = static_cast<rlim_t>(probe + 4);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  for (const int fd : clients) ASSERT_TRUE(Connect(fd, (*listener)->port()));

  // Some are handed off (the ones that fit), the rest are refused one by
  // one (a pause between each): each refused client sees its connection
  // closed, none waits in the backlog for good.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (held.count() + Refused(**metrics, "open_files") - refused_before < kClients &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));  // Polls the counters; not a synchronisation.
  }
  const size_t kept = held.count();
  const double refused = Refused(**metrics, "open_files") - refused_before;
  EXPECT_GT(kept, 0u);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(static_cast<double>(kept) + refused, kClients);
  int closed = 0;
  for (const int fd : clients) closed += ClosedByPeer(fd, absl::ZeroDuration()) ? 1 : 0;
  EXPECT_EQ(closed, refused);

  // Descriptors free again: the listener accepts as before.
  held.Release();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  for (const int fd : clients) close(fd);
  const int later = UnconnectedSocket();
  ASSERT_TRUE(Connect(later, (*listener)->port()));
  EXPECT_TRUE(held.AwaitCount(1)) << "no connection accepted after the descriptors came back";
  EXPECT_FALSE(ClosedByPeer(later, absl::ZeroDuration()));
  close(later);
  (*listener)->Stop();
}

TEST(ConnectionListener, RefusesBeyondMaxConnectionsAndCountsClosedOnesOut) {
  auto metrics = ServerMetrics::Create({});
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  ConnectionListenerOptions options;
  options.max_connections = 2;
  options.metrics = metrics->get();
  auto listener = ConnectionListener::Bind("127.0.0.1:0", options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_EQ((*listener)->max_connections(), 2u);
  HeldConnections held;
  (*listener)->Start(held.HandOff());

  std::vector<int> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(UnconnectedSocket());
    ASSERT_TRUE(Connect(clients.back(), (*listener)->port()));
  }
  ASSERT_TRUE(held.AwaitCount(2));
  const int beyond = UnconnectedSocket();
  ASSERT_TRUE(Connect(beyond, (*listener)->port()));
  EXPECT_TRUE(ClosedByPeer(beyond, absl::Seconds(10)));
  EXPECT_EQ(Refused(**metrics, "max_connections"), 1);
  close(beyond);
  EXPECT_EQ(held.count(), 2u);

  // The owner (gRPC) closes what it was handed: those stop counting (at the
  // listener's next look, within a second), and new connections are kept
  // again.
  held.Release();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Sample((*metrics)->Scrape(), "deltaserve_connections", {}) != 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));  // Polls the gauge; not a synchronisation.
  }
  ASSERT_EQ(Sample((*metrics)->Scrape(), "deltaserve_connections", {}), 0);
  const int next = UnconnectedSocket();
  ASSERT_TRUE(Connect(next, (*listener)->port()));
  EXPECT_TRUE(held.AwaitCount(1));
  EXPECT_EQ(Refused(**metrics, "max_connections"), 1);
  close(next);
  for (const int fd : clients) close(fd);
}

TEST(ConnectionListener, ASecondListenerOnTheSamePortIsRefused) {
  auto first = ConnectionListener::Bind("127.0.0.1:0", {});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ConnectionListener::Bind("127.0.0.1:" + std::to_string((*first)->port()), {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("address already in use"), std::string::npos)
      << second.status();
}

TEST(ConnectionListener, RefusesAnAddressThatIsNotHostPort) {
  for (const char* address : {"127.0.0.1", "::1:0", "127.0.0.1:http", "127.0.0.1:70000"}) {
    auto listener = ConnectionListener::Bind(address, {});
    ASSERT_FALSE(listener.ok()) << address;
    EXPECT_EQ(listener.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_NE(listener.status().message().find("expected host:port"), std::string::npos);
  }
}

TEST(ConnectionListener, ListensOnIpv6Loopback) {
  auto listener = ConnectionListener::Bind("[::1]:0", {});
  ASSERT_TRUE(listener.ok()) << listener.status();
  HeldConnections held;
  (*listener)->Start(held.HandOff());
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_port = htons(static_cast<uint16_t>((*listener)->port()));
  address.sin6_addr = in6addr_loopback;
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  EXPECT_TRUE(held.AwaitCount(1));
  close(fd);
}

}  // namespace
}  // namespace deltaserve::server
