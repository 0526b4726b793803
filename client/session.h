// Session: the client side of one deltaserve.v1.Trainer/Session stream
// (TrainerClient::OpenSession) — Forward, SubmitDelta and InputGradient calls issued from
// any thread, many in flight on one stream, each answered through its own
// callback or future. One stream pays gRPC's per-call cost once instead of
// once per call.
//
//   DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<client::Session> session, client->OpenSession());
//   std::future<absl::StatusOr<ForwardResult>> y = session->Forward(x);
//   session->SubmitDelta(submission, [](absl::StatusOr<SubmitDeltaResult> r) { ... });
//   absl::StatusOr<ForwardResult> now = session->ForwardSync(x);   // blocking
//
// Answers carry exactly what the unary rpcs return: a per-call error has the
// unary rpc's code and message (FromGrpcStatus), and the stream goes on. If
// the stream itself ends (server shutdown → UNAVAILABLE, cancel, connection
// lost), every unanswered call fails with that status and later calls fail at
// once with it; open a new Session to go on. A SubmitDelta that failed so may
// or may not have been applied: send it again with the same request_id (set
// here when empty) and the server applies it at most once.
//
// Bounded: at most max_in_flight calls are unanswered; issuing one more
// blocks the caller until an answer arrives (so never issue from inside a
// callback while the session is full). The server bounds its side too.
//
// Callbacks run on a gRPC thread, one at a time per session, and must not
// block. Thread-safe.
#ifndef DELTASERVE_CLIENT_SESSION_H_
#define DELTASERVE_CLIENT_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace deltaserve::client {

class Session final : public grpc::ClientBidiReactor<deltaserve::v1::SessionRequest,
                                                     deltaserve::v1::SessionResponse> {
 public:
  using ForwardCallback = absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&>;
  using SubmitCallback = absl::AnyInvocable<void(absl::StatusOr<SubmitDeltaResult>) &&>;
  using InputGradientCallback = absl::AnyInvocable<void(absl::StatusOr<InputGradientResult>) &&>;

  // Cancels the stream if it is still open (unanswered calls fail with
  // CANCELLED) and waits until gRPC is done with it. Not from a callback.
  ~Session() override;

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // y = f(X; Θ) at the server's latest version; `model` "" = default model.
  void Forward(const Eigen::Ref<const model::Matrix>& inputs, ForwardCallback done,
               const std::string& model = "") ABSL_LOCKS_EXCLUDED(mu_);
  std::future<absl::StatusOr<ForwardResult>> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                                     const std::string& model = "");
  // Blocking: the answer, or DEADLINE_EXCEEDED after the client's timeout
  // (ClientOptions::timeout; the call itself is not cancelled).
  absl::StatusOr<ForwardResult> ForwardSync(const Eigen::Ref<const model::Matrix>& inputs,
                                            const std::string& model = "");

  // δ for the rows of submission.inputs; answered once applied (as the unary
  // SubmitDelta: ABORTED if too stale, RESOURCE_EXHAUSTED if the queue is
  // full). No retries here: see the top of this file. Metrics that break a
  // rule (DeltaSubmission::metrics): `done` gets INVALID_ARGUMENT at once,
  // on the calling thread, and nothing is sent.
  void SubmitDelta(const DeltaSubmission& submission, SubmitCallback done,
                   const std::string& model = "") ABSL_LOCKS_EXCLUDED(mu_);
  std::future<absl::StatusOr<SubmitDeltaResult>> SubmitDelta(const DeltaSubmission& submission,
                                                             const std::string& model = "");
  absl::StatusOr<SubmitDeltaResult> SubmitDeltaSync(const DeltaSubmission& submission,
                                                    const std::string& model = "");

  // δᵀ·∂y/∂X and y at one version, as TrainerClient::InputGradient; read-only.
  void InputGradient(const Eigen::Ref<const model::Matrix>& inputs,
                     const Eigen::Ref<const model::Matrix>& deltas, InputGradientCallback done,
                     const std::string& model = "") ABSL_LOCKS_EXCLUDED(mu_);
  std::future<absl::StatusOr<InputGradientResult>> InputGradient(
      const Eigen::Ref<const model::Matrix>& inputs, const Eigen::Ref<const model::Matrix>& deltas,
      const std::string& model = "");
  absl::StatusOr<InputGradientResult> InputGradientSync(
      const Eigen::Ref<const model::Matrix>& inputs, const Eigen::Ref<const model::Matrix>& deltas,
      const std::string& model = "");

  // Calls issued and not yet answered.
  size_t in_flight() const ABSL_LOCKS_EXCLUDED(mu_);

  // Half-closes the stream once every issued call has been sent, waits for
  // every answer and for the server to end the stream; returns its status
  // (OK normally). Later calls fail with FAILED_PRECONDITION. Idempotent.
  // Not from a callback.
  absl::Status Close() ABSL_LOCKS_EXCLUDED(mu_);

  // gRPC reactions.
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  friend class TrainerClient;
  using Callback = std::variant<ForwardCallback, SubmitCallback, InputGradientCallback>;

  // What Advance decided under mu_, done after releasing it (gRPC may run a
  // reaction inline from inside these calls).
  struct Actions {
    const deltaserve::v1::SessionRequest* write = nullptr;
    bool writes_done = false;
    bool remove_hold = false;
    int count() const { return int{write != nullptr} + int{writes_done} + int{remove_hold}; }
  };

  // Starts the stream on `stub` (which must stay alive while it runs).
  Session(deltaserve::v1::Trainer::StubInterface::async_interface* stub, size_t max_in_flight,
          absl::Duration sync_timeout);

  // Queues `request` (its id set here) with `done`, or fails `done` at once.
  void Issue(deltaserve::v1::SessionRequest request, Callback done) ABSL_LOCKS_EXCLUDED(mu_);
  void Advance(absl::FunctionRef<void()> update) ABSL_LOCKS_EXCLUDED(mu_);
  Actions DecideLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why a call cannot be issued now, if it cannot.
  std::optional<absl::Status> RefusalLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Fail(Callback& done, const absl::Status& status);
  static void Deliver(Callback& done, deltaserve::v1::SessionResponse& response);

  grpc::ClientContext context_;
  const size_t max_in_flight_;
  const absl::Duration sync_timeout_;
  deltaserve::v1::SessionResponse response_;  // Written by gRPC while a read is in flight.

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Callback> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<deltaserve::v1::SessionRequest> writes_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // writes_.front() in flight.
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_ ABSL_GUARDED_BY(mu_) = true;
  int starting_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);  // Set by OnDone.
  absl::Notification done_;                                        // OnDone has run.
};

}  // namespace deltaserve::client

#endif  // DELTASERVE_CLIENT_SESSION_H_
