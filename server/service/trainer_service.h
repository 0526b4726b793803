// TrainerService: the deltaserve.v1.Trainer gRPC service over a
// ModelRegistry. Each handler validates the request, calls the core
// (Trainer / WeightHub), converts, and Finishes; none blocks. SubmitDelta
// finishes later, from the model's learner thread, once the δ is applied.
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

#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/core/metrics.h"
#include "server/core/model_registry.h"
#include "server/service/auth.h"
#include "server/service/convert.h"
#include "server/service/encoded_update.h"

namespace deltaserve::server {

namespace internal {
namespace v1 = ::deltaserve::v1;
using RawTrainerService = v1::Trainer::WithRawCallbackMethod_GetModelInfo<
    v1::Trainer::WithRawCallbackMethod_Forward<v1::Trainer::WithRawCallbackMethod_SubmitDelta<
        v1::Trainer::WithRawCallbackMethod_GetParameters<
            v1::Trainer::WithRawCallbackMethod_WatchParameters<v1::Trainer::CallbackService>>>>>;
}  // namespace internal

class TrainerService final : public internal::RawTrainerService {
 public:
  // `models` and `metrics` (not null) must outlive the service. Each model
  // takes at most `max_watchers_per_model` WatchParameters streams at once
  // (0 = no limit); one more is RESOURCE_EXHAUSTED. `authorizer` (not null)
  // must outlive the service too.
  TrainerService(ModelRegistry* models, ServerMetrics* metrics, uint32_t max_watchers_per_model,
                 const Authorizer* authorizer);

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

 private:
  using Clock = std::chrono::steady_clock;

  // The bodies of the handlers above, in core terms, for a served model.
  static void ModelInfo(const ServedModel& model, deltaserve::v1::ModelInfo* response);
  static absl::Status RunForward(const ServedModel& model,
                                 const deltaserve::v1::ForwardRequest& request,
                                 deltaserve::v1::ForwardResponse* response);
  // OK: `reactor` will be finished (and the rpc recorded) by the learner's
  // callback. Error: not queued; the caller finishes.
  static absl::Status QueueSubmission(const ServedModel& model,
                                      const deltaserve::v1::SubmitDeltaRequest& request,
                                      grpc::ByteBuffer* response, grpc::ServerUnaryReactor* reactor,
                                      Clock::time_point start);

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
  const Authorizer* const authorizer_;
  ModelMetrics* const unknown_model_;  // Requests naming a model not served.
  const uint32_t max_watchers_per_model_;
  // One per served model, made at construction (read-only afterwards).
  std::map<const ServedModel*, std::unique_ptr<EncodedUpdateCache>> encoders_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_TRAINER_SERVICE_H_
