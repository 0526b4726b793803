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
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_SNAPSHOT_H_
