// An immutable, versioned copy of one model's parameters. The learner builds a
// new Snapshot after every optimizer step and swaps it in; readers (Forward,
// GetParameters, WeightHub) hold a std::shared_ptr<const Snapshot> and never
// wait for the learner.
#ifndef DELTASERVE_SERVER_CORE_SNAPSHOT_H_
#define DELTASERVE_SERVER_CORE_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "deltaserve/model/normalization.h"

namespace deltaserve::server {

struct Snapshot {
  uint64_t version = 0;           // Optimizer steps taken; 0 = initial.
  std::vector<float> parameters;  // Flat buffer, layout of model::Mlp.
  // Optimizer steps taken: version, less the imports among them.
  uint64_t optimizer_steps = 0;
  // The rate the optimizer step after this version uses (its schedule at
  // the optimizer steps taken so far; an import does not advance it).
  double learning_rate = 0.0;
  // The input normalisation statistics of this version (the model's
  // input_normalization RUNNING_MEAN_STD); null: inputs are not normalised.
  // Shared, immutable: versions without a step in between share one.
  std::shared_ptr<const model::RunningMeanStd> input_statistics;
  // Raised only by a relay (server/relay/relay.h) when its upstream came back
  // at a lower version, or at the same version with other parameters (it
  // restarted without its state): versions are ordered by (generation,
  // version), so the hub, the encoder and the watchers follow it down.
  // Always 0 on a server that trains.
  uint64_t generation = 0;
};

// True if `a` is a later version than `b` (by generation, then version).
inline bool NewerThan(const Snapshot& a, const Snapshot& b) {
  return a.generation != b.generation ? a.generation > b.generation : a.version > b.version;
}

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_SNAPSHOT_H_
