#include "deltaserve/bench/load/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "deltaserve/base/address.h"

namespace deltaserve::load {
namespace {

constexpr char kListeningPrefix[] = "listening on ";

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void ExecServer(int stdout_write_fd, const std::vector<std::string>& args) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  dup2(stdout_write_fd, STDOUT_FILENO);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

}  // namespace

absl::StatusOr<int64_t> ReadRssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  if (!status) return absl::NotFoundError(absl::StrCat("no /proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) return kib;
  }
  return absl::InternalError(absl::StrCat("no VmRSS in /proc/", pid, "/status"));
}

bool IsLocalTarget(absl::string_view target) {
  for (const absl::string_view scheme : {"ipv4:", "ipv6:", "dns:///"}) {
    if (absl::ConsumePrefix(&target, scheme)) break;
  }
  return base::IsLoopbackAddress(target);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::string& config, const std::string& log_level,
    absl::Duration startup_timeout, std::vector<std::string> extra_args) {
  std::vector<std::string> args = {binary, "--listen=127.0.0.1:0",
                                   absl::StrCat("--log_level=", log_level)};
  if (!config.empty()) args.push_back(absl::StrCat("--config=", config));
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) ExecServer(fds[1], args);
  close(fds[1]);
  std::unique_ptr<ServerProcess> server(new ServerProcess(pid, fds[0]));
  absl::Status listening = server->AwaitListening(startup_timeout);
  if (!listening.ok()) return listening;
  return server;
}

absl::Status ServerProcess::AwaitListening(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string out;
  while (out.find('\n') == std::string::npos) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("no \"listening on\" line within ", absl::FormatDuration(timeout)));
    }
    pollfd poll_fd = {stdout_fd_, POLLIN, 0};
    if (poll(&poll_fd, 1, static_cast<int>(left_ms)) <= 0) continue;
    char buffer[512];
    const ssize_t n = read(stdout_fd_, buffer, sizeof buffer);
    if (n <= 0) {
      bool clean = false;
      return absl::FailedPreconditionError(
          absl::StrCat("server ended before listening: ", Stop(absl::Seconds(5), &clean)));
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  out.resize(out.find('\n'));
  absl::string_view line = absl::StripAsciiWhitespace(out);
  if (!absl::ConsumePrefix(&line, kListeningPrefix)) {
    return absl::InternalError(absl::StrCat("unexpected first stdout line: \"", line, "\""));
  }
  address_ = std::string(line);
  return absl::OkStatus();
}

std::optional<std::string> ServerProcess::Exited() {
  if (exit_.has_value()) return exit_;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) exit_ = DescribeWaitStatus(status);
  return exit_;
}

std::string ServerProcess::Stop(absl::Duration grace, bool* clean) {
  if (!Exited().has_value()) {
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + grace;
    while (!Exited().has_value() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
    clean_ = exit_.has_value() && *exit_ == "exit 0";
    if (!exit_.has_value()) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      exit_ = absl::StrCat(DescribeWaitStatus(status), " (SIGKILL after ",
                           absl::FormatDuration(grace), ")");
    }
  }
  if (stdout_fd_ >= 0) {
    close(stdout_fd_);
    stdout_fd_ = -1;
  }
  *clean = clean_;
  return *exit_;
}

ServerProcess::~ServerProcess() {
  if (!Exited().has_value()) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

}  // namespace deltaserve::load
