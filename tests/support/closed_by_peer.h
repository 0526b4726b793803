// ClosedByPeer: whether the other end of a connected socket closed it, for
// tests of what the server accepts and refuses.
#ifndef DELTASERVE_TESTS_SUPPORT_CLOSED_BY_PEER_H_
#define DELTASERVE_TESTS_SUPPORT_CLOSED_BY_PEER_H_

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace deltaserve::testing {

// True if the peer closed `fd` (EOF or reset) within `wait` (zero: already
// closed). What the peer sent first (a server's HTTP/2 SETTINGS) is read and
// dropped on the way.
inline bool ClosedByPeer(int fd, absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  char buffer[4096];
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return true;  // Reset.
    if (n > 0) continue;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
  }
}

}  // namespace deltaserve::testing

#endif  // DELTASERVE_TESTS_SUPPORT_CLOSED_BY_PEER_H_
