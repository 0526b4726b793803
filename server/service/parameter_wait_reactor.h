// ParameterWaitReactor: the server side of one GetParameters long-poll
// (GetParametersRequest.min_version above the model's version).
//
// It never holds a gRPC thread: the handler parks a callback in the model's
// WeightHub (WeightHub::AwaitVersion) and returns this reactor; the call is
// finished later by whoever ends the wait, exactly once:
//   - the hub's notifier thread, once a published version reaches
//     min_version: OK with the NEWEST version (encoded once per version by
//     the model's EncodedUpdateCache, shared by every waiter);
//   - WeightHub::Close() (server shutdown): UNAVAILABLE;
//   - OnCancel (the client cancelled, or the call's deadline passed — gRPC
//     cancels a call at its deadline on the server too), if CancelWait takes
//     the waiter back first: DEADLINE_EXCEEDED when context->deadline() has
//     passed, CANCELLED otherwise. If the hub already took it, its answer is
//     on the way and OnCancel does nothing.
// A version already reached, a closed hub or a full model (max_waiters
// parked: RESOURCE_EXHAUSTED) finishes in the constructor.
//
// The model's parameter_waiters gauge counts a parked reactor until OnDone;
// `live` (ParameterWaiters) counts every reactor until OnDone, so shutdown
// can wait for their answers to leave before it stops the gRPC server.
#ifndef DELTASERVE_SERVER_SERVICE_PARAMETER_WAIT_REACTOR_H_
#define DELTASERVE_SERVER_SERVICE_PARAMETER_WAIT_REACTOR_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/weight_hub.h"
#include "deltaserve/server/service/encoded_update.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"

namespace deltaserve::server {

// How many ParameterWaitReactors exist (constructed, not yet OnDone).
class ParameterWaiters {
 public:
  void Add() ABSL_LOCKS_EXCLUDED(mu_);
  void Remove() ABSL_LOCKS_EXCLUDED(mu_);
  size_t count() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until none is left (true) or `deadline` passes (false).
  bool AwaitNone(absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

class ParameterWaitReactor final : public grpc::ServerUnaryReactor {
 public:
  // `context`, `response` (gRPC's, alive until OnDone), `hub`, `encoder`,
  // `metrics` (the model's) and `live` must outlive the reactor; the server
  // closes hubs and waits for `live` to empty before destroying them.
  // Deletes itself in OnDone.
  ParameterWaitReactor(grpc::CallbackServerContext* context, grpc::ByteBuffer* response,
                       WeightHub* hub, EncodedUpdateCache* encoder, ModelMetrics* metrics,
                       ParameterWaiters* live, uint64_t min_version, size_t max_waiters,
                       std::chrono::steady_clock::time_point start);

  void OnCancel() override;
  void OnDone() override;

 private:
  // Records the rpc, then Finishes (the reply implies the count).
  void RecordAndFinish(const absl::Status& status);
  // The hub's answer: the newest snapshot or UNAVAILABLE.
  void Complete(absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot);

  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_;
  WeightHub* const hub_;
  EncodedUpdateCache* const encoder_;
  ModelMetrics* const metrics_;
  ParameterWaiters* const live_;
  const uint64_t min_version_;
  const std::chrono::steady_clock::time_point start_;
  // Set in the constructor, before gRPC can call OnCancel or OnDone.
  uint64_t ticket_ = 0;  // > 0: parked in the hub.
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_PARAMETER_WAIT_REACTOR_H_
