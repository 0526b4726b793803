// TrainerService: the deltaserve.v1.Trainer gRPC service over a
// ModelRegistry. Each handler validates the request, calls the core
// (Trainer / ForwardBatcher / WeightHub), converts, and Finishes; none blocks.
// Forward finishes from the model's batcher thread (or in the handler when
// max_batch_rows is 1), SubmitDelta from its learner thread once the δ is
// applied (server/service/call_paths.h, shared with the Session stream).
// Every method is raw (ByteBuffer in and out): a request that does not parse
// is INVALID_ARGUMENT and counted (gRPC's typed handlers answer an empty
// UNIMPLEMENTED), and every watcher of a version writes the same
// pre-serialized bytes.
//
// Metrics: every rpc is counted by status code with its wall time (unary:
// handler start to Finish — SubmitDelta: until the learner's callback;
// WatchParameters: the stream's lifetime) under the model's ModelMetrics, or
// the unknown-model bucket when the model is not served. Unary rpcs are
// recorded before Finish, so a client holding a reply sees it counted.
// Every SubmitDelta that is not applied is counted by reason.
//
// Every handler first asks the Authorizer (auth.h); a refused call is
// finished with UNAUTHENTICATED / PERMISSION_DENIED before its request is
// parsed, and counted under the unknown-model bucket.
#ifndef DELTASERVE_SERVER_SERVICE_TRAINER_SERVICE_H_
#define DELTASERVE_SERVER_SERVICE_TRAINER_SERVICE_H_

#include <chrono>
#include <map>
#include <memory>

#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/server/service/auth.h"
#include "deltaserve/server/service/convert.h"
#include "deltaserve/server/service/encoded_update.h"
#include "deltaserve/server/service/parameter_wait_reactor.h"
#include "deltaserve/server/service/session_reactor.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"

namespace deltaserve::server {

namespace internal {
namespace v1 = ::deltaserve::v1;
using RawTrainerService = v1::Trainer::WithRawCallbackMethod_GetModelInfo<
    v1::Trainer::WithRawCallbackMethod_Forward<v1::Trainer::WithRawCallbackMethod_SubmitDelta<
        v1::Trainer::WithRawCallbackMethod_GetParameters<
            v1::Trainer::WithRawCallbackMethod_WatchParameters<
                v1::Trainer::WithRawCallbackMethod_Session<
                    v1::Trainer::WithRawCallbackMethod_ListModels<
                        v1::Trainer::WithRawCallbackMethod_InputGradient<
                            v1::Trainer::WithRawCallbackMethod_GetMetricsHistory<
                                v1::Trainer::Service>>>>>>>>>;
}  // namespace internal

class TrainerService final : public internal::RawTrainerService {
 public:
  // `models` and `metrics` (not null) must outlive the service. Each model
  // takes at most `max_watchers_per_model` WatchParameters streams at once
  // (0 = no limit); one more is RESOURCE_EXHAUSTED. `authorizer` (not null)
  // must outlive the service too.
  // A GetParameters with min_version above the version waits (parked in the
  // model's WeightHub, no thread held); each model takes at most
  // `max_parameter_waiters_per_model` of them (0 = no limit).
  // `history` (null: GetMetricsHistory answers empty series) must outlive
  // the service.
  TrainerService(ModelRegistry* models, ServerMetrics* metrics, uint32_t max_watchers_per_model,
                 const Authorizer* authorizer, uint32_t max_parameter_waiters_per_model = 0,
                 const History* history = nullptr);

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* SubmitDelta(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetParameters(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchParameters(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Session(
      grpc::CallbackServerContext* context) override;
  // Every served model's ModelInfo, the default first; counted under the
  // unknown-model bucket (model ""), as it names no model.
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* InputGradient(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  // The model's History series (counted under the model, like
  // GetModelInfo).
  grpc::ServerUnaryReactor* GetMetricsHistory(grpc::CallbackServerContext* context,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) override;

  // Shutdown: every open Session ends with UNAVAILABLE, and so does every
  // later one at once (server/service/session_reactor.h). Never blocks.
  void CloseSessions() { sessions_.CloseAll(); }
  // After CloseSessions: true once every Session has ended, false if
  // `deadline` passed first.
  bool AwaitSessionsGone(absl::Time deadline) const { return sessions_.AwaitAllGone(deadline); }
  // After the hubs are closed (which answers every waiting GetParameters
  // with UNAVAILABLE): true once every such call has ended, false if
  // `deadline` passed first.
  bool AwaitParameterWaitersGone(absl::Time deadline) const {
    return parameter_waiters_.AwaitNone(deadline);
  }

 private:
  using Clock = std::chrono::steady_clock;

  // The body of GetModelInfo, in core terms, for a served model.
  static void ModelInfo(const ServedModel& model, deltaserve::v1::ModelInfo* response);

  // The request's model: NOT_FOUND if unknown, or the request's own parse
  // error; `parsed` is the parsed request either way.
  template <typename Request>
  absl::StatusOr<ServedModel*> ParseAndFind(const grpc::ByteBuffer& bytes, Request* parsed) const {
    absl::Status status = ParseRequest(bytes, parsed);
    if (!status.ok()) return status;
    return models_->Find(parsed->model());
  }

  // The metrics a request for `model` is counted under.
  ModelMetrics* MetricsFor(const absl::StatusOr<ServedModel*>& model) const {
    return model.ok() ? (*model)->metrics : unknown_model_;
  }

  ModelRegistry* const models_;
  const History* const history_;
  const Authorizer* const authorizer_;
  ModelMetrics* const unknown_model_;  // Requests naming a model not served.
  const uint32_t max_watchers_per_model_;
  const uint32_t max_parameter_waiters_per_model_;
  // One per served model, made at construction (read-only afterwards).
  std::map<const ServedModel*, std::unique_ptr<EncodedUpdateCache>> encoders_;
  SessionRegistry sessions_;
  ParameterWaiters parameter_waiters_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_TRAINER_SERVICE_H_
