// The flags every simulator binary has, for the Runner's connection:
//   --server  deltaserve address (host:port or unix:PATH)
//   --model   model name; empty = the server's default model
// Each binary defines its own flags (--actions among them) in its .cc file;
// tests/deploy/check_deploy.py reads both files.
#ifndef DELTASERVE_SIM_RUNNER_FLAGS_H_
#define DELTASERVE_SIM_RUNNER_FLAGS_H_

#include "sim/runner.h"

namespace deltaserve::sim {

// RunnerOptions with server and model from the flags, the rest defaulted.
RunnerOptions RunnerOptionsFromFlags();

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_RUNNER_FLAGS_H_
