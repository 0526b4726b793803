// The one parser for the addresses deltaserve listens on and connects to,
// and the one loopback rule (who can reach an address).
//
// Accepted forms (each caller says which it takes, see AddressForms):
//   host:port          host: an IPv4 literal ("127.0.0.1") or a name
//                      ("localhost", "trainer-0.svc"; letters, digits, '-',
//                      '.', '_'), resolved by whoever binds or connects
//   [v6]:port          an IPv6 literal in brackets ("[::1]:50051",
//                      "[fe80::1%eth0]:1"); without brackets it is refused
//   :port              no host: every interface (AddressForms::any_host)
//   unix:PATH          a unix-domain socket (AddressForms::unix_socket)
//   unix-abstract:NAME a Linux abstract socket (AddressForms::unix_socket)
// port: decimal digits only, 0..65535; 0 lets the OS pick.
#ifndef DELTASERVE_BASE_ADDRESS_H_
#define DELTASERVE_BASE_ADDRESS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace deltaserve::base {

struct Address {
  enum class Kind { kTcp, kUnix, kUnixAbstract };
  Kind kind = Kind::kTcp;
  // kTcp: the host without brackets ("127.0.0.1", "::1", "localhost"); empty
  // for ":port".
  std::string host;
  // kTcp: the port (0: the OS picks).
  uint16_t port = 0;
  // kUnix: the path; kUnixAbstract: the name. Never empty.
  std::string path;

  bool is_unix() const { return kind != Kind::kTcp; }
  // kTcp on every interface: no host, "0.0.0.0" or "::".
  bool is_wildcard() const;
};

// The forms a caller accepts besides host:port and [v6]:port.
struct AddressForms {
  bool any_host = false;     // ":port"
  bool unix_socket = false;  // "unix:PATH", "unix-abstract:NAME"
};
// What DeltaServer's --listen takes.
inline constexpr AddressForms kListenForms{/*any_host=*/true, /*unix_socket=*/true};

// `text` parsed. INVALID_ARGUMENT otherwise, one line:
//   "\"9464\": expected host:port or [IPv6]:port (port 0-65535, 0 lets the OS
//   pick): no ':' before a port"
// (the forms listed are those `forms` accepts; callers prefix what the
// address is for, e.g. "metrics listen address ").
absl::StatusOr<Address> ParseAddress(absl::string_view text, AddressForms forms = {});

// `address` written back in the accepted syntax: "host:port", "[v6]:port",
// ":port", "unix:PATH", "unix-abstract:NAME".
std::string FormatAddress(const Address& address);

// True if only processes on this machine can reach `address`: unix sockets,
// and TCP whose host is "localhost" (any case), in 127.0.0.0/8 or ::1.
bool IsLoopback(const Address& address);

// IsLoopback of `text` parsed with kListenForms; false if it does not parse.
bool IsLoopbackAddress(absl::string_view text);

}  // namespace deltaserve::base

#endif  // DELTASERVE_BASE_ADDRESS_H_
