// The work behind a Forward, a SubmitDelta and an InputGradient, shared by
// the unary handlers
// and the Session stream, so that both answer the same, fail with the same
// code and message, and record the same model metrics (forward rows,
// submissions rejected by reason). Recording the rpc itself is the caller's.
//
// Each Start* resolves the request's model (NOT_FOUND), converts its matrices
// (INVALID_ARGUMENT) and hands it to the core — Forward to the model's
// ForwardBatcher, SubmitDelta to Trainer::Submit; InputGradient runs
// Trainer::InputGradient at once — and returns at once.
// `done` is called exactly once, with the metrics the call counts under (the
// model's, or the unknown-model bucket) and the answer or the error: before
// Start* returns (errors found there; the unbatched Forward path), from the
// model's batcher thread (Forward) or from its learner thread (SubmitDelta).
// So `done` must not block, and must not take a lock its caller holds.
#ifndef DELTASERVE_SERVER_SERVICE_CALL_PATHS_H_
#define DELTASERVE_SERVER_SERVICE_CALL_PATHS_H_

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/v1/trainer.pb.h"

namespace deltaserve::server {

using ForwardDone =
    absl::AnyInvocable<void(ModelMetrics*, absl::StatusOr<deltaserve::v1::ForwardResponse>) &&>;
using SubmitDone =
    absl::AnyInvocable<void(ModelMetrics*, absl::StatusOr<deltaserve::v1::SubmitDeltaResponse>) &&>;
using InputGradientDone =
    absl::AnyInvocable<void(ModelMetrics*,
                            absl::StatusOr<deltaserve::v1::InputGradientResponse>) &&>;

// Where a relay's model sends its submissions (ServedModel::upstream;
// server/relay/relay.h): Submit answers `done` exactly once, from any thread,
// with the upstream's answer or its error (same code); never blocks.
class SubmitForwarder {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<deltaserve::v1::SubmitDeltaResponse>) &&>;
  virtual ~SubmitForwarder() = default;
  virtual void Submit(const deltaserve::v1::SubmitDeltaRequest& request, Done done) = 0;
};

// `models` and `unknown_model` must outlive every call.
void StartForward(const ModelRegistry& models, ModelMetrics* unknown_model,
                  const deltaserve::v1::ForwardRequest& request, ForwardDone done);

// Every submission that is not applied is counted by reason before `done`.
// A relay's model (ServedModel::upstream set) forwards the request as it is.
// `peer`: the caller's address (ModelMetrics::NoteSubmitter). With
// request.return_parameters, an OK answer carries the newest snapshot's
// parameters, copied on the thread that answers (the learner's, or the
// journal's with persistence).
void StartSubmit(const ModelRegistry& models, ModelMetrics* unknown_model,
                 const deltaserve::v1::SubmitDeltaRequest& request, absl::string_view peer,
                 SubmitDone done);

// Trainer::InputGradient through the model's ForwardBatcher (read-only, never
// waits for the learner): computed on the calling thread, `done` called
// before this returns, when it is cheap; otherwise on one of the model's
// gradient threads, so a large model's backward pass never holds a gRPC
// thread.
void StartInputGradient(const ModelRegistry& models, ModelMetrics* unknown_model,
                        const deltaserve::v1::InputGradientRequest& request,
                        InputGradientDone done);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_CALL_PATHS_H_
