#include "server/convert.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "proto/wire.h"

namespace deltaserve::server {
namespace v1 = ::deltaserve::v1;

absl::StatusOr<model::OptimizerConfig> OptimizerConfigFromProto(const v1::OptimizerConfig& c) {
  model::OptimizerConfig config;
  switch (c.kind()) {
    case v1::OptimizerConfig::KIND_UNSPECIFIED:
    case v1::OptimizerConfig::SGD:
      config.kind = model::OptimizerConfig::Kind::kSgd;
      break;
    case v1::OptimizerConfig::MOMENTUM:
      config.kind = model::OptimizerConfig::Kind::kMomentum;
      break;
    case v1::OptimizerConfig::ADAM:
      config.kind = model::OptimizerConfig::Kind::kAdam;
      break;
    case v1::OptimizerConfig::ADAMW:
      config.kind = model::OptimizerConfig::Kind::kAdamW;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer.kind: expected SGD, MOMENTUM, ADAM or ADAMW, got enum value ", c.kind()));
  }
  config.learning_rate = c.learning_rate();
  config.momentum = c.momentum();
  config.nesterov = c.nesterov();
  config.beta1 = c.beta1();
  config.beta2 = c.beta2();
  config.epsilon = c.epsilon();
  config.weight_decay = c.weight_decay();
  config.clip_norm = c.clip_norm();
  RETURN_IF_ERROR(model::ValidateOptimizerConfig(config));
  return config;
}

absl::StatusOr<model::SurrogateConfig> SurrogateConfigFromProto(const v1::SurrogateConfig& c) {
  model::SurrogateConfig config;
  switch (c.mode()) {
    case v1::SurrogateConfig::MODE_UNSPECIFIED:
    case v1::SurrogateConfig::ANCHORED:
      config.mode = model::SurrogateConfig::Mode::kAnchored;
      break;
    case v1::SurrogateConfig::CURRENT:
      config.mode = model::SurrogateConfig::Mode::kCurrent;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("surrogate.mode: expected ANCHORED or CURRENT, got enum value ", c.mode()));
  }
  switch (c.reduction()) {
    case v1::SurrogateConfig::REDUCTION_UNSPECIFIED:
    case v1::SurrogateConfig::SUM:
      config.reduction = model::SurrogateConfig::Reduction::kSum;
      break;
    case v1::SurrogateConfig::MEAN:
      config.reduction = model::SurrogateConfig::Reduction::kMean;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "surrogate.reduction: expected SUM or MEAN, got enum value ", c.reduction()));
  }
  config.delta_scale = c.delta_scale();
  RETURN_IF_ERROR(model::ValidateSurrogateConfig(config));
  return config;
}

absl::StatusOr<model::Objective> ObjectiveFromProto(v1::Objective objective) {
  switch (objective) {
    case v1::OBJECTIVE_UNSPECIFIED:
    case v1::MINIMIZE:
      return model::Objective::kMinimize;
    case v1::MAXIMIZE:
      return model::Objective::kMaximize;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("objective: expected MINIMIZE or MAXIMIZE, got enum value ", objective));
  }
}

absl::StatusOr<TrainerOptions> TrainerOptionsFromProto(const v1::ModelSpec& spec) {
  TrainerOptions options;
  options.name = spec.name();
  ASSIGN_OR_RETURN(options.mlp, wire::MlpSpecFromProto(spec));
  ASSIGN_OR_RETURN(options.optimizer, OptimizerConfigFromProto(spec.optimizer()));
  ASSIGN_OR_RETURN(options.surrogate, SurrogateConfigFromProto(spec.surrogate()));
  options.samples_per_step = spec.samples_per_step();
  options.max_staleness = spec.max_staleness();
  options.staleness_scaled_lr = spec.staleness_scaled_lr();
  options.queue_capacity = spec.queue_capacity();
  return options;
}

absl::StatusOr<Submission> SubmissionFromProto(const v1::SubmitDeltaRequest& request) {
  Submission submission;
  ASSIGN_OR_RETURN(submission.inputs, wire::MatrixFromProto("inputs", request.inputs()));
  ASSIGN_OR_RETURN(submission.deltas, wire::MatrixFromProto("deltas", request.deltas()));
  ASSIGN_OR_RETURN(submission.acted, wire::MatrixFromProto("outputs", request.outputs()));
  const bool acted_omitted = request.outputs().rows() == 0 && request.outputs().cols() == 0;
  if (!acted_omitted && submission.acted.rows() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("outputs: expected ", submission.inputs.rows(),
                     " rows (one per input row) or an empty matrix (ỹ = y), got 0 rows and ",
                     request.outputs().cols(), " columns"));
  }
  submission.version = request.version();
  ASSIGN_OR_RETURN(submission.objective, ObjectiveFromProto(request.objective()));
  return submission;
}

void ToParameterUpdate(absl::string_view model, const Snapshot& snapshot,
                       v1::ParameterUpdate* update) {
  update->set_model(std::string(model));
  update->set_version(snapshot.version);
  auto* params = update->mutable_parameters();
  params->Resize(static_cast<int>(snapshot.parameters.size()), 0.0f);
  std::copy(snapshot.parameters.begin(), snapshot.parameters.end(), params->mutable_data());
}

grpc::ByteBuffer SerializeParameterUpdate(absl::string_view model, const Snapshot& snapshot) {
  v1::ParameterUpdate update;
  ToParameterUpdate(model, snapshot, &update);
  grpc::ByteBuffer bytes;
  bool own_buffer = false;
  // Serialising a valid in-memory message into a fresh buffer cannot fail.
  (void)grpc::SerializationTraits<v1::ParameterUpdate>::Serialize(update, &bytes, &own_buffer);
  return bytes;
}

}  // namespace deltaserve::server
