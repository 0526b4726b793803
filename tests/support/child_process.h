// A child process for tests that run a real binary: spawned with its stdout
// on a pipe and its stderr on a pipe or in a file (a file when nobody reads
// it, so a chatty child never blocks on a full pipe).
#ifndef DELTASERVE_TESTS_SUPPORT_CHILD_PROCESS_H_
#define DELTASERVE_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace deltaserve::testing {

struct Child {
  pid_t pid = -1;
  int out = -1;  // Child's stdout.
  int err = -1;  // Child's stderr (-1 when it goes to a file).
};

// Starts `path` with `args`; stderr to `stderr_file` (appended) if given,
// else to a pipe.
inline Child Spawn(const std::string& path, const std::vector<std::string>& args,
                   const std::string& stderr_file = "") {
  int out[2], err[2] = {-1, -1};
  EXPECT_EQ(pipe(out), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  if (stderr_file.empty()) {
    EXPECT_EQ(pipe(err), 0);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, err[0]);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_file.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  Child child;
  EXPECT_EQ(posix_spawn(&child.pid, path.c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  child.out = out[0];
  if (err[1] >= 0) close(err[1]);
  child.err = err[0];
  return child;
}

// Reads until EOF (the child exited or closed the stream).
inline std::string ReadAll(int fd) {
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, n);
  return text;
}

// Reads one line (without '\n'), or what there is at EOF.
inline std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  return line;
}

// Waits for the child; its exit code, or 128 + signal if it was killed.
inline int Wait(Child& child) {
  int status = 0;
  EXPECT_EQ(waitpid(child.pid, &status, 0), child.pid);
  close(child.out);
  if (child.err >= 0) close(child.err);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace deltaserve::testing

#endif  // DELTASERVE_TESTS_SUPPORT_CHILD_PROCESS_H_
