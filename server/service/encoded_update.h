// EncodedUpdateCache: one model's newest ParameterUpdate, serialized once per
// version however many watchers write it.
//
// A grpc::ByteBuffer's copies share the same slices, so every watcher of a
// version writes the same bytes. The encoding is built lazily by the first
// Encode() call that needs it (none while nobody watches) and only for the
// newest version asked for; concurrent callers for the same version wait for
// one encoder instead of each encoding.
#ifndef DELTASERVE_SERVER_SERVICE_ENCODED_UPDATE_H_
#define DELTASERVE_SERVER_SERVICE_ENCODED_UPDATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/server/core/snapshot.h"
#include "grpcpp/support/byte_buffer.h"

namespace deltaserve::server {

class WatchReactor;

// One version, ready to write: a serialized deltaserve.v1.ParameterUpdate.
struct EncodedUpdate {
  uint64_t version = 0;
  uint64_t generation = 0;  // Snapshot::generation (a relay's; else 0).
  grpc::ByteBuffer bytes;
};

class EncodedUpdateCache {
 public:
  // `model` names the model in every ParameterUpdate.
  explicit EncodedUpdateCache(std::string model) : model_(std::move(model)) {}

  EncodedUpdateCache(const EncodedUpdateCache&) = delete;
  EncodedUpdateCache& operator=(const EncodedUpdateCache&) = delete;

  // The encoding of `snapshot` (not null), or of a newer version already
  // cached; built now (and cached) if the cache is older. Thread-safe; may
  // block while another caller encodes.
  std::shared_ptr<const EncodedUpdate> Encode(const std::shared_ptr<const Snapshot>& snapshot)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class WatchReactor;  // Only to name mu_ in its lock order.

  const std::string model_;
  absl::Mutex mu_;
  std::shared_ptr<const EncodedUpdate> cached_ ABSL_GUARDED_BY(mu_);
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_ENCODED_UPDATE_H_
