// Runs the real `deltaserve` binary: it refuses bad configs with a one-line
// reason and a non-zero exit code, prints "listening on ADDR" when serving,
// and exits 0 on SIGTERM / SIGINT; with --metrics_listen it logs the metrics
// address and serves /metrics there. It will not listen openly without
// --auth_file, and SIGHUP reloads the auth file.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/base/token.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/dense_rows.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/support/child_process.h"
#include "deltaserve/tests/support/closed_by_peer.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

using deltaserve::testing::Child;
using deltaserve::testing::ClosedByPeer;
using deltaserve::testing::ReadAll;
using deltaserve::testing::ReadLine;
using deltaserve::testing::Wait;

// Starts the server binary with `args`, its stdout and stderr on pipes.
Child Spawn(const std::vector<std::string>& args) {
  return deltaserve::testing::Spawn(DELTASERVE_SERVER_PATH, args);
}

std::string WriteConfig(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/binary_test_" + name + ".textproto";
  std::ofstream(path) << text;
  return path;
}

// A config file: one 1 → 1 identity model "m" and `server_fields`
// (ServerConfig fields in text format, e.g. "max_connections: 3").
std::string WriteTinyConfig(const std::string& name, const std::string& server_fields) {
  return WriteConfig(
      name,
      "models { name: \"m\" input_dim: 1 layers { units: 1 activation: ACTIVATION_IDENTITY } } " +
          server_fields);
}

struct Refusal {
  int exit_code;
  std::string stderr_text;
  std::string stdout_text;
};

Refusal RunToExit(const std::vector<std::string>& args) {
  Child child = Spawn(args);
  Refusal result;
  result.stderr_text = ReadAll(child.err);
  result.stdout_text = ReadAll(child.out);
  result.exit_code = Wait(child);
  return result;
}

void ExpectOneLineRefusal(const Refusal& refusal, const std::string& reason) {
  EXPECT_NE(refusal.exit_code, 0);
  EXPECT_EQ(refusal.stdout_text, "");
  EXPECT_EQ(std::count(refusal.stderr_text.begin(), refusal.stderr_text.end(), '\n'), 1)
      << refusal.stderr_text;
  EXPECT_THAT(refusal.stderr_text, HasSubstr(reason));
}

TEST(ServerBinary, RefusesAMalformedConfig) {
  const std::string path = WriteConfig("malformed", "models { name: \"m\" input_dim: }\n");
  Refusal refusal = RunToExit({"--config=" + path, "--listen=127.0.0.1:0"});
  ExpectOneLineRefusal(refusal, "line 1");
  EXPECT_EQ(refusal.exit_code, 2);
}

TEST(ServerBinary, RefusesAnInvalidModel) {
  const std::string path = WriteConfig(
      "invalid",
      "models { name: \"m\" input_dim: 4 layers { units: 0 activation: ACTIVATION_TANH } }");
  Refusal refusal = RunToExit({"--config=" + path, "--listen=127.0.0.1:0"});
  ExpectOneLineRefusal(refusal, "model \"m\": layers[0].units: expected > 0, got 0");
  EXPECT_EQ(refusal.exit_code, 2);
}

// A model field the server refuses, and the one line that names it.
struct RefusedModelField {
  const char* name;
  const char* model_fields;  // ModelSpec fields in text format.
  const char* reason;
};

class ServerBinaryRefusesModelField : public ::testing::TestWithParam<RefusedModelField> {};

TEST_P(ServerBinaryRefusesModelField, WithOneLineNamingTheField) {
  const RefusedModelField& c = GetParam();
  const std::string path = WriteConfig(
      c.name, absl::StrCat("models { name: \"m\" input_dim: 1 layers { units: 1 activation: "
                           "ACTIVATION_IDENTITY } ",
                           c.model_fields, " }"));
  Refusal refusal = RunToExit({"--config=" + path, "--listen=127.0.0.1:0"});
  ExpectOneLineRefusal(refusal, absl::StrCat("model \"m\": ", c.reason));
  EXPECT_EQ(refusal.exit_code, 2);
}

