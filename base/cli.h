// Command-line conventions shared by every deltaserve binary (the server, the
// CLI, the simulators): `--help` / `-h` prints a usage line and the program's
// own flags to stdout and exits 0; `--version` prints "NAME VERSION" and
// exits 0; a flag the program does not define, or a value its flag cannot
// parse, prints one line to stderr and exits 2 (kExitBadFlag). Abseil's parser
// would list every library's flags for --help and exit 1 for a bad flag;
// CheckCommandLine runs before absl::ParseCommandLine so that never happens.
#ifndef DELTASERVE_BASE_CLI_H_
#define DELTASERVE_BASE_CLI_H_

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace deltaserve::base {

// The project version (CMake's project(VERSION)), e.g. "0.2.0".
absl::string_view Version();

struct ProgramInfo {
  std::string name;   // "deltaserve"
  std::string usage;  // Printed first by --help: a usage line and a summary.
  // Flags defined in files whose path contains one of these are listed by
  // --help (e.g. "server/main.cc"); others (Abseil's, gRPC's) are not.
  std::vector<std::string> flag_files;
};

// Writes the usage and the program's flags (name, default, help), sorted.
void PrintHelp(const ProgramInfo& program, std::ostream& out);

// The exit code of a bad flag or flag value.
inline constexpr int kExitBadFlag = 2;

// If argv holds --help, -h, -help, --helpfull or --version, prints what it
// asks for to stdout and returns 0. Else, if a flag is not defined or its
// value does not parse, prints "NAME: unknown flag --x (NAME --help lists the
// flags)" or "NAME: ERROR" to stderr and returns kExitBadFlag. Otherwise
// nullopt: absl::ParseCommandLine will accept argv.
std::optional<int> CheckCommandLine(const ProgramInfo& program, int argc, char** argv);

// Turns off absl::Mutex's deadlock detector for this process. Debian builds
// Abseil without NDEBUG, which leaves it on; gRPC locks an absl::Mutex on every
// call, and the detector's bookkeeping showed up as 2-3% of the server's CPU
// profile under Forward traffic (perf) and in the echo floor's push profile
// (GraphCycles::GetId). Every binary's main calls this first, so that a lock
// costs the same in the server, a simulator and a benchmark; tests keep the
// detector on.
void DisableMutexDeadlockDetection();

}  // namespace deltaserve::base

#endif  // DELTASERVE_BASE_CLI_H_
