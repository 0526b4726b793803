// An immutable, versioned copy of one model's parameters. The learner builds a
// new Snapshot after every optimizer step and swaps it in; readers (Forward,
// GetParameters, WeightHub) hold a std::shared_ptr<const Snapshot> and never
// wait for the learner.
#ifndef DELTASERVE_SERVER_CORE_SNAPSHOT_H_
#define DELTASERVE_SERVER_CORE_SNAPSHOT_H_

#include <cstdint>
#include <vector>

namespace deltaserve::server {

struct Snapshot {
  uint64_t version = 0;           // Optimizer steps taken; 0 = initial.
  std::vector<float> parameters;  // Flat buffer, layout of model::Mlp.
  // Optimizer steps taken: version, less the imports among them.
  uint64_t optimizer_steps = 0;
  // The rate the optimizer step after this version uses (its schedule at
  // the optimizer steps taken so far; an import does not advance it).
  double learning_rate = 0.0;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_SNAPSHOT_H_
