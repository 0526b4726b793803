// ForwardBatcher: dynamic batching of one model's Forward calls, and the
// threads that compute its long InputGradient calls.
//
// Callers (the unary Forward handler, every Session stream) Enqueue their
// inputs and return; one thread per model owned by the batcher runs what is
// waiting as one product and answers each caller:
//
//   1. Enqueue validates the inputs (Trainer::ValidateForwardInputs: a bad
//      request is refused here, alone, and never joins a batch) and queues
//      them; RESOURCE_EXHAUSTED if kMaxQueuedRequests are already waiting.
//   2. The thread wakes when the queue is not empty. With max_queue_delay > 0
//      it waits, at most that long after the oldest request arrived, for
//      max_batch_rows rows to gather; with the default 0 it never waits and
//      batches only what is already there (Triton's default).
//   3. It takes requests in arrival order while their rows fit in
//      max_batch_rows (always at least one: a request larger than
//      max_batch_rows runs alone), stacks their inputs and computes
//      Y = f(X) once, on ONE snapshot, with Trainer::ForwardAt — whose rows
//      are bit-identical to what each request would get alone.
//   4. Each caller gets exactly its own rows and that snapshot's version; an
//      overflow in one caller's rows (Trainer::CheckForwardOutputs) fails that
//      caller only.
//   5. Stop(): requests still queued fail with UNAVAILABLE, the thread exits.
//
// Cheap requests skip all of this: a request whose product costs fewer than
// min_batch_macs multiply-adds (rows × the model's multiply-adds per row) is
// computed by Enqueue itself, on the caller's thread, on the newest
// snapshot, and `done` is called before Enqueue returns. The default
// threshold is set where the product costs less server CPU than waking the
// batcher thread, so stacking cannot win it back, and it is small enough not
// to hold up a gRPC reaction (the measurements: docs/benchmarks.md, "Small
// Forwards computed in the handler").
// max_batch_rows = 1 is the unbatched path: every request is computed that
// way, and there is no thread.
//
// InputGradient requests (EnqueueInputGradient) are never stacked, so moving
// one off the caller's thread buys only a free gRPC thread, worth the
// hand-off (a wake-up here, a completion on another thread there) once the
// product is long. One whose forward and backward products together cost
// fewer than kGradientInlineFactor × min_batch_macs multiply-adds is computed
// inline (a TD3 critic of 4 → 64 → 64 → 1 at 256 rows: 2.3M); a costlier one
// is queued for the batcher's gradient threads (at most one per usable CPU by
// default, base::UsableCpus: concurrent callers' gradients still run in
// parallel, as they did in gRPC's threads; a thread starts only when a queued
// gradient finds none idle, so a model that never gets a long gradient has
// none), which compute each alone, so that a large model's backward pass
// never holds a gRPC thread while other calls wait for one. Gradients never
// wait for Forward batches, nor Forwards for gradients. Stop() fails a queued
// gradient like a Forward; max_batch_rows = 1 computes every one inline.
//
// No gRPC here; callbacks must not block (they run on the batcher's threads).
#ifndef DELTASERVE_SERVER_CORE_FORWARD_BATCHER_H_
#define DELTASERVE_SERVER_CORE_FORWARD_BATCHER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/proto/config_defaults.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"

namespace deltaserve::server {

struct ForwardBatchingOptions {
  // Rows one batch may stack; 1 = no batching (see the file comment). ≥ 1.
  uint32_t max_batch_rows = wire::kDefaultMaxBatchRows;
  // How long the oldest request may wait for a fuller batch; 0 = never wait.
  absl::Duration max_queue_delay = absl::ZeroDuration();
  // A request costing fewer multiply-adds than this is computed inline, in
  // Enqueue (see the file comment); 0 = every request goes to the batcher.
  uint64_t min_batch_macs = wire::kDefaultMinBatchMacs;
  // At most this many threads compute long InputGradients (see the file
  // comment), started as gradients come; 0 = one per CPU this process may use
  // (base::UsableCpus). None with max_batch_rows = 1.
  uint32_t gradient_threads = 0;
};

class ForwardBatcher {
 public:
  // Requests waiting at once; one more is RESOURCE_EXHAUSTED. Bounds the
  // memory the queue can hold (each request at most max_request_rows rows).
  static constexpr size_t kMaxQueuedRequests = 4096;
  // An InputGradient is computed inline below this many times min_batch_macs
  // (the default: 4.2M multiply-adds, some 0.2 ms of math here, where the
  // hand-off's few µs are a few percent).
  static constexpr uint64_t kGradientInlineFactor = 64;

  // Called exactly once per accepted request: from a batcher thread, from
  // Stop() (UNAVAILABLE), or, for a request computed inline, from inside
  // Enqueue. Must not block.
  using Done = absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&>;
  // The same for an InputGradient request.
  using GradientDone = absl::AnyInvocable<void(absl::StatusOr<InputGradientResult>) &&>;

