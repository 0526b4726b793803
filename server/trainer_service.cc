#include "server/trainer_service.h"

#include <utility>

#include "grpcpp/impl/codegen/proto_utils.h"
#include "model/status_macros.h"
#include "server/convert.h"
#include "server/grpc_status.h"
#include "server/watch_reactor.h"

namespace deltaserve::server {
namespace v1 = ::deltaserve::v1;

grpc::ServerUnaryReactor* TrainerService::GetModelInfo(grpc::CallbackServerContext* context,
                                                       const v1::GetModelInfoRequest* request,
                                                       v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(ModelInfo(*request, response)));
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::Forward(grpc::CallbackServerContext* context,
                                                  const v1::ForwardRequest* request,
                                                  v1::ForwardResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(RunForward(*request, response)));
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::SubmitDelta(grpc::CallbackServerContext* context,
                                                      const v1::SubmitDeltaRequest* request,
                                                      v1::SubmitDeltaResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status queued = QueueSubmission(*request, response, reactor);
  if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::GetParameters(grpc::CallbackServerContext* context,
                                                        const v1::GetParametersRequest* request,
                                                        v1::ParameterUpdate* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(Parameters(*request, response)));
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TrainerService::WatchParameters(
    grpc::CallbackServerContext* /*context*/, const grpc::ByteBuffer* request) {
  grpc::ByteBuffer copy = *request;  // Deserialize consumes its buffer.
  v1::WatchParametersRequest parsed;
  grpc::Status parse =
      grpc::SerializationTraits<v1::WatchParametersRequest>::Deserialize(&copy, &parsed);
  if (!parse.ok()) return new FinishedWriteReactor(std::move(parse));
  absl::StatusOr<ServedModel*> model = models_->Find(parsed.model());
  if (!model.ok()) return new FinishedWriteReactor(ToGrpcStatus(model.status()));
  return new WatchReactor((*model)->hub.get());
}

absl::Status TrainerService::ModelInfo(const v1::GetModelInfoRequest& request,
                                       v1::ModelInfo* response) const {
  ASSIGN_OR_RETURN(ServedModel * model, models_->Find(request.model()));
  const uint64_t version = model->trainer->snapshot()->version;
  *response->mutable_spec() = model->spec;
  response->set_version(version);
  response->set_parameter_count(model->trainer->mlp().parameter_count());
  response->set_output_dim(static_cast<uint32_t>(model->trainer->mlp().output_dim()));
  response->set_optimizer_steps(version);
  return absl::OkStatus();
}

absl::Status TrainerService::RunForward(const v1::ForwardRequest& request,
                                        v1::ForwardResponse* response) const {
  ASSIGN_OR_RETURN(ServedModel * model, models_->Find(request.model()));
  ASSIGN_OR_RETURN(model::Matrix inputs, MatrixFromProto("inputs", request.inputs()));
  ASSIGN_OR_RETURN(ForwardResult result, model->trainer->Forward(inputs));
  MatrixToProto(result.outputs, response->mutable_outputs());
  response->set_version(result.version);
  return absl::OkStatus();
}

absl::Status TrainerService::QueueSubmission(const v1::SubmitDeltaRequest& request,
                                             v1::SubmitDeltaResponse* response,
                                             grpc::ServerUnaryReactor* reactor) const {
  ASSIGN_OR_RETURN(ServedModel * model, models_->Find(request.model()));
  ASSIGN_OR_RETURN(Submission submission, SubmissionFromProto(request));
  // Runs on the learner thread; gRPC keeps `response` alive until Finish.
  auto done = [response, reactor](absl::StatusOr<SubmitResult> result) {
    if (result.ok()) {
      response->set_version(result->version);
      response->set_surrogate_loss(result->surrogate_loss);
      response->set_staleness(result->staleness);
      response->set_stepped(result->stepped);
    }
    reactor->Finish(ToGrpcStatus(result.status()));
  };
  return model->trainer->Submit(std::move(submission), std::move(done));
}

absl::Status TrainerService::Parameters(const v1::GetParametersRequest& request,
                                        v1::ParameterUpdate* response) const {
  ASSIGN_OR_RETURN(ServedModel * model, models_->Find(request.model()));
  ToParameterUpdate(model->spec.name(), *model->trainer->snapshot(), response);
  return absl::OkStatus();
}

}  // namespace deltaserve::server
