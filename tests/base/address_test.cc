#include "deltaserve/base/address.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::base {
namespace {

using ::testing::HasSubstr;

constexpr AddressForms kHostPortOnly{};
constexpr AddressForms kTcpListen{/*any_host=*/true, /*unix_socket=*/false};

struct Accepted {
  const char* text;
  AddressForms forms;
  Address::Kind kind;
  const char* host;  // kTcp: the host; unix: the path.
  uint16_t port;
};

TEST(ParseAddress, AcceptsEveryDocumentedForm) {
  using Kind = Address::Kind;
  const Accepted cases[] = {
      {"127.0.0.1:50051", kHostPortOnly, Kind::kTcp, "127.0.0.1", 50051},
      {"0.0.0.0:0", kHostPortOnly, Kind::kTcp, "0.0.0.0", 0},
      {"10.1.2.3:65535", kHostPortOnly, Kind::kTcp, "10.1.2.3", 65535},
      {"localhost:9464", kHostPortOnly, Kind::kTcp, "localhost", 9464},
      {"trainer-0.trainer.svc_1:1", kHostPortOnly, Kind::kTcp, "trainer-0.trainer.svc_1", 1},
      {"[::1]:50051", kHostPortOnly, Kind::kTcp, "::1", 50051},
      {"[::]:0", kHostPortOnly, Kind::kTcp, "::", 0},
      {"[2001:db8::7]:80", kHostPortOnly, Kind::kTcp, "2001:db8::7", 80},
      {"[fe80::1%eth0]:1", kHostPortOnly, Kind::kTcp, "fe80::1%eth0", 1},
      {"[::ffff:127.0.0.1]:5", kHostPortOnly, Kind::kTcp, "::ffff:127.0.0.1", 5},
      {":50051", kTcpListen, Kind::kTcp, "", 50051},
      {":0", kListenForms, Kind::kTcp, "", 0},
      {"unix:/tmp/ds.sock", kListenForms, Kind::kUnix, "/tmp/ds.sock", 0},
      {"unix:relative.sock", kListenForms, Kind::kUnix, "relative.sock", 0},
      {"unix-abstract:ds", kListenForms, Kind::kUnixAbstract, "ds", 0},
  };
  for (const Accepted& c : cases) {
    const absl::StatusOr<Address> parsed = ParseAddress(c.text, c.forms);
    ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status();
    EXPECT_EQ(parsed->kind, c.kind) << c.text;
    EXPECT_EQ(parsed->is_unix() ? parsed->path : parsed->host, c.host) << c.text;
    EXPECT_EQ(parsed->port, c.port) << c.text;
    EXPECT_EQ(FormatAddress(*parsed), c.text) << c.text;
  }
}

TEST(ParseAddress, LeadingZerosInThePortAreDecimal) {
  const absl::StatusOr<Address> parsed = ParseAddress("127.0.0.1:00080");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->port, 80);
  EXPECT_EQ(FormatAddress(*parsed), "127.0.0.1:80");
}

struct Rejected {
  const char* text;
  AddressForms forms;
  const char* why;  // A part of the message that says what is wrong.
};

