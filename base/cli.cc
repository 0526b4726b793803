#include "base/cli.h"

#include <algorithm>
#include <iostream>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#ifndef DELTASERVE_VERSION
#error "DELTASERVE_VERSION must be defined by the build (base/CMakeLists.txt)"
#endif

namespace deltaserve::base {
namespace {

bool IsProgramFlag(const ProgramInfo& program, const absl::CommandLineFlag& flag) {
  return std::any_of(
      program.flag_files.begin(), program.flag_files.end(),
      [&](const std::string& file) { return absl::StrContains(flag.Filename(), file); });
}

}  // namespace

absl::string_view Version() { return DELTASERVE_VERSION; }

void PrintHelp(const ProgramInfo& program, std::ostream& out) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!flag->IsRetired() && IsProgramFlag(program, *flag)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  out << program.usage << "\n\nFlags:\n";
  for (const absl::CommandLineFlag* flag : flags) {
    out << "  --" << flag->Name() << " (" << flag->Help() << "); default: \""
        << flag->DefaultValue() << "\"\n";
  }
  out << "  --help, -h (print this help and exit)\n"
      << "  --version (print \"" << program.name << " " << Version() << "\" and exit)\n";
}

std::optional<int> HandleHelpAndVersion(const ProgramInfo& program, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;  // What follows is not a flag.
    if (arg == "--help" || arg == "-h" || arg == "-help" || arg == "--helpfull") {
      PrintHelp(program, std::cout);
      return 0;
    }
    if (arg == "--version" || arg == "-version") {
      std::cout << program.name << " " << Version() << std::endl;
      return 0;
    }
  }
  return std::nullopt;
}

}  // namespace deltaserve::base
