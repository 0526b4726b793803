// The main() every simulator binary shares:
//
//   int main(int argc, char** argv) {
//     return deltaserve::sim::SimulatorMain(argc, argv, "cartpole_sim", Run);
//   }
#ifndef DELTASERVE_SIM_SIM_MAIN_H_
#define DELTASERVE_SIM_SIM_MAIN_H_

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace deltaserve::sim {

// Turns off absl::Mutex's deadlock detector (why: base/cli.h), answers
// --help and --version (base/cli.h: exit 0) and refuses a bad flag (exit 2),
// parses the command line into the
// ABSL_FLAGs, calls `run` and returns the process's
// exit code: run's value if it returned one, else 1 with "NAME: STATUS" on
// stderr.
int SimulatorMain(int argc, char** argv, absl::string_view name,
                  absl::FunctionRef<absl::StatusOr<int>()> run);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_SIM_MAIN_H_
