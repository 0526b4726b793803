#include "deltaserve/server/service/trainer_service.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/proto/grpc_status.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/server/service/call_paths.h"
#include "deltaserve/server/service/convert.h"
#include "deltaserve/server/service/watch_reactor.h"
#include "grpcpp/impl/codegen/proto_utils.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Records the rpc, then finishes it (in this order, so the client's reply
// implies the count). Returns `reactor`.
grpc::ServerUnaryReactor* RecordAndFinish(grpc::ServerUnaryReactor* reactor, ModelMetrics* metrics,
                                          Rpc rpc, Clock::time_point start,
                                          const absl::Status& status) {
  metrics->RecordRpc(rpc, static_cast<int>(status.code()), SecondsSince(start));
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// A SubmitDelta refused before it reached the core (denied, or bytes that
// do not parse): counted by reason and recorded, then finished.
grpc::ServerUnaryReactor* RejectSubmission(grpc::ServerUnaryReactor* reactor, ModelMetrics* metrics,
                                           Clock::time_point start, const absl::Status& status) {
  metrics->RecordSubmissionRejected(RejectReasonFromStatus(status.code()));
  return RecordAndFinish(reactor, metrics, Rpc::kSubmitDelta, start, status);
}

// A WatchParameters stream that ends before it starts (bad request, unknown
// model): recorded with its status, then finished.
grpc::ServerWriteReactor<grpc::ByteBuffer>* RefuseWatch(ModelMetrics* metrics,
                                                        Clock::time_point start,
                                                        grpc::Status status) {
  metrics->RecordRpc(Rpc::kWatchParameters, static_cast<int>(status.error_code()),
                     SecondsSince(start));
  return new FinishedWriteReactor(std::move(status));
}

}  // namespace

TrainerService::TrainerService(ModelRegistry* models, ServerMetrics* metrics,
                               uint32_t max_watchers_per_model, const Authorizer* authorizer,
                               uint32_t max_parameter_waiters_per_model, const History* history)
    : models_(models),
      history_(history),
      authorizer_(authorizer),
      unknown_model_(metrics->UnknownModel()),
      max_watchers_per_model_(max_watchers_per_model),
      max_parameter_waiters_per_model_(max_parameter_waiters_per_model) {
  for (const auto& model : models_->models()) {
    encoders_.emplace(model.get(), std::make_unique<EncodedUpdateCache>(model->spec.name()));
  }
}

grpc::ServerUnaryReactor* TrainerService::GetModelInfo(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  if (absl::Status denied = authorizer_->Authorize(*context, kGetModelInfoMethod); !denied.ok()) {
    return RecordAndFinish(context->DefaultReactor(), unknown_model_, Rpc::kGetModelInfo, start,
                           denied);
  }
  v1::GetModelInfoRequest parsed;
  absl::StatusOr<ServedModel*> model = ParseAndFind(*request, &parsed);
  if (model.ok()) {
    v1::ModelInfo info;
    ModelInfo(**model, &info);
    SerializeResponse(info, response);
  }
  return RecordAndFinish(context->DefaultReactor(), MetricsFor(model), Rpc::kGetModelInfo, start,
                         model.status());
}

