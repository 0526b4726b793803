#include "deltaserve/base/cli.h"

#include <algorithm>
#include <iostream>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

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

// Abseil's flag syntax: --name=value, --name value (not for a bool), --name
// and --noname (bool only), with one or two dashes; "--" ends the flags and
// a lone "-" is an argument.
std::optional<std::string> FirstBadFlag(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::optional<std::string> value;
    if (equals != absl::string_view::npos) value = std::string(arg.substr(equals + 1));
    if (flag == nullptr && absl::StartsWith(name, "no") && !value.has_value()) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag != nullptr && flag->IsOfType<bool>()) continue;  // --noname
      flag = nullptr;
    }
    if (flag == nullptr) {
      return absl::StrCat("unknown flag --", name, " (--help lists the flags)");
    }
    if (flag->IsRetired()) continue;
    if (!value.has_value()) {
      if (flag->IsOfType<bool>()) continue;  // --name: true
      if (i + 1 == argc) return absl::StrCat("flag --", name, " needs a value");
      value = argv[++i];
    }
    // Parsing sets the flag; absl::ParseCommandLine then sets it again to
    // the same value.
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::StrCat("bad value \"", *value, "\" for flag --", name, ": ", error);
    }
  }
  return std::nullopt;
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

std::optional<int> CheckCommandLine(const ProgramInfo& program, int argc, char** argv) {
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
  if (std::optional<std::string> error = FirstBadFlag(argc, argv)) {
    std::cerr << program.name << ": " << *error << "\n";
    return kExitBadFlag;
  }
  return std::nullopt;
}

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace deltaserve::base
