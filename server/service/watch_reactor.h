// WatchReactor: the server side of one WatchParameters stream.
//
// It writes pre-serialized ParameterUpdates (grpc::ByteBuffer, shared by every
// watcher of a version) and only ever the newest version, so a slow reader
// skips versions instead of slowing the learner or other watchers.
//
// State machine (every transition runs Advance(), which decides under mu_
// and calls StartWrite/Finish after releasing it: gRPC may run OnWriteDone or
// OnDone inline from those calls, on the calling thread):
//   1. Constructed by the handler: subscribes to the hub, then Advance()
//      writes the current version at once. If the model already has
//      max_watchers streams, Finish(RESOURCE_EXHAUSTED) instead.
//   2. Advance(): if a write is in flight, do nothing (OnWriteDone comes back
//      here). Otherwise, if the hub holds a version newer than the last one
//      written, StartWrite(newest) — intermediate versions are skipped.
//   3. A newer version is published → the hub's notifier thread calls
//      Advance() (step 2).
//   4. OnWriteDone(ok): the write is no longer in flight; !ok means the
//      client is gone (→ 5); otherwise step 2.
//   5. Client cancelled (OnCancel or a failed write): once no write is in
//      flight, Finish(CANCELLED).
//   6. Hub closed (server shutting down): once no write is in flight,
//      Finish(UNAVAILABLE).
//   7. OnDone: drop the subscription (waits for a running hub callback),
//      record the stream (watchers − 1; the rpc with its status and
//      lifetime), delete this.
//
// The model's watchers gauge counts the reactor from construction (+1, before
// its first write) to OnDone (−1).
#ifndef DELTASERVE_SERVER_SERVICE_WATCH_REACTOR_H_
#define DELTASERVE_SERVER_SERVICE_WATCH_REACTOR_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/weight_hub.h"
#include "deltaserve/server/service/encoded_update.h"
#include "deltaserve/server/service/watch_pacer.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"

namespace deltaserve::server {

class WatchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // `hub`, `encoder` and `metrics` (the model's; not null) must outlive the
  // reactor (the server closes hubs and waits for every call before
  // destroying them). Deletes itself in OnDone.
  WatchReactor(WeightHub* hub, EncodedUpdateCache* encoder, ModelMetrics* metrics,
               size_t max_watchers);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void Advance() ABSL_LOCKS_EXCLUDED(mu_);
  // Marks the stream finished (under mu_); the caller then calls Finish(status)
  // without holding mu_.
  grpc::Status MarkFinished(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  WeightHub* const hub_;
  EncodedUpdateCache* const encoder_;
  ModelMetrics* const metrics_;
  const std::chrono::steady_clock::time_point start_;
  std::unique_ptr<WeightHub::Subscription> subscription_;

  // Lock order: the hub's notifier calls Advance() under the subscriber's
  // Slot::mu; Advance() calls the hub and the encoder under mu_.
  absl::Mutex mu_ ABSL_ACQUIRED_AFTER(WeightHub::Subscription::Slot::mu)
      ABSL_ACQUIRED_BEFORE(WeightHub::mu_, EncodedUpdateCache::mu_);
  std::shared_ptr<const EncodedUpdate> in_flight_ ABSL_GUARDED_BY(mu_);  // null: none
  bool sent_any_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t sent_version_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sent_generation_ ABSL_GUARDED_BY(mu_) = 0;  // Snapshot::generation.
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode finish_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::UNKNOWN;
  WatchPacer pacer_ ABSL_GUARDED_BY(mu_);
  // When the timed poke asked for last is due (InfinitePast: none asked for).
  absl::Time poke_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// A stream that finishes at once with `status` (e.g. NOT_FOUND); deletes
// itself in OnDone.
class FinishedWriteReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FinishedWriteReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_WATCH_REACTOR_H_