TEST(ParseAddress, RejectsEveryOtherFormWithOneLineThatSaysWhatWasExpected) {
  const Rejected cases[] = {
      {"", kListenForms, "no ':' before a port"},
      {"9464", kListenForms, "no ':' before a port"},
      {"garbage", kListenForms, "no ':' before a port"},
      {"127.0.0.1", kListenForms, "no ':' before a port"},
      {"127.0.0.1:", kListenForms, "port \"\" is not a number"},
      {"127.0.0.1:http", kListenForms, "port \"http\""},
      {"localhost:http", kListenForms, "port \"http\""},
      {"127.0.0.1:70000", kListenForms, "port \"70000\""},
      {"127.0.0.1:65536", kListenForms, "port \"65536\""},
      {"127.0.0.1:-1", kListenForms, "port \"-1\""},
      {"127.0.0.1:+80", kListenForms, "port \"+80\""},
      {"127.0.0.1: 80", kListenForms, "port \" 80\""},
      {"127.0.0.1:123456", kListenForms, "port \"123456\""},
      {"::1:0", kListenForms, "an IPv6 address needs brackets"},
      {"::1", kListenForms, "an IPv6 address needs brackets"},
      {"[::1:0", kListenForms, "brackets must hold an IPv6 address"},
      {"[]:0", kListenForms, "brackets must hold an IPv6 address"},
      {"[127.0.0.1]:0", kListenForms, "brackets must hold an IPv6 address"},
      {"[localhost]:0", kListenForms, "brackets must hold an IPv6 address"},
      {"my host:1", kListenForms, "neither an IP address nor a host name"},
      {"host/x:1", kListenForms, "neither an IP address nor a host name"},
      {":9464", kHostPortOnly, "no host"},
      {"unix:/tmp/ds.sock", kTcpListen, "a unix socket is not accepted here"},
      {"unix-abstract:ds", kHostPortOnly, "a unix socket is not accepted here"},
      {"unix:", kListenForms, "no path after the unix scheme"},
      {"unix-abstract:", kListenForms, "no path after the unix scheme"},
  };
  for (const Rejected& c : cases) {
    const absl::StatusOr<Address> parsed = ParseAddress(c.text, c.forms);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    const std::string message(parsed.status().message());
    EXPECT_THAT(message, HasSubstr(std::string("\"") + c.text + "\": expected host:port"))
        << c.text;
    EXPECT_THAT(message, HasSubstr(c.why)) << c.text;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.text;
  }
}

TEST(ParseAddress, TheMessageListsOnlyTheFormsTheCallerAccepts) {
  EXPECT_THAT(std::string(ParseAddress("x", kHostPortOnly).status().message()),
              HasSubstr("expected host:port or [IPv6]:port ("));
  EXPECT_THAT(std::string(ParseAddress("x", kTcpListen).status().message()),
              HasSubstr("expected host:port, [IPv6]:port or :port ("));
  EXPECT_THAT(std::string(ParseAddress("x", kListenForms).status().message()),
              HasSubstr("expected host:port, [IPv6]:port, :port or unix:PATH ("));
}

TEST(Address, WildcardIsNoHostOrTheAnyAddress) {
  for (const char* wildcard : {":0", "0.0.0.0:1", "[::]:2"}) {
    EXPECT_TRUE(ParseAddress(wildcard, kListenForms)->is_wildcard()) << wildcard;
  }
  for (const char* specific : {"127.0.0.1:0", "[::1]:0", "localhost:0", "unix:/x"}) {
    EXPECT_FALSE(ParseAddress(specific, kListenForms)->is_wildcard()) << specific;
  }
}

TEST(IsLoopbackAddress, OnlyThisMachineCanReachLoopback) {
  for (const char* loopback :
       {"127.0.0.1:50051", "127.0.0.0:1", "127.8.9.1:1", "127.255.255.255:0", "[::1]:50051",
        "[0:0:0:0:0:0:0:1]:1", "localhost:0", "LOCALHOST:1", "LocalHost:2", "unix:/tmp/ds.sock",
        "unix:relative", "unix-abstract:ds"}) {
    EXPECT_TRUE(IsLoopbackAddress(loopback)) << loopback;
  }
  for (const char* open :
       {"0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.1:1", "126.255.255.255:1", "128.0.0.1:1",
        "trainer:50051", "localhost.example.com:1", "[::2]:1", "[::ffff:127.0.0.1]:1",
        // Not addresses at all: never loopback.
        "garbage", "localhost", "localhost:http", "::1:0", "127.0.0.1:70000", "unix:"}) {
    EXPECT_FALSE(IsLoopbackAddress(open)) << open;
  }
}

}  // namespace
}  // namespace deltaserve::base
