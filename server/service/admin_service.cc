#include "deltaserve/server/service/admin_service.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/proto/grpc_status.h"
#include "deltaserve/server/service/convert.h"

namespace deltaserve::server {
namespace {

// Admin rpcs change a model's state, which a relay only mirrors.
absl::Status RelayedModel(const ServedModel& model) {
  return absl::FailedPreconditionError(absl::StrCat(
      "model \"", model.spec.name(),
      "\" is mirrored from an upstream server (deltaserve --upstream): send Admin rpcs there"));
}

namespace v1 = ::deltaserve::v1;

grpc::ServerUnaryReactor* Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::Checkpoint(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status denied = authorizer_->Authorize(*context, kCheckpointMethod); !denied.ok()) {
    return Finish(reactor, denied);
  }
  v1::CheckpointRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    return Finish(reactor, status);
  }
  absl::StatusOr<ServedModel*> model = models_->Find(parsed.model());
  if (!model.ok()) return Finish(reactor, model.status());
  if ((*model)->upstream != nullptr) return Finish(reactor, RelayedModel(**model));
  const std::string name = (*model)->spec.name();
  // Runs on the checkpoint writer (or learner) thread; gRPC keeps `response`
  // alive until Finish.
  auto done = [reactor, response, name](absl::StatusOr<CheckpointInfo> written) {
    if (!written.ok()) {
      Finish(reactor, written.status());
      return;
    }
    v1::CheckpointResponse answer;
    answer.set_model(name);
    answer.set_version(written->version);
    answer.set_path(written->path);
    answer.set_bytes(written->bytes);
    SerializeResponse(answer, response);
    Finish(reactor, absl::OkStatus());
  };
  if (absl::Status queued = (*model)->trainer->Checkpoint(std::move(done)); !queued.ok()) {
    return Finish(reactor, queued);
  }
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ImportParameters(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request,
                                                         grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status denied = authorizer_->Authorize(*context, kImportParametersMethod);
      !denied.ok()) {
    return Finish(reactor, denied);
  }
  v1::ImportParametersRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    return Finish(reactor, status);
  }
  absl::StatusOr<ServedModel*> model = models_->Find(parsed.model());
  if (!model.ok()) return Finish(reactor, model.status());
  if ((*model)->upstream != nullptr) return Finish(reactor, RelayedModel(**model));
  std::vector<float> parameters(parsed.parameters().begin(), parsed.parameters().end());
  std::shared_ptr<const model::RunningMeanStd> statistics;
  if (parsed.has_input_statistics()) {
    const model::InputNormalizationConfig& config = (*model)->trainer->options().normalization;
    if (config.kind != model::InputNormalizationConfig::Kind::kRunningMeanStd) {
      return Finish(reactor, absl::InvalidArgumentError(absl::StrCat(
                                 "input_statistics: model \"", (*model)->trainer->name(),
                                 "\" does not normalise its inputs (input_normalization NONE); "
                                 "import without them")));
    }
    // The model's clip and epsilon stay in effect; the request's are ignored.
    const v1::InputStatistics& in = parsed.input_statistics();
    absl::StatusOr<model::RunningMeanStd> parsed_statistics = model::RunningMeanStd::FromStatistics(
        config, std::vector<double>(in.mean().begin(), in.mean().end()),
        std::vector<double>(in.var().begin(), in.var().end()), in.count());
    if (!parsed_statistics.ok()) {
      return Finish(reactor, absl::InvalidArgumentError(absl::StrCat(
                                 "input_statistics: ", parsed_statistics.status().message())));
    }
    statistics = std::make_shared<const model::RunningMeanStd>(*std::move(parsed_statistics));
  }
  auto done = [reactor, response](absl::StatusOr<SubmitResult> applied) {
    if (!applied.ok()) {
      Finish(reactor, applied.status());
      return;
    }
    v1::ImportParametersResponse answer;
    answer.set_version(applied->version);
    SerializeResponse(answer, response);
    Finish(reactor, absl::OkStatus());
  };
  if (absl::Status queued = (*model)->trainer->ImportParameters(
          std::move(parameters), std::move(statistics), std::move(done));
      !queued.ok()) {
    return Finish(reactor, queued);
  }
  return reactor;
}

}  // namespace deltaserve::server
