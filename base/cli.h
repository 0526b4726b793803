// Command-line conventions shared by every deltaserve binary (the server, the
// CLI, the simulators): `--help` / `-h` prints a usage line and the program's
// own flags to stdout and exits 0; `--version` prints "NAME VERSION" and
// exits 0. Abseil's built-in --help exits 1 and lists every library's flags;
// these run before absl::ParseCommandLine so that never happens.
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

// If argv holds --help, -h, -help, --helpfull or --version, prints what it
// asks for to stdout and returns the exit code (0); otherwise nullopt and the
// caller goes on to absl::ParseCommandLine.
std::optional<int> HandleHelpAndVersion(const ProgramInfo& program, int argc, char** argv);

}  // namespace deltaserve::base

#endif  // DELTASERVE_BASE_CLI_H_
