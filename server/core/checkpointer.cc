#include "deltaserve/server/core/checkpointer.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/log.h"

namespace deltaserve::server {

deltaserve::v1::StateCheckpoint ToProto(const CheckpointState& state) {
  deltaserve::v1::StateCheckpoint c = state.header;
  const auto copy = [](const std::vector<float>& from, google::protobuf::RepeatedField<float>* to) {
    to->Resize(static_cast<int>(from.size()), 0.0f);
    std::copy(from.begin(), from.end(), to->mutable_data());
  };
  copy(state.parameters->parameters, c.mutable_parameters());
  copy(state.accumulated_gradient, c.mutable_accumulated_gradient());
  for (const std::vector<float>& buffer : state.optimizer_state) {
    deltaserve::v1::Matrix* m = c.add_optimizer_state();
    m->set_rows(1);
    m->set_cols(static_cast<uint32_t>(buffer.size()));
    copy(buffer, m->mutable_data());
  }
  return c;
}

Checkpointer::Checkpointer(persist::ModelStore* store)
    : store_(store), writer_([this] { WriterLoop(); }) {}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Schedule(std::unique_ptr<CheckpointState> state, std::vector<Done> done) {
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

absl::StatusOr<CheckpointInfo> Checkpointer::WriteNow(const CheckpointState& state) {
  const absl::Time start = absl::Now();
  DELTASERVE_ASSIGN_OR_RETURN(persist::ModelStore::Written written,
                              store_->WriteCheckpoint(ToProto(state)));
  const uint64_t version = state.header.version();
  LogInfo("checkpoint ", written.path, ": version ", version, ", ", written.bytes, " bytes in ",
          absl::FormatDuration(absl::Now() - start), " (learner paused ",
          absl::FormatDuration(state.learner_pause), ")");
  return CheckpointInfo{version, std::move(written.path), written.bytes, state.learner_pause};
}

void Checkpointer::WriterLoop() {
  while (true) {
    std::unique_ptr<CheckpointState> state;
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
