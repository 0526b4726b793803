// TrainerService: the deltaserve.v1.Trainer gRPC service over a
// ModelRegistry. Each handler validates the request, calls the core
// (Trainer / WeightHub), converts, and Finishes; none blocks. SubmitDelta
// finishes later, from the model's learner thread, once the δ is applied.
// WatchParameters is a raw (ByteBuffer) method so that every watcher of a
// version writes the same pre-serialized bytes.
#ifndef DELTASERVE_SERVER_TRAINER_SERVICE_H_
#define DELTASERVE_SERVER_TRAINER_SERVICE_H_

#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/model_registry.h"

namespace deltaserve::server {

class TrainerService final : public deltaserve::v1::Trainer::WithRawCallbackMethod_WatchParameters<
                                 deltaserve::v1::Trainer::CallbackService> {
 public:
  // `models` must outlive the service.
  explicit TrainerService(ModelRegistry* models) : models_(models) {}

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const deltaserve::v1::GetModelInfoRequest* request,
                                         deltaserve::v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const deltaserve::v1::ForwardRequest* request,
                                    deltaserve::v1::ForwardResponse* response) override;
  grpc::ServerUnaryReactor* SubmitDelta(grpc::CallbackServerContext* context,
                                        const deltaserve::v1::SubmitDeltaRequest* request,
                                        deltaserve::v1::SubmitDeltaResponse* response) override;
  grpc::ServerUnaryReactor* GetParameters(grpc::CallbackServerContext* context,
                                          const deltaserve::v1::GetParametersRequest* request,
                                          deltaserve::v1::ParameterUpdate* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchParameters(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;

 private:
  // The bodies of the handlers above, in core terms.
  absl::Status ModelInfo(const deltaserve::v1::GetModelInfoRequest& request,
                         deltaserve::v1::ModelInfo* response) const;
  absl::Status RunForward(const deltaserve::v1::ForwardRequest& request,
                          deltaserve::v1::ForwardResponse* response) const;
  // OK: `reactor` will be finished by the learner. Error: not queued.
  absl::Status QueueSubmission(const deltaserve::v1::SubmitDeltaRequest& request,
                               deltaserve::v1::SubmitDeltaResponse* response,
                               grpc::ServerUnaryReactor* reactor) const;
  absl::Status Parameters(const deltaserve::v1::GetParametersRequest& request,
                          deltaserve::v1::ParameterUpdate* response) const;

  ModelRegistry* const models_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_TRAINER_SERVICE_H_