// The invalid schedules of docs/model.md and input normalisations.
INSTANTIATE_TEST_SUITE_P(
    Schedules, ServerBinaryRefusesModelField,
    ::testing::Values(
        RefusedModelField{"linear_without_total_steps", "optimizer { schedule { kind: LINEAR } }",
                          "optimizer.schedule.total_steps: expected > 0 for LINEAR, got 0"},
        RefusedModelField{"cosine_without_total_steps",
                          "optimizer { schedule { kind: COSINE warmup_steps: 5 } }",
                          "optimizer.schedule.total_steps: expected > 0 for COSINE, got 0"},
        RefusedModelField{"step_without_step_size",
                          "optimizer { schedule { kind: STEP gamma: 0.5 } }",
                          "optimizer.schedule.step_size: expected > 0 for STEP, got 0"},
        RefusedModelField{"step_with_zero_gamma",
                          "optimizer { schedule { kind: STEP step_size: 10 } }",
                          "optimizer.schedule.gamma: expected a finite value > 0 for STEP, got 0"},
        RefusedModelField{
            "exponential_with_negative_gamma",
            "optimizer { schedule { kind: EXPONENTIAL gamma: -0.5 } }",
            "optimizer.schedule.gamma: expected a finite value > 0 for EXPONENTIAL, got -0.5"},
        RefusedModelField{"negative_final_learning_rate",
                          "optimizer { schedule { kind: LINEAR total_steps: 10 "
                          "final_learning_rate: -0.001 } }",
                          "optimizer.schedule.final_learning_rate: expected a finite value >= 0, "
                          "got -0.001"},
        RefusedModelField{"normalization_negative_clip",
                          "input_normalization { kind: RUNNING_MEAN_STD clip: -1 }",
                          "input_normalization.clip: expected a finite value > 0 (0 means 10), "
                          "got -1"},
        RefusedModelField{"normalization_infinite_epsilon",
                          "input_normalization { kind: RUNNING_MEAN_STD epsilon: inf }",
                          "input_normalization.epsilon: expected a finite value > 0 (0 means "
                          "1e-8), got inf"}),
    [](const ::testing::TestParamInfo<RefusedModelField>& info) { return info.param.name; });

TEST(ServerBinary, RefusesAMissingConfigFile) {
  ExpectOneLineRefusal(RunToExit({"--config=/nonexistent/x.textproto"}),
                       "/nonexistent/x.textproto");
}

// --help promises exit code 2 for a bad flag: Abseil's parser alone would
// exit 1 (and print more than one line).
TEST(ServerBinary, RefusesAnUnknownFlagWithExitCodeTwo) {
  Refusal refusal = RunToExit({"--listen=127.0.0.1:0", "--no_such_flag=1"});
  ExpectOneLineRefusal(refusal, "deltaserve: unknown flag --no_such_flag");
  EXPECT_EQ(refusal.exit_code, 2);
}

TEST(ServerBinary, RefusesAFlagValueThatDoesNotParseWithExitCodeTwo) {
  Refusal refusal = RunToExit({"--allow_unauthenticated=maybe"});
  ExpectOneLineRefusal(refusal, "bad value \"maybe\" for flag --allow_unauthenticated");
  EXPECT_EQ(refusal.exit_code, 2);
}

TEST(ServerBinary, RefusesAFlagWithoutItsValueWithExitCodeTwo) {
  Refusal refusal = RunToExit({"--listen"});
  ExpectOneLineRefusal(refusal, "flag --listen needs a value");
  EXPECT_EQ(refusal.exit_code, 2);
}

TEST(ServerBinary, RefusesAnUnknownLogLevel) {
  ExpectOneLineRefusal(RunToExit({"--log_level=loud"}), "--log_level");
}

TEST(ServerBinary, RefusesAMalformedMetricsAddress) {
  Refusal refusal = RunToExit({"--listen=127.0.0.1:0", "--metrics_listen=9464"});
  EXPECT_EQ(refusal.exit_code, 2);
  EXPECT_EQ(refusal.stdout_text, "");
  EXPECT_THAT(refusal.stderr_text, HasSubstr("\"9464\": expected host:port"));
}

// A TCP socket connected to 127.0.0.1:port, or -1 if nothing accepts.
int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  close(fd);
  return -1;
}

// True if something accepts a TCP connection on 127.0.0.1:port.
bool Accepts(int port) {
  const int fd = ConnectLoopback(port);
  if (fd >= 0) close(fd);
  return fd >= 0;
}

// Reads the child's "listening on 127.0.0.1:PORT" line: the port, or 0 after
// a test failure.
int ReadListeningPort(const Child& child) {
  const std::string line = ReadLine(child.out);
  EXPECT_THAT(line, MatchesRegex("listening on 127\\.0\\.0\\.1:[0-9]+"));
  int port = 0;
  std::vector<std::string> parts = absl::StrSplit(line, ':');
  if (!absl::SimpleAtoi(parts.back(), &port)) ADD_FAILURE() << "no port in \"" << line << "\"";
  return port;
}