  // `trainer` (and `metrics`, if not null) must outlive the batcher. Starts
  // the thread unless max_batch_rows is 1. INVALID_ARGUMENT if
  // max_batch_rows is 0 or max_queue_delay is negative or infinite.
  static absl::StatusOr<std::unique_ptr<ForwardBatcher>> Create(const Trainer* trainer,
                                                                ForwardBatchingOptions options,
                                                                ModelMetrics* metrics = nullptr);

  // Stop()s.
  ~ForwardBatcher();

  ForwardBatcher(const ForwardBatcher&) = delete;
  ForwardBatcher& operator=(const ForwardBatcher&) = delete;

  const ForwardBatchingOptions& options() const { return options_; }

  // Step 1. On OK `done` will be called exactly once (see Done); on error it
  // is not called: Trainer::ValidateForwardInputs' errors, RESOURCE_EXHAUSTED
  // when the queue is full, UNAVAILABLE after Stop(). Never blocks; a request
  // below min_batch_macs (or any, when max_batch_rows is 1) is computed here.
  absl::Status Enqueue(model::Matrix inputs, Done done) ABSL_LOCKS_EXCLUDED(mu_);

  // Trainer::InputGradient(inputs, deltas), computed here or on a gradient
  // thread (see the file comment). Refuses as Enqueue does, with
  // Trainer::ValidateInputGradientRequest's errors; an error of the product
  // itself (an overflow) comes to `done`. At most kMaxQueuedRequests
  // gradients wait, besides as many Forwards.
  absl::Status EnqueueInputGradient(model::Matrix inputs, model::Matrix deltas, GradientDone done)
      ABSL_LOCKS_EXCLUDED(gradient_mu_);

  // Step 5. Idempotent; blocks until the threads have exited (the batch and
  // the gradients they are computing are answered first).
  void Stop() ABSL_LOCKS_EXCLUDED(mu_, gradient_mu_);

  // Forward requests waiting (not yet taken into a batch).
  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_);
  // InputGradient requests waiting (not yet taken by a gradient thread).
  size_t queued_gradients() const ABSL_LOCKS_EXCLUDED(gradient_mu_);
  // Gradient threads started so far (never more than max_gradient_threads()).
  size_t gradient_threads_started() const ABSL_LOCKS_EXCLUDED(gradient_mu_);
  // The cap: options().gradient_threads, or base::UsableCpus() for 0.
  uint32_t max_gradient_threads() const { return max_gradient_threads_; }

  // Whether a request of `rows` rows is computed inline by Enqueue.
  bool ComputesInline(Eigen::Index rows) const;
  // The same for EnqueueInputGradient (a forward and a backward product).
  bool ComputesGradientInline(Eigen::Index rows) const;

 private:
  struct Request {
    model::Matrix inputs;
    Done done;
    absl::Time arrival;
  };
  struct GradientRequest {
    model::Matrix inputs;
    model::Matrix deltas;
    GradientDone done;
  };

  ForwardBatcher(const Trainer* trainer, ForwardBatchingOptions options, ModelMetrics* metrics);

  // Enqueue's inline path: computes `inputs` on the newest snapshot, calls `done`.
  absl::Status ComputeHere(const model::Matrix& inputs, Done done) ABSL_LOCKS_EXCLUDED(mu_);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Steps 2–3: blocks for the next batch; empty once stopping.
  std::deque<Request> TakeBatch() ABSL_LOCKS_EXCLUDED(mu_);
  // A gradient thread: computes queued gradients one at a time until Stop().
  void GradientLoop() ABSL_LOCKS_EXCLUDED(gradient_mu_);
  // Steps 3–4 for a non-empty batch.
  void Run(std::deque<Request>& batch);

  const Trainer* const trainer_;
  const ForwardBatchingOptions options_;
  ModelMetrics* const metrics_;
  const uint64_t macs_per_row_;
  const uint32_t max_gradient_threads_;

  // Batcher-thread state.
  model::Matrix stacked_;
  model::Matrix outputs_;
  Trainer::ForwardScratch scratch_;

  mutable absl::Mutex mu_;
  std::deque<Request> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // The gradients' own lock, so that the Forward paths never wake or test
  // the gradient threads' waits.
  mutable absl::Mutex gradient_mu_;
  std::deque<GradientRequest> gradients_ ABSL_GUARDED_BY(gradient_mu_);
  bool gradients_stopping_ ABSL_GUARDED_BY(gradient_mu_) = false;
  // Started threads not computing a gradient (waiting, or about to wait).
  size_t idle_gradient_threads_ ABSL_GUARDED_BY(gradient_mu_) = 0;
  // Started as gradients come (EnqueueInputGradient); joined by Stop.
  std::vector<std::thread> gradient_threads_ ABSL_GUARDED_BY(gradient_mu_);

  std::once_flag join_once_;
  // Last: they start after everything above exists.
  std::thread thread_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_FORWARD_BATCHER_H_
