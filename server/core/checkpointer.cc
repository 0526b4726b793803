#include "server/core/checkpointer.h"

#include <utility>

#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "server/core/log.h"

namespace deltaserve::server {

Checkpointer::Checkpointer(persist::ModelStore* store)
    : store_(store), writer_([this] { WriterLoop(); }) {}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Schedule(std::unique_ptr<deltaserve::v1::StateCheckpoint> state,
                            std::vector<Done> done) {
  absl::MutexLock lock(&mu_);
  next_ = std::move(state);
  for (Done& d : done) waiting_.push_back(std::move(d));
}

void Checkpointer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

absl::StatusOr<CheckpointInfo> Checkpointer::WriteNow(
    const deltaserve::v1::StateCheckpoint& state) {
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(persist::ModelStore::Written written, store_->WriteCheckpoint(state));
  LogInfo("checkpoint ", written.path, ": version ", state.version(), ", ", written.bytes,
          " bytes in ", absl::FormatDuration(absl::Now() - start));
  return CheckpointInfo{state.version(), std::move(written.path), written.bytes};
}

void Checkpointer::WriterLoop() {
  while (true) {
    std::unique_ptr<deltaserve::v1::StateCheckpoint> state;
    std::vector<Done> done;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Checkpointer* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
            return c->stopping_ || c->next_ != nullptr;
          },
          this));
      if (next_ == nullptr) return;  // Stopping, nothing left.
      state = std::move(next_);
      done.swap(waiting_);
    }
    absl::StatusOr<CheckpointInfo> written = WriteNow(*state);
    if (!written.ok()) {
      LogError("checkpoint of ", store_->dir(), " failed: ", written.status().message(),
               " (the journal still holds every entry since the last one)");
    }
    for (Done& d : done) std::move(d)(written);
  }
}

}  // namespace deltaserve::server
