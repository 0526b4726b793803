#include "deltaserve/base/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace deltaserve::base {
namespace {

constexpr absl::string_view kUnixPrefix = "unix:";
constexpr absl::string_view kUnixAbstractPrefix = "unix-abstract:";
// The longest DNS name (RFC 1035).
constexpr size_t kMaxHostLength = 253;

absl::Status Invalid(absl::string_view text, AddressForms forms, absl::string_view why) {
  const absl::string_view expected =
      forms.unix_socket
          ? (forms.any_host ? "host:port, [IPv6]:port, :port or "
                              "unix:PATH"
                            : "host:port, [IPv6]:port or unix:PATH")
          : (forms.any_host ? "host:port, [IPv6]:port or :port" : "host:port or [IPv6]:port");
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected ", expected,
                                                 " (port 0-65535, 0 lets the OS pick): ", why));
}

// An IPv6 literal, optionally with a %zone.
bool IsIpv6(absl::string_view host) {
  const std::string address(host.substr(0, host.find('%')));
  in6_addr v6{};
  return inet_pton(AF_INET6, address.c_str(), &v6) == 1;
}

bool IsHostName(absl::string_view host) {
  if (host.empty() || host.size() > kMaxHostLength) return false;
  for (const char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

// The port: 1 to 5 decimal digits, at most 65535.
bool ParsePort(absl::string_view digits, uint16_t* port) {
  if (digits.empty() || digits.size() > 5) return false;
  uint32_t value = 0;
  for (const char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

absl::StatusOr<Address> ParseUnix(absl::string_view text, AddressForms forms) {
  Address address;
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, kUnixAbstractPrefix)) {
    address.kind = Address::Kind::kUnixAbstract;
  } else {
    absl::ConsumePrefix(&rest, kUnixPrefix);
    address.kind = Address::Kind::kUnix;
  }
  if (!forms.unix_socket) return Invalid(text, forms, "a unix socket is not accepted here");
  if (rest.empty()) return Invalid(text, forms, "no path after the unix scheme");
  address.path = std::string(rest);
  return address;
}

}  // namespace

bool Address::is_wildcard() const {
  return kind == Kind::kTcp && (host.empty() || host == "0.0.0.0" || host == "::");
}

absl::StatusOr<Address> ParseAddress(absl::string_view text, AddressForms forms) {
  if (absl::StartsWith(text, kUnixPrefix) || absl::StartsWith(text, kUnixAbstractPrefix)) {
    return ParseUnix(text, forms);
  }
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) return Invalid(text, forms, "no ':' before a port");
  Address address;
  if (!ParsePort(text.substr(colon + 1), &address.port)) {
    return Invalid(text, forms,
                   absl::StrCat("port \"", text.substr(colon + 1), "\" is not a number 0-65535"));
  }
  absl::string_view host = text.substr(0, colon);
  if (host.empty()) {
    if (!forms.any_host) return Invalid(text, forms, "no host");
    return address;
  }
  if (absl::ConsumePrefix(&host, "[")) {
    if (!absl::ConsumeSuffix(&host, "]") || !IsIpv6(host)) {
      return Invalid(text, forms, "brackets must hold an IPv6 address");
    }
  } else if (absl::StrContains(host, ':')) {
    return Invalid(text, forms, "an IPv6 address needs brackets");
  } else if (!IsHostName(host)) {
    return Invalid(text, forms, "the host is neither an IP address nor a host name");
  }
  address.host = std::string(host);
  return address;
}

std::string FormatAddress(const Address& address) {
  switch (address.kind) {
    case Address::Kind::kUnix:
      return absl::StrCat(kUnixPrefix, address.path);
    case Address::Kind::kUnixAbstract:
      return absl::StrCat(kUnixAbstractPrefix, address.path);
    case Address::Kind::kTcp:
      break;
  }
  if (absl::StrContains(address.host, ':')) {
    return absl::StrCat("[", address.host, "]:", address.port);
  }
  return absl::StrCat(address.host, ":", address.port);
}

bool IsLoopback(const Address& address) {
  if (address.is_unix()) return true;
  if (absl::EqualsIgnoreCase(address.host, "localhost")) return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, address.host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

bool IsLoopbackAddress(absl::string_view text) {
  const absl::StatusOr<Address> address = ParseAddress(text, kListenForms);
  return address.ok() && IsLoopback(*address);
}

}  // namespace deltaserve::base
