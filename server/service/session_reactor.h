// SessionReactor: the server side of one Session stream — many Forward and
// SubmitDelta calls on one bidirectional stream, answered by id, in the order
// they finish (server/service/call_paths.h does the work, exactly as for the
// unary rpcs).
//
// Bounded: at most `max_in_flight` calls are unanswered or answered-but-not-
// yet-written at once. Only then is the next call read, so a client that
// stops reading fills the write queue, the server stops reading, and the
// client's own writes stop at HTTP/2 flow control: memory stays bounded and
// no thread waits. One read and one write are in flight at most.
//
// State machine. Every event updates the state under mu_ and then calls
// Advance(), which decides under mu_ and performs the decided StartRead /
// StartWrite / Finish after releasing it (gRPC may run a reaction inline from
// inside those calls, which then takes mu_ itself):
//   1. Constructed by the handler: registers with the SessionRegistry and
//      Advance() starts the first read.
//   2. OnReadDone(ok): the read is no longer in flight. !ok: the client has
//      half-closed (or is gone) → 6. ok: the call counts as unanswered and is
//      dispatched: bytes that are not a SessionRequest end the stream
//      (INVALID_ARGUMENT, → 5); a request without a call gets a CallError;
//      otherwise StartForward / StartSubmit, whose answer comes to Answer().
//   3. Answer() (any thread: the reaction itself, the batcher, the learner):
//      the SessionResponse is serialized, queued for writing; the call is no
//      longer unanswered. Each call is recorded (SessionForward /
//      SessionSubmitDelta with its code and its time from read to answer).
//   4. Advance(): writes the front of the queue if no write is in flight;
//      reads the next call if no read is in flight, the client has not
//      half-closed, the last call read has been dispatched (an answer
//      computed inline is then written before the next read is asked for,
//      so both go out in one sendmsg) and unanswered + queued < max_in_flight.
//   5. Ending: the client cancels (OnCancel or a failed write: CANCELLED),
//      the server shuts down (Close(): UNAVAILABLE) or a request did not parse
//      (INVALID_ARGUMENT): nothing more is read or written, answers still to
//      come are dropped, and Finish(status) once no write is in flight.
//   6. Half-closed: once every call is answered and written, Finish(OK).
//   7. OnDone: unregisters, records the stream (rpc Session, under the
//      unknown-model bucket: a session is not bound to one model), and
//      deletes this — or leaves that to the last Answer() still to come.
#ifndef DELTASERVE_SERVER_SERVICE_SESSION_REACTOR_H_
#define DELTASERVE_SERVER_SERVICE_SESSION_REACTOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"

namespace deltaserve::server {

class SessionReactor;

// The open Session streams of one server, so that shutdown can end them.
class SessionRegistry {
 public:
  // Ends every open stream with UNAVAILABLE (step 5) and every later one at
  // its start. Never blocks on a stream.
  void CloseAll() ABSL_LOCKS_EXCLUDED(mu_);

  // After CloseAll: blocks until every stream has ended (true) or `deadline`
  // passes (false; e.g. a client that does not read holds its last write).
  bool AwaitAllGone(absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

  size_t open() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class SessionReactor;
  // False once closed: the stream must end at once.
  bool Add(SessionReactor* session) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(SessionReactor* session) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_set<SessionReactor*> sessions_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class SessionReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Calls unanswered or unwritten at once, unless the server says otherwise.
  static constexpr size_t kDefaultMaxInFlight = 128;

  // `models`, `unknown_model` and `registry` must outlive the reactor (the
  // server ends every stream and stops the learners and batchers, which
  // answer every call, before destroying them). Deletes itself (step 7).
  SessionReactor(const ModelRegistry* models, ModelMetrics* unknown_model,
                 SessionRegistry* registry, size_t max_in_flight = kDefaultMaxInFlight,
                 std::string peer = "");

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  friend class SessionRegistry;
  using Clock = std::chrono::steady_clock;

  // What Advance() decided under mu_, performed after releasing it.
  struct Actions {
    bool read = false;
    const grpc::ByteBuffer* write = nullptr;
    std::optional<grpc::Status> finish;
    int count() const { return int{read} + int{write != nullptr} + int{finish.has_value()}; }
  };

  ~SessionReactor() override = default;

  // Runs update() and then step 4's decision under mu_, performs what was
  // decided outside it (repeating while there is more), and deletes the
  // reactor when that is due (step 7). Every event goes through here.
  void Advance(absl::FunctionRef<void()> update) ABSL_LOCKS_EXCLUDED(mu_);
  Actions DecideLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Step 2 for one parsed request; the call already counts as unanswered.
  void Dispatch(const grpc::ByteBuffer& bytes, Clock::time_point start) ABSL_LOCKS_EXCLUDED(mu_);
  // Step 3.
  void Answer(deltaserve::v1::SessionResponse response) ABSL_LOCKS_EXCLUDED(mu_);
  // The call_paths.h callback of call `id`: records it as `rpc` (time since
  // `start`), puts its answer into `slot` (or a CallError) and Answer()s.
  template <typename Result>
  absl::AnyInvocable<void(ModelMetrics*, absl::StatusOr<Result>) &&> AnswerTo(
      uint64_t id, Rpc rpc, Clock::time_point start,
      Result* (deltaserve::v1::SessionResponse::*slot)());
  // Step 5: the first reason to end wins.
  void EndLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Registry: Pin() keeps the reactor alive until Close(), which is step 5
  // with UNAVAILABLE and drops the pin (and may delete the reactor).
  void Pin() ABSL_LOCKS_EXCLUDED(mu_);
  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  // True if OnDone has run and nothing holds the reactor any more.
  bool DeletableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ && unanswered_ == 0 && pins_ == 0 && starting_ == 0 && !dispatching_;
  }

  const ModelRegistry* const models_;
  ModelMetrics* const unknown_model_;
  SessionRegistry* const registry_;
  const size_t max_in_flight_;
  const Clock::time_point start_;
  const std::string peer_;  // The client's address (ModelMetrics::NoteSubmitter).

  grpc::ByteBuffer read_buffer_;  // Written by gRPC while reading_.

  // Lock order: SessionRegistry::CloseAll pins each session under its own mu_.
  absl::Mutex mu_ ABSL_ACQUIRED_AFTER(SessionRegistry::mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;  // Client half-closed.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;      // writes_.front() in flight.
  std::deque<grpc::ByteBuffer> writes_ ABSL_GUARDED_BY(mu_);
  size_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  int starting_ ABSL_GUARDED_BY(mu_) = 0;  // Decided ops not yet performed.
  // OnReadDone is dispatching the call it read: no next read yet (step 4),
  // and the reactor stays alive until it is done.
  bool dispatching_ ABSL_GUARDED_BY(mu_) = false;
  int pins_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<grpc::Status> ending_ ABSL_GUARDED_BY(mu_);  // Step 5.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode finish_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::UNKNOWN;
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // OnDone has run.
};

// A Session that ends at once with `status` (e.g. PERMISSION_DENIED), before
// reading anything; deletes itself in OnDone.
class FinishedBidiReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit FinishedBidiReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_SESSION_REACTOR_H_