// Starts the binary, expects "listening on 127.0.0.1:<port>", sends `signal`
// and expects a clean exit 0.
void ServeThenStop(const std::vector<std::string>& args, int signal) {
  Child child = Spawn(args);
  const int port = ReadListeningPort(child);
  ASSERT_GT(port, 0);
  EXPECT_TRUE(Accepts(port));
  ASSERT_EQ(kill(child.pid, signal), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(ReadAll(child.out), "");  // Exactly one stdout line.
  EXPECT_EQ(Wait(child), 0) << log;
  EXPECT_THAT(log, HasSubstr("shut down"));
}

TEST(ServerBinary, HelpPrintsUsageAndItsFlagsAndExitsZero) {
  Refusal help = RunToExit({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help.stderr_text;
  EXPECT_EQ(help.stderr_text, "");
  EXPECT_THAT(help.stdout_text, HasSubstr("usage: deltaserve"));
  for (const char* flag : {"--config (", "--listen (", "--metrics_listen (", "--log_level ("}) {
    EXPECT_THAT(help.stdout_text, HasSubstr(flag));
  }
  EXPECT_THAT(help.stdout_text, ::testing::Not(HasSubstr("--flagfile")));  // Abseil's own.
}

TEST(ServerBinary, VersionPrintsTheProjectVersion) {
  Refusal version = RunToExit({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.stdout_text, std::string("deltaserve ") + DELTASERVE_VERSION + "\n");
}

TEST(ServerBinary, RefusesAPortAnotherServerHolds) {
  Child first = Spawn({"--listen=127.0.0.1:0"});
  const std::string line = ReadLine(first.out);
  ASSERT_THAT(line, MatchesRegex("listening on 127\\.0\\.0\\.1:[0-9]+"));
  const std::string address = line.substr(std::string("listening on ").size());
  // gRPC sets SO_REUSEPORT by default, which would let this one bind too and
  // take half of the clients.
  Refusal second = RunToExit({"--listen=" + address});
  ExpectOneLineRefusal(second, "address already in use");
  EXPECT_EQ(second.exit_code, 1);
  ASSERT_EQ(kill(first.pid, SIGTERM), 0);
  const std::string log = ReadAll(first.err);
  EXPECT_EQ(Wait(first), 0) << log;
}

// A TCP connection to 127.0.0.1:port that has sent the HTTP/2 client preface
// and an empty SETTINGS frame, and then nothing: an idle client. -1 on error.
int ConnectHttp2(int port) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return -1;
  const std::string preface = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                              std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  if (write(fd, preface.data(), preface.size()) != static_cast<ssize_t>(preface.size())) return -1;
  return fd;
}

// A client connection with no call in flight (here: the HTTP/2 preface and
// an empty SETTINGS frame, then nothing) used to hold SIGTERM for the whole
// 5 s grace period.
TEST(ServerBinary, AnIdleConnectionDoesNotHoldShutdown) {
  Child child = Spawn({"--listen=127.0.0.1:0"});
  const int port = ReadListeningPort(child);
  ASSERT_GT(port, 0);
  const int fd = ConnectHttp2(port);
  ASSERT_GE(fd, 0);

  const absl::Time start = absl::Now();
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "shutdown waited for the idle connection\n"
                                                   << log;
  close(fd);
}

// Started with a soft limit below the hard one (as many shells and services
// do), the server raises its own to the hard limit.
TEST(ServerBinary, RaisesItsOpenFileLimitToTheHardLimit) {
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  ASSERT_GT(original.rlim_max, 256u) << "the hard limit leaves no room to test";
  rlimit lowered = original;
  lowered.rlim_cur = 256;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);  // The child inherits it.
  Child child = Spawn({"--listen=127.0.0.1:0"});
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  ASSERT_THAT(ReadLine(child.out), MatchesRegex("listening on 127\\.0\\.0\\.1:[0-9]+"));
  std::ifstream limits("/proc/" + std::to_string(child.pid) + "/limits");
  std::string line, soft;
  while (std::getline(limits, line)) {
    if (absl::StartsWith(line, "Max open files")) {
      std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      soft = fields.at(3);
    }
  }
  EXPECT_EQ(soft,
            original.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(original.rlim_max));
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
  EXPECT_THAT(log, HasSubstr("open files limit"));
}

// The start-up log names the Forward kernel copy this CPU runs
// (model/dense_rows.h): how an operator tells a container on an AVX-512 host
// from one that fell back to the build's own kernel.
TEST(ServerBinary, LogsTheForwardKernelItRuns) {
  Child child = Spawn({"--listen=127.0.0.1:0"});
  ASSERT_THAT(ReadLine(child.out), MatchesRegex("listening on 127\\.0\\.0\\.1:[0-9]+"));
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
  EXPECT_THAT(log,
              HasSubstr(absl::StrCat("; Forward kernel ",
                                     deltaserve::model::DenseRowsKernels().front().name, "\n")));
}

// A connection that makes no call is closed after max_connection_idle_seconds.
TEST(ServerBinary, ClosesIdleConnections) {
  const std::string path = WriteTinyConfig("idle", "max_connection_idle_seconds: 1");
  Child child = Spawn({"--config=" + path, "--listen=127.0.0.1:0"});
  const int port = ReadListeningPort(child);
  ASSERT_GT(port, 0);
  const int fd = ConnectHttp2(port);
  timeval timeout{/*tv_sec=*/20, /*tv_usec=*/0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) {  // SETTINGS, GOAWAY, then EOF.
  }
  EXPECT_EQ(n, 0) << "the idle connection was not closed within 20 s (errno " << errno << ")";
  close(fd);
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
}

// One HTTP/2 frame read from a raw connection (RFC 9113 §4.1).
struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  std::string payload;
};
constexpr uint8_t kPingFrame = 0x6;
constexpr uint8_t kAckFlag = 0x1;

// The next frame, or nullopt at EOF, on an error or after the socket's
// receive timeout.
std::optional<Frame> ReadFrame(int fd) {
  const auto read_exactly = [fd](char* out, size_t size) {
    for (size_t got = 0; got < size;) {
      const ssize_t n = read(fd, out + got, size - got);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  };
  unsigned char header[9];
  if (!read_exactly(reinterpret_cast<char*>(header), sizeof header)) return std::nullopt;
  Frame frame;
  frame.type = header[3];
  frame.flags = header[4];
  frame.payload.resize((size_t{header[0]} << 16) | (size_t{header[1]} << 8) | header[2]);
  if (!read_exactly(frame.payload.data(), frame.payload.size())) return std::nullopt;
  return frame;
}

// A server that pings every connection after 1 s and closes it 1 s after an
// unanswered ping (no idle close for an hour), and one raw HTTP/2 connection
// to it with a 20 s receive timeout. The destructor stops the server, also
// after an ASSERT has left the test.
class KeepaliveServer {
 public:
  explicit KeepaliveServer(const std::string& name) {
    const std::string path = WriteTinyConfig(
        name,
        "keepalive_seconds: 1 keepalive_timeout_seconds: 1 max_connection_idle_seconds: 3600");
    child_ = Spawn({"--config=" + path, "--listen=127.0.0.1:0"});
    if (const int port = ReadListeningPort(child_); port > 0) fd_ = ConnectHttp2(port);
    timeval timeout{/*tv_sec=*/20, /*tv_usec=*/0};
    if (fd_ >= 0) setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~KeepaliveServer() {
    if (fd_ >= 0) close(fd_);
    EXPECT_EQ(kill(child_.pid, SIGTERM), 0);
    const std::string log = ReadAll(child_.err);
    EXPECT_EQ(Wait(child_), 0) << log;
  }
  KeepaliveServer(const KeepaliveServer&) = delete;
  KeepaliveServer& operator=(const KeepaliveServer&) = delete;

  int fd() const { return fd_; }

 private:
  Child child_;
  int fd_ = -1;
};

// A client whose host vanished does not answer pings: its connection (and
// every watch or Session on it) is closed after keepalive_seconds +
// keepalive_timeout_seconds, long before max_connection_idle_seconds.
TEST(ServerBinary, ClosesAConnectionThatDoesNotAnswerItsKeepalivePing) {
  KeepaliveServer server("keepalive_silent");
  ASSERT_GE(server.fd(), 0);
  int pings = 0;
  std::optional<Frame> frame;
  while ((frame = ReadFrame(server.fd())).has_value()) {
    if (frame->type == kPingFrame && !(frame->flags & kAckFlag)) ++pings;
  }
  char byte;
  const ssize_t n = read(server.fd(), &byte, 1);
  EXPECT_GE(pings, 1) << "the server sent no keepalive PING";
  EXPECT_EQ(n, 0) << "the connection that answered no ping was not closed within 20 s (errno "
                  << errno << ")";
}

// The same settings leave a client that answers its pings connected: three
// pings answered, and the connection still open.
TEST(ServerBinary, KeepsAConnectionThatAnswersItsKeepalivePings) {
  KeepaliveServer server("keepalive_answered");
  ASSERT_GE(server.fd(), 0);
  int answered = 0;
  std::optional<Frame> frame;
  while (answered < 3 && (frame = ReadFrame(server.fd())).has_value()) {
    if (frame->type != kPingFrame || (frame->flags & kAckFlag) || frame->payload.size() != 8) {
      continue;
    }
    std::string ack("\x00\x00\x08\x06\x01\x00\x00\x00\x00", 9);
    ack += frame->payload;
    ASSERT_EQ(write(server.fd(), ack.data(), ack.size()), static_cast<ssize_t>(ack.size()));
    ++answered;
  }
  EXPECT_EQ(answered, 3) << "the connection ended (or no ping came within 20 s) after " << answered
                         << " answered pings";
}

TEST(ServerBinary, PrintsTheBoundAddressAndStopsCleanlyOnSigterm) {
  const std::string path = WriteConfig("good", R"pb(
    models {
      name: "cartpole"
      input_dim: 4
      layers { units: 16 activation: ACTIVATION_TANH }
      layers { units: 2 activation: ACTIVATION_IDENTITY }
    }
  )pb");
  ServeThenStop({"--config=" + path, "--listen=127.0.0.1:0"}, SIGTERM);
}

TEST(ServerBinary, ServesAValidSchedule) {
  const std::string path = WriteConfig(
      "valid_schedule",
      "models { name: \"m\" input_dim: 1 layers { units: 1 activation: ACTIVATION_IDENTITY } "
      "optimizer { schedule { kind: COSINE warmup_steps: 10 total_steps: 100 } } }");
  ServeThenStop({"--config=" + path, "--listen=127.0.0.1:0"}, SIGTERM);
}

TEST(ServerBinary, ServesTheDefaultModelWithoutConfigAndStopsOnSigint) {
  ServeThenStop({"--listen=127.0.0.1:0"}, SIGINT);
}

// Reads the child's stderr up to its "metrics on 127.0.0.1:PORT" log line
// (written before the server serves): the port, or 0 after a test failure.
int ReadMetricsPort(const Child& child) {
  std::string line;
  do {
    line = ReadLine(child.err);
  } while (!line.empty() && !absl::StrContains(line, "metrics on "));
  EXPECT_THAT(line, MatchesRegex(".* I deltaserve: metrics on 127\\.0\\.0\\.1:[0-9]+"));
  int port = 0;
  const std::vector<std::string> parts = absl::StrSplit(line, ':');
  if (!absl::SimpleAtoi(parts.back(), &port)) ADD_FAILURE() << "no port in \"" << line << "\"";
  return port;
}

TEST(ServerBinary, LogsTheMetricsAddressAndServesMetricsThere) {
  Child child = Spawn({"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"});
  EXPECT_THAT(ReadLine(child.out), MatchesRegex("listening on 127\\.0\\.0\\.1:[0-9]+"));
  // The log line is written before the stdout line, so it is in the pipe.
  if (const int port = ReadMetricsPort(child); port > 0) {
    // No ASSERT before the child is stopped.
    auto response = deltaserve::server::testing::HttpGet(port, "/metrics");
    EXPECT_TRUE(response.has_value()) << "GET /metrics on port " << port;
    if (response.has_value()) {
      EXPECT_THAT(response->first, HasSubstr("200"));
      EXPECT_THAT(response->second, HasSubstr("deltaserve_model_version{model=\""));
    }
  }
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
}

}  // namespace

namespace {

// Reads lines from `fd` until one contains `text` (true) or 30 s pass / EOF.
bool AwaitLineContaining(int fd, const std::string& text) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::string line;
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    char c;
    if (read(fd, &c, 1) != 1) return false;
    if (c != '\n') {
      line.push_back(c);
      continue;
    }
    if (absl::StrContains(line, text)) return true;
    line.clear();
  }
  return false;
}

std::string AuthLine(const std::string& name, const std::string& token) {
  return absl::StrCat("principals { name: \"", name, "\" role: SIMULATOR token_sha256: \"",
                      deltaserve::base::Sha256Hex(token), "\" }\n");
}

absl::StatusCode InfoCode(int port, const std::string& token) {
  deltaserve::client::ClientOptions options;
  options.security.token = token;
  auto client =
      deltaserve::client::TrainerClient::Connect(absl::StrCat("127.0.0.1:", port), options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? (*client)->GetModelInfo().status().code() : absl::StatusCode::kUnknown;
}

TEST(ServerBinary, RefusesToListenOpenlyWithoutAnAuthFile) {
  for (const char* address : {"--listen=0.0.0.0:0", "--listen=[::]:0", "--listen=:0"}) {
    Refusal refusal = RunToExit({address});
    ExpectOneLineRefusal(refusal, "without --auth_file");
    EXPECT_THAT(refusal.stderr_text, HasSubstr("--allow_unauthenticated"));
    EXPECT_EQ(refusal.exit_code, 2) << address;
  }
}

// A relay (--upstream) gates its clients as any server; port 1 on loopback
// has no upstream, and none of these gets that far but the last.
TEST(ServerBinary, ARelayRefusesToListenOpenlyWithoutAnAuthFile) {
  Refusal refusal = RunToExit({"--upstream=127.0.0.1:1", "--listen=0.0.0.0:0"});
  ExpectOneLineRefusal(refusal, "without --auth_file");
  EXPECT_EQ(refusal.exit_code, 2);
}

TEST(ServerBinary, ARelayRefusesAStateDirAndABadBound) {
  Refusal state = RunToExit({"--upstream=127.0.0.1:1", "--listen=127.0.0.1:0",
                             "--state_dir=" + ::testing::TempDir() + "/relay_state"});
  ExpectOneLineRefusal(state, "keeps no state");
  EXPECT_EQ(state.exit_code, 2);
  Refusal bound =
      RunToExit({"--upstream=127.0.0.1:1", "--listen=127.0.0.1:0", "--upstream_max_in_flight=0"});
  ExpectOneLineRefusal(bound, "--upstream_max_in_flight");
  EXPECT_EQ(bound.exit_code, 2);
}

TEST(ServerBinary, ARelayWhoseUpstreamNeverAnswersExitsOne) {
  Refusal refusal =
      RunToExit({"--upstream=127.0.0.1:1", "--listen=127.0.0.1:0", "--upstream_wait_seconds=0"});
  ExpectOneLineRefusal(refusal, "upstream 127.0.0.1:1 did not list its models");
  EXPECT_EQ(refusal.exit_code, 1);
}

TEST(ServerBinary, RefusesAnUnreadableAuthFile) {
  Refusal refusal = RunToExit({"--listen=127.0.0.1:0", "--auth_file=/nonexistent/auth.txt"});
  ExpectOneLineRefusal(refusal, "/nonexistent/auth.txt");
}

TEST(ServerBinary, SighupReloadsTheAuthFile) {
  const std::string old_token = *deltaserve::base::NewToken();
  const std::string new_token = *deltaserve::base::NewToken();
  const std::string auth = WriteConfig("auth", AuthLine("old", old_token));
  Child child = Spawn({"--listen=127.0.0.1:0", "--auth_file=" + auth});
  const int port = ReadListeningPort(child);
  ASSERT_GT(port, 0);
  EXPECT_EQ(InfoCode(port, old_token), absl::StatusCode::kOk);
  EXPECT_EQ(InfoCode(port, new_token), absl::StatusCode::kUnauthenticated);

  std::ofstream(auth, std::ios::trunc) << AuthLine("new", new_token);
  ASSERT_EQ(kill(child.pid, SIGHUP), 0);
  EXPECT_TRUE(AwaitLineContaining(child.err, "auth: reloaded 1 principal(s)"));
  EXPECT_EQ(InfoCode(port, old_token), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(InfoCode(port, new_token), absl::StatusCode::kOk);

  // A broken file on the next SIGHUP is logged and changes nothing.
  std::ofstream(auth, std::ios::trunc) << "principals {";
  ASSERT_EQ(kill(child.pid, SIGHUP), 0);
  EXPECT_TRUE(AwaitLineContaining(child.err, "reload: "));
  EXPECT_EQ(InfoCode(port, new_token), absl::StatusCode::kOk);

  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
}

// ServerConfig.max_connections caps the open connections exactly (gRPC 1.51
// has no cap of its own): the one beyond is accepted and closed at once, and
// once one closes the next is kept again.
TEST(ServerBinary, KeepsAtMostMaxConnectionsOpen) {
  using deltaserve::server::testing::AwaitSample;
  const std::string path = WriteTinyConfig("max_connections", "max_connections: 3");
  Child child = Spawn({"--config=" + path, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"});
  const int metrics = ReadMetricsPort(child);
  const int port = ReadListeningPort(child);
  ASSERT_GT(metrics, 0);
  ASSERT_GT(port, 0);
  std::vector<int> held;
  for (int open = 1; open <= 3; ++open) {
    held.push_back(ConnectHttp2(port));
    EXPECT_EQ(AwaitSample(metrics, "deltaserve_connections", {}, open), open);
  }
  const int beyond = ConnectLoopback(port);
  EXPECT_TRUE(ClosedByPeer(beyond, absl::Seconds(10))) << "the fourth connection was kept";
  close(beyond);
  EXPECT_EQ(AwaitSample(metrics, "deltaserve_connections_refused_total",
                        {{"reason", "max_connections"}}, 1),
            1);
  for (const int fd : held) EXPECT_FALSE(ClosedByPeer(fd, absl::ZeroDuration()));

  close(held.front());
  held.erase(held.begin());
  EXPECT_EQ(AwaitSample(metrics, "deltaserve_connections", {}, 2), 2);
  held.push_back(ConnectHttp2(port));
  EXPECT_EQ(AwaitSample(metrics, "deltaserve_connections", {}, 3), 3);
  EXPECT_FALSE(ClosedByPeer(held.back(), absl::ZeroDuration()));
  for (const int fd : held) close(fd);
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
  EXPECT_THAT(log, HasSubstr("accepting at most 3 connections"));
  EXPECT_THAT(log, HasSubstr("refusing connections (max_connections)"));
}

// A connection that never sends the HTTP/2 preface holds a descriptor only
// until handshake_timeout_seconds.
TEST(ServerBinary, ClosesConnectionsThatNeverHandshake) {
  const std::string path = WriteTinyConfig("handshake", "handshake_timeout_seconds: 1");
  Child child = Spawn({"--config=" + path, "--listen=127.0.0.1:0"});
  const int port = ReadListeningPort(child);
  ASSERT_GT(port, 0);
  const int silent = ConnectLoopback(port);
  EXPECT_TRUE(ClosedByPeer(silent, absl::Seconds(20))) << "still open after 20 s";
  close(silent);
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
}

// gRPC 1.51's own listener never accepted again once accept() had failed
// with EMFILE (grpc/grpc#20418): one flood of idle connections took the
// server off the network for good. Here, with an open-files limit of 256 and
// 600 connections at once, the server refuses what does not fit (closes it
// at once), keeps serving the client it has, and serves new clients once the
// flood is gone.
TEST(ServerBinary, SurvivesAConnectionFloodBeyondItsOpenFilesLimit) {
  constexpr int kLimit = 256;
  constexpr int kFlood = 600;
  rlimit own{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &own), 0);
  ASSERT_GE(own.rlim_max, rlim_t{kFlood + 256}) << "this test's hard limit leaves no room";
  const rlimit original = own;
  own.rlim_cur = own.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &own), 0);
  Child child = deltaserve::testing::Spawn(
      "/usr/bin/prlimit", {absl::StrCat("--nofile=", kLimit, ":", kLimit), DELTASERVE_SERVER_PATH,
                           "--listen=127.0.0.1:0"});
  const int port = ReadListeningPort(child);
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  auto client = deltaserve::client::TrainerClient::Connect(address);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->GetModelInfo().ok());

  std::vector<int> flood;
  for (int i = 0; i < kFlood; ++i) {
    const int fd = ConnectLoopback(port);
    if (fd >= 0) flood.push_back(fd);
  }
  EXPECT_EQ(flood.size(), static_cast<size_t>(kFlood));
  // The server can hold at most kLimit descriptors, so at least this many
  // must be refused, and promptly (not left in the backlog).
  const int must_close = kFlood - kLimit;
  std::vector<pollfd> open;
  for (const int fd : flood) open.push_back({fd, POLLIN, 0});
  int closed = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (closed < must_close && absl::Now() < deadline) {
    if (poll(open.data(), open.size(), 100) <= 0) continue;
    for (pollfd& p : open) {
      if (p.fd >= 0 && p.revents != 0 && ClosedByPeer(p.fd, absl::ZeroDuration())) {
        ++closed;
        p.fd = -1;  // poll skips it from now on.
      }
    }
  }
  EXPECT_GE(closed, must_close) << "connections beyond the limit were not refused";
  EXPECT_TRUE((*client)->GetModelInfo().ok()) << "the connected client was not served";

  for (const int fd : flood) close(fd);
  absl::Status fresh = absl::UnknownError("not tried");
  const absl::Time retry_until = absl::Now() + absl::Seconds(20);
  deltaserve::client::ClientOptions quick;
  quick.timeout = absl::Seconds(2);
  while (!fresh.ok() && absl::Now() < retry_until) {
    auto another = deltaserve::client::TrainerClient::Connect(address, quick);
    fresh = another.ok() ? (*another)->GetModelInfo().status() : another.status();
  }
  EXPECT_TRUE(fresh.ok()) << "no new client served after the flood: " << fresh;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const std::string log = ReadAll(child.err);
  EXPECT_EQ(Wait(child), 0) << log;
  EXPECT_THAT(log, HasSubstr("refusing connections"));
}

}  // namespace

