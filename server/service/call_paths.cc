#include "deltaserve/server/service/call_paths.h"

#include <memory>
#include <utility>

#include "deltaserve/proto/wire.h"
#include "deltaserve/server/service/convert.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;

v1::SubmitDeltaResponse ToProto(const SubmitResult& result) {
  v1::SubmitDeltaResponse answer;
  answer.set_version(result.version);
  answer.set_surrogate_loss(result.surrogate_loss);
  answer.set_staleness(result.staleness);
  answer.set_stepped(result.stepped);
  answer.set_duplicate(result.duplicate);
  // Only when asked for (0 x 0 otherwise, and then left unset).
  if (result.input_gradient.rows() != 0) {
    wire::MatrixToProto(result.input_gradient, answer.mutable_input_gradient());
  }
  return answer;
}

}  // namespace

void StartForward(const ModelRegistry& models, ModelMetrics* unknown_model,
                  const v1::ForwardRequest& request, ForwardDone done) {
  absl::StatusOr<ServedModel*> model = models.Find(request.model());
  if (!model.ok()) return std::move(done)(unknown_model, model.status());
  ModelMetrics* metrics = (*model)->metrics;
  absl::StatusOr<model::Matrix> inputs = wire::MatrixFromProto("inputs", request.inputs());
  if (!inputs.ok()) return std::move(done)(metrics, inputs.status());
  // Enqueue either takes `done` (and calls it once) or refuses and leaves it
  // uncalled; the shared pointer lets this frame answer the refusal.
  auto shared = std::make_shared<ForwardDone>(std::move(done));
  const absl::Status queued = (*model)->batcher->Enqueue(
      *std::move(inputs), [shared, metrics](absl::StatusOr<ForwardResult> result) {
        if (!result.ok()) return std::move(*shared)(metrics, result.status());
        v1::ForwardResponse response;
        wire::MatrixToProto(result->outputs, response.mutable_outputs());
        response.set_version(result->version);
        metrics->AddForwardRows(static_cast<uint64_t>(result->outputs.rows()));
        std::move (*shared)(metrics, std::move(response));
      });
  if (!queued.ok()) std::move (*shared)(metrics, queued);
}

void StartSubmit(const ModelRegistry& models, ModelMetrics* unknown_model,
                 const v1::SubmitDeltaRequest& request, absl::string_view peer, SubmitDone done) {
  absl::StatusOr<ServedModel*> model = models.Find(request.model());
  ModelMetrics* metrics = model.ok() ? (*model)->metrics : unknown_model;
  if (model.ok()) metrics->NoteSubmitter(peer);
  auto reject = [metrics](SubmitDone& answer, const absl::Status& status) {
    metrics->RecordSubmissionRejected(RejectReasonFromStatus(status.code()));
    std::move(answer)(metrics, status);
  };
  if (!model.ok()) return reject(done, model.status());
  if ((*model)->upstream != nullptr) {  // A relay: the upstream validates and applies it.
    auto shared = std::make_shared<SubmitDone>(std::move(done));
    (*model)->upstream->Submit(
        request, [shared, reject, metrics](absl::StatusOr<v1::SubmitDeltaResponse> answer) {
          if (!answer.ok()) return reject(*shared, answer.status());
          std::move (*shared)(metrics, *std::move(answer));
        });
    return;
  }
  absl::StatusOr<Submission> submission = SubmissionFromProto(request);
  if (!submission.ok()) return reject(done, submission.status());
  auto shared = std::make_shared<SubmitDone>(std::move(done));
  ServedModel* served = *model;
  const bool return_parameters = request.return_parameters();
  const absl::Status queued = (*model)->trainer->Submit(
      *std::move(submission),
      [shared, reject, metrics, served, return_parameters](absl::StatusOr<SubmitResult> result) {
        if (!result.ok()) return reject(*shared, result.status());
        v1::SubmitDeltaResponse answer = ToProto(*result);
        // A step is published before its answers run (server/core/trainer.h),
        // so the newest snapshot is at least the answer's version.
        if (return_parameters) {
          ToParameterUpdate(served->spec.name(), *served->trainer->snapshot(),
                            answer.mutable_parameters());
        }
        std::move (*shared)(metrics, std::move(answer));
      });
  if (!queued.ok()) reject(*shared, queued);
}

void StartInputGradient(const ModelRegistry& models, ModelMetrics* unknown_model,
                        const v1::InputGradientRequest& request, InputGradientDone done) {
  absl::StatusOr<ServedModel*> model = models.Find(request.model());
  if (!model.ok()) return std::move(done)(unknown_model, model.status());
  ModelMetrics* metrics = (*model)->metrics;
  absl::StatusOr<model::Matrix> inputs = wire::MatrixFromProto("inputs", request.inputs());
  if (!inputs.ok()) return std::move(done)(metrics, inputs.status());
  absl::StatusOr<model::Matrix> deltas = wire::MatrixFromProto("deltas", request.deltas());
  if (!deltas.ok()) return std::move(done)(metrics, deltas.status());
  // As in StartForward: the shared pointer lets this frame answer a refusal.
  auto shared = std::make_shared<InputGradientDone>(std::move(done));
  const absl::Status queued = (*model)->batcher->EnqueueInputGradient(
      *std::move(inputs), *std::move(deltas),
      [shared, metrics](absl::StatusOr<InputGradientResult> result) {
        if (!result.ok()) return std::move(*shared)(metrics, result.status());
        v1::InputGradientResponse response;
        wire::MatrixToProto(result->input_gradient, response.mutable_input_gradient());
        wire::MatrixToProto(result->outputs, response.mutable_outputs());
        response.set_version(result->version);
        std::move (*shared)(metrics, std::move(response));
      });
  if (!queued.ok()) std::move (*shared)(metrics, queued);
}

}  // namespace deltaserve::server
