#include "deltaserve/sim/sim_main.h"

#include <cstdio>
#include <optional>
#include <string>

#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/client/security_flags.h"

namespace deltaserve::sim {

int SimulatorMain(int argc, char** argv, absl::string_view name,
                  absl::FunctionRef<absl::StatusOr<int>()> run) {
  base::DisableMutexDeadlockDetection();
  const base::ProgramInfo program = {
      std::string(name),
      absl::StrCat("usage: ", name, " --server=HOST:PORT [flags]\n\nA deltaserve simulator (sim/",
                   name,
                   ".cc): steps its environments, asks the server for actions, sends the "
                   "deltas back."),
      {"sim/", client::kSecurityFlagsFile}};
  if (std::optional<int> exit_code = base::CheckCommandLine(program, argc, argv)) {
    return *exit_code;
  }
  absl::ParseCommandLine(argc, argv);
  const absl::StatusOr<int> exit_code = run();
  if (!exit_code.ok()) {
    std::fprintf(stderr, "%s: %s\n", std::string(name).c_str(),
                 exit_code.status().ToString().c_str());
    return 1;
  }
  return *exit_code;
}

}  // namespace deltaserve::sim
