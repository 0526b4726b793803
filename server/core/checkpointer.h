// Checkpointer: writes a model's checkpoints on its own thread, so the
// learner only pays for copying its state (Trainer::CaptureState) and never
// for serialising, writing or fsyncing it.
#ifndef DELTASERVE_SERVER_CORE_CHECKPOINTER_H_
#define DELTASERVE_SERVER_CORE_CHECKPOINTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/snapshot.h"
#include "deltaserve/server/persist/model_store.h"
#include "deltaserve/v1/state.pb.h"

namespace deltaserve::server {

// What the learner hands the Checkpointer: everything but the big arrays in
// proto form, the big arrays as plain copies (or, for the parameters, the
// immutable snapshot they already are), so that the learner pays only for
// copying memory and the writer thread serialises.
struct CheckpointState {
  deltaserve::v1::StateCheckpoint header;  // Without parameters and buffers.
  std::shared_ptr<const Snapshot> parameters;
  std::vector<float> accumulated_gradient;
  std::vector<std::vector<float>> optimizer_state;
  absl::Duration learner_pause;  // Filled in by the learner once captured.
};

// The whole checkpoint message.
deltaserve::v1::StateCheckpoint ToProto(const CheckpointState& state);

struct CheckpointInfo {
  uint64_t version = 0;  // Model version the checkpoint holds.
  std::string path;
  uint64_t bytes = 0;
  // How long the learner stopped to capture the state (copies, new journal
  // segment); the rest was the writer thread's.
  absl::Duration learner_pause;
};

class Checkpointer {
 public:
  // Called once the checkpoint (or a newer one) is durable, or with the
  // write error. On the writer thread; must not block.
  using Done = absl::AnyInvocable<void(absl::StatusOr<CheckpointInfo>) &&>;

  // `store` must outlive the Checkpointer. Starts the writer thread.
  explicit Checkpointer(persist::ModelStore* store);
  // Stop()s.
  ~Checkpointer();

  // Queues `state` for writing. If an older state is still waiting it is
  // dropped (the newer one contains it) and its callbacks wait for this one.
  void Schedule(std::unique_ptr<CheckpointState> state, std::vector<Done> done)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Writes what is queued, then stops the thread. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Writes `state` on the calling thread (what Schedule's thread does).
  absl::StatusOr<CheckpointInfo> WriteNow(const CheckpointState& state);

 private:
  void WriterLoop() ABSL_LOCKS_EXCLUDED(mu_);

  persist::ModelStore* const store_;

  absl::Mutex mu_;
  std::unique_ptr<CheckpointState> next_ ABSL_GUARDED_BY(mu_);
  std::vector<Done> waiting_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread writer_;  // Last: starts after everything above exists.
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_CHECKPOINTER_H_