grpc::ServerUnaryReactor* TrainerService::Forward(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status denied = authorizer_->Authorize(*context, kForwardMethod); !denied.ok()) {
    return RecordAndFinish(reactor, unknown_model_, Rpc::kForward, start, denied);
  }
  v1::ForwardRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    return RecordAndFinish(reactor, unknown_model_, Rpc::kForward, start, status);
  }
  // Runs on the batcher thread (or here); gRPC keeps `response` alive until Finish.
  StartForward(*models_, unknown_model_, parsed,
               [reactor, response, start](ModelMetrics* metrics,
                                          absl::StatusOr<v1::ForwardResponse> answer) {
                 if (answer.ok()) SerializeResponse(*answer, response);
                 RecordAndFinish(reactor, metrics, Rpc::kForward, start, answer.status());
               });
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::SubmitDelta(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status denied = authorizer_->Authorize(*context, kSubmitDeltaMethod); !denied.ok()) {
    return RejectSubmission(reactor, unknown_model_, start, denied);
  }
  v1::SubmitDeltaRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    return RejectSubmission(reactor, unknown_model_, start, status);
  }
  // Runs on the learner thread (errors: here); rejections are counted there.
  StartSubmit(*models_, unknown_model_, parsed, context->peer(),
              [reactor, response, start](ModelMetrics* metrics,
                                         absl::StatusOr<v1::SubmitDeltaResponse> answer) {
                if (answer.ok()) SerializeResponse(*answer, response);
                RecordAndFinish(reactor, metrics, Rpc::kSubmitDelta, start, answer.status());
              });
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::GetParameters(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  if (absl::Status denied = authorizer_->Authorize(*context, kGetParametersMethod); !denied.ok()) {
    return RecordAndFinish(context->DefaultReactor(), unknown_model_, Rpc::kGetParameters, start,
                           denied);
  }
  v1::GetParametersRequest parsed;
  absl::StatusOr<ServedModel*> model = ParseAndFind(*request, &parsed);
  if (!model.ok()) {
    return RecordAndFinish(context->DefaultReactor(), unknown_model_, Rpc::kGetParameters, start,
                           model.status());
  }
  const std::shared_ptr<const Snapshot> snapshot = (*model)->trainer->snapshot();
  if (parsed.min_version() <= snapshot->version) {
    *response = SerializeParameterUpdate((*model)->spec.name(), *snapshot);
    return RecordAndFinish(context->DefaultReactor(), (*model)->metrics, Rpc::kGetParameters, start,
                           absl::OkStatus());
  }
  // The long-poll: parked in the hub, answered from its notifier (or at
  // shutdown, cancellation or the deadline); no thread waits.
  return new ParameterWaitReactor(
      context, response, (*model)->hub.get(), encoders_.at(*model).get(), (*model)->metrics,
      &parameter_waiters_, parsed.min_version(), max_parameter_waiters_per_model_, start);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TrainerService::WatchParameters(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  const Clock::time_point start = Clock::now();
  if (absl::Status denied = authorizer_->Authorize(*context, kWatchParametersMethod);
      !denied.ok()) {
    return RefuseWatch(unknown_model_, start, ToGrpcStatus(denied));
  }
  v1::WatchParametersRequest parsed;
  absl::StatusOr<ServedModel*> model = ParseAndFind(*request, &parsed);
  if (!model.ok()) return RefuseWatch(unknown_model_, start, ToGrpcStatus(model.status()));
  return new WatchReactor((*model)->hub.get(), encoders_.at(*model).get(), (*model)->metrics,
                          max_watchers_per_model_);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* TrainerService::Session(
    grpc::CallbackServerContext* context) {
  if (absl::Status denied = authorizer_->Authorize(*context, kSessionMethod); !denied.ok()) {
    unknown_model_->RecordRpc(Rpc::kSession, static_cast<int>(denied.code()), 0.0);
    return new FinishedBidiReactor(ToGrpcStatus(denied));
  }
  return new SessionReactor(models_, unknown_model_, &sessions_,
                            SessionReactor::kDefaultMaxInFlight, context->peer());
}

grpc::ServerUnaryReactor* TrainerService::ListModels(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  if (absl::Status denied = authorizer_->Authorize(*context, kListModelsMethod); !denied.ok()) {
    return RecordAndFinish(context->DefaultReactor(), unknown_model_, Rpc::kListModels, start,
                           denied);
  }
  v1::ListModelsRequest parsed;
  absl::Status status = ParseRequest(*request, &parsed);
  if (status.ok()) {
    v1::ListModelsResponse list;
    // models() is in configuration order: the default model first.
    for (const auto& model : models_->models()) ModelInfo(*model, list.add_models());
    SerializeResponse(list, response);
  }
  return RecordAndFinish(context->DefaultReactor(), unknown_model_, Rpc::kListModels, start,
                         status);
}

grpc::ServerUnaryReactor* TrainerService::InputGradient(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status denied = authorizer_->Authorize(*context, kInputGradientMethod); !denied.ok()) {
    return RecordAndFinish(reactor, unknown_model_, Rpc::kInputGradient, start, denied);
  }
  v1::InputGradientRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    return RecordAndFinish(reactor, unknown_model_, Rpc::kInputGradient, start, status);
  }
  // Answered here when cheap, else from one of the model's gradient threads
  // (read-only, from a snapshot).
  StartInputGradient(*models_, unknown_model_, parsed,
                     [reactor, response, start](ModelMetrics* metrics,
                                                absl::StatusOr<v1::InputGradientResponse> answer) {
                       if (answer.ok()) SerializeResponse(*answer, response);
                       RecordAndFinish(reactor, metrics, Rpc::kInputGradient, start,
                                       answer.status());
                     });
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::GetMetricsHistory(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* request,
                                                            grpc::ByteBuffer* response) {
  const Clock::time_point start = Clock::now();
  if (absl::Status denied = authorizer_->Authorize(*context, kGetMetricsHistoryMethod);
      !denied.ok()) {
    return RecordAndFinish(context->DefaultReactor(), unknown_model_, Rpc::kGetMetricsHistory,
                           start, denied);
  }
  v1::GetMetricsHistoryRequest parsed;
  absl::StatusOr<ServedModel*> model = ParseAndFind(*request, &parsed);
  if (model.ok()) {
    v1::GetMetricsHistoryResponse answer;
    const std::string& name = (*model)->spec.name();
    answer.set_model(name);
    if (history_ != nullptr) {
      // Read() returns the series sorted by name.
      for (const auto& [series, points] : history_->Read(name, parsed.since_unix_ms())) {
        v1::MetricSeries* out = answer.add_series();
        out->set_name(series);
        out->mutable_unix_ms()->Reserve(static_cast<int>(points.size()));
        out->mutable_values()->Reserve(static_cast<int>(points.size()));
        for (const HistoryPoint& p : points) {
          out->add_unix_ms(p.unix_ms);
          out->add_values(p.value);
        }
      }
    }
    SerializeResponse(answer, response);
  }
  return RecordAndFinish(context->DefaultReactor(), MetricsFor(model), Rpc::kGetMetricsHistory,
                         start, model.status());
}

void TrainerService::ModelInfo(const ServedModel& model, v1::ModelInfo* response) {
  // One snapshot: version, steps and rate belong together.
  const std::shared_ptr<const Snapshot> snapshot = model.trainer->snapshot();
  *response->mutable_spec() = model.spec;
  response->set_version(snapshot->version);
  response->set_parameter_count(model.trainer->mlp().parameter_count());
  response->set_output_dim(static_cast<uint32_t>(model.trainer->mlp().output_dim()));
  response->set_optimizer_steps(snapshot->optimizer_steps);
  response->set_learning_rate(snapshot->learning_rate);
}

}  // namespace deltaserve::server
