#include "sim/sim_main.h"

#include <cstdio>
#include <string>

#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"

namespace deltaserve::sim {

int SimulatorMain(int argc, char** argv, absl::string_view name,
                  absl::FunctionRef<absl::StatusOr<int>()> run) {
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detector on; gRPC locks an absl::Mutex on every call, and a simulator
  // makes one or two calls per environment step, so the detector's
  // bookkeeping is paid on the hot path (see server/main.cc, which measured
  // it). Tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
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