namespace {

// Sends `count` Forward calls whose bytes are `0a 02 ff fe` (field `model`
// holding invalid UTF-8) on one channel to `address`, 100 at a time; the
// number answered INVALID_ARGUMENT.
int SendInvalidUtf8Forwards(const std::string& address, int count) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  const std::string bytes("\x0a\x02\xff\xfe", 4);
  std::atomic<int> invalid{0};
  for (int sent = 0; sent < count;) {
    const int batch = std::min(100, count - sent);
    std::atomic<int> left{batch};
    absl::Notification done;
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<grpc::ByteBuffer> responses(batch);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    for (int i = 0; i < batch; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      stub.UnaryCall(contexts.back().get(), "/deltaserve.v1.Trainer/Forward", grpc::StubOptions(),
                     &request, &responses[i], [&](grpc::Status status) {
                       if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) ++invalid;
                       if (--left == 0) done.Notify();
                     });
    }
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(60))) {
      ADD_FAILURE() << "calls unanswered after 60 s";
      std::abort();  // The callbacks still reference this frame.
    }
    sent += batch;
  }
  return invalid.load();
}

// 10,000 requests with invalid UTF-8 are all answered INVALID_ARGUMENT and
// leave at most `max_protobuf_lines` lines of protobuf's complaint in the log.
// At the default level the metrics endpoint (its address is an info line)
// must count them as INVALID_ARGUMENT Forwards of model "".
void FloodWithInvalidUtf8(bool default_level, size_t max_protobuf_lines) {
  constexpr int kRequests = 10000;
  std::vector<std::string> args = {"--listen=127.0.0.1:0"};
  if (default_level) {
    args.push_back("--metrics_listen=127.0.0.1:0");
  } else {
    args.push_back("--log_level=error");
  }
  Child child = Spawn(args);
  const std::string listening = ReadLine(child.out);
  ASSERT_THAT(listening, MatchesRegex("listening on 127\\.0\\.0\\.1:[0-9]+"));
  const int port = default_level ? ReadMetricsPort(child) : 0;
  // Read all the time, so a flood of lines cannot block the server on a full pipe.
  std::string log;
  std::thread reader([&] { log = ReadAll(child.err); });
  const absl::Time start = absl::Now();
  const int invalid = SendInvalidUtf8Forwards(listening.substr(strlen("listening on ")), kRequests);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(invalid, kRequests);
  if (default_level) {
    EXPECT_EQ(deltaserve::server::testing::AwaitSample(
                  port, "deltaserve_rpc_requests_total",
                  {{"model", ""}, {"rpc", "Forward"}, {"code", "INVALID_ARGUMENT"}}, kRequests),
              kRequests);
  }
  EXPECT_EQ(kill(child.pid, SIGTERM), 0);
  reader.join();
  EXPECT_EQ(Wait(child), 0) << log.substr(0, 4096);
  size_t protobuf_lines = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "invalid UTF-8")) {
      ++protobuf_lines;
      EXPECT_THAT(std::string(line), HasSubstr(" W deltaserve: protobuf: "));
    }
  }
  // 5 lines per 10 s window: at most one window's worth per started 10 s.
  EXPECT_LE(protobuf_lines,
            std::min<size_t>(max_protobuf_lines, 5 * (1 + absl::ToInt64Seconds(took) / 10)));
  EXPECT_LE(std::count(log.begin(), log.end(), '\n'), 30) << log.substr(0, 4096);
}

TEST(ServerBinary, InvalidUtf8FloodLeavesAFewLogLinesAtTheDefaultLevel) {
  FloodWithInvalidUtf8(/*default_level=*/true, 25);
}

TEST(ServerBinary, InvalidUtf8FloodLeavesNoLogLineAtLevelError) {
  FloodWithInvalidUtf8(/*default_level=*/false, 0);
}

}  // namespace
