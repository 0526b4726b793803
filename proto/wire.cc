#include "deltaserve/proto/wire.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::wire {
namespace v1 = ::deltaserve::v1;

absl::StatusOr<model::Matrix> MatrixFromProto(absl::string_view what, const v1::Matrix& proto) {
  const uint64_t expected = static_cast<uint64_t>(proto.rows()) * proto.cols();
  if (expected != static_cast<uint64_t>(proto.data_size())) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected rows*cols = ", proto.rows(),
                                                   "*", proto.cols(), " = ", expected,
                                                   " values, got ", proto.data_size()));
  }
  model::Matrix matrix(static_cast<Eigen::Index>(proto.rows()),
                       static_cast<Eigen::Index>(proto.cols()));
  std::copy(proto.data().begin(), proto.data().end(), matrix.data());
  return matrix;
}

void MatrixToProto(const Eigen::Ref<const model::Matrix>& matrix, v1::Matrix* proto) {
  proto->set_rows(static_cast<uint32_t>(matrix.rows()));
  proto->set_cols(static_cast<uint32_t>(matrix.cols()));
  auto* data = proto->mutable_data();
  data->Clear();
  data->Reserve(static_cast<int>(matrix.size()));
  for (Eigen::Index r = 0; r < matrix.rows(); ++r) {
    const float* row = matrix.row(r).data();
    data->Add(row, row + matrix.cols());
  }
}

namespace {

// Values outside the contract are passed on as they are: the model core's
// Validate* rejects them and names the value.
template <typename CoreEnum, typename WireEnum>
CoreEnum Unchecked(WireEnum value) {
  return static_cast<CoreEnum>(static_cast<int>(value));
}

absl::StatusOr<model::Activation> ActivationFromProto(size_t layer, v1::Activation activation) {
  switch (activation) {
    case v1::ACTIVATION_UNSPECIFIED:
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", layer,
                       "].activation: expected ACTIVATION_IDENTITY, ACTIVATION_TANH, "
                       "ACTIVATION_RELU or ACTIVATION_SIGMOID, got ACTIVATION_UNSPECIFIED"));
    case v1::ACTIVATION_IDENTITY:
      return model::Activation::kIdentity;
    case v1::ACTIVATION_TANH:
      return model::Activation::kTanh;
    case v1::ACTIVATION_RELU:
      return model::Activation::kRelu;
    case v1::ACTIVATION_SIGMOID:
      return model::Activation::kSigmoid;
    default:
      return Unchecked<model::Activation>(activation);
  }
}

model::OptimizerConfig::Kind OptimizerKindFromProto(v1::OptimizerConfig::Kind kind) {
  using Kind = model::OptimizerConfig::Kind;
  switch (kind) {
    case v1::OptimizerConfig::KIND_UNSPECIFIED:
    case v1::OptimizerConfig::SGD:
      return Kind::kSgd;
    case v1::OptimizerConfig::MOMENTUM:
      return Kind::kMomentum;
    case v1::OptimizerConfig::ADAM:
      return Kind::kAdam;
    case v1::OptimizerConfig::ADAMW:
      return Kind::kAdamW;
    default:
      return Unchecked<Kind>(kind);
  }
}

model::SurrogateConfig::Mode ModeFromProto(v1::SurrogateConfig::Mode mode) {
  using Mode = model::SurrogateConfig::Mode;
  switch (mode) {
    case v1::SurrogateConfig::MODE_UNSPECIFIED:  // CURRENT is the default (docs/surrogate.md).
    case v1::SurrogateConfig::CURRENT:
      return Mode::kCurrent;
    case v1::SurrogateConfig::ANCHORED:
      return Mode::kAnchored;
    default:
      return Unchecked<Mode>(mode);
  }
}

model::SurrogateConfig::Reduction ReductionFromProto(v1::SurrogateConfig::Reduction reduction) {
  using Reduction = model::SurrogateConfig::Reduction;
  switch (reduction) {
    case v1::SurrogateConfig::REDUCTION_UNSPECIFIED:
    case v1::SurrogateConfig::SUM:
      return Reduction::kSum;
    case v1::SurrogateConfig::MEAN:
      return Reduction::kMean;
    default:
      return Unchecked<Reduction>(reduction);
  }
}

model::LearningRateScheduleConfig::Kind ScheduleKindFromProto(v1::LearningRateSchedule::Kind kind) {
  using Kind = model::LearningRateScheduleConfig::Kind;
  switch (kind) {
    case v1::LearningRateSchedule::KIND_UNSPECIFIED:
    case v1::LearningRateSchedule::CONSTANT:
      return Kind::kConstant;
    case v1::LearningRateSchedule::LINEAR:
      return Kind::kLinear;
    case v1::LearningRateSchedule::COSINE:
      return Kind::kCosine;
    case v1::LearningRateSchedule::STEP:
      return Kind::kStep;
    case v1::LearningRateSchedule::EXPONENTIAL:
      return Kind::kExponential;
    default:
      return Unchecked<Kind>(kind);
  }
}

model::LearningRateScheduleConfig ScheduleFromProto(const v1::LearningRateSchedule& s) {
  model::LearningRateScheduleConfig schedule;
  schedule.kind = ScheduleKindFromProto(s.kind());
  schedule.warmup_steps = s.warmup_steps();
  schedule.total_steps = s.total_steps();
  schedule.final_learning_rate = s.final_learning_rate();
  schedule.step_size = s.step_size();
  schedule.gamma = s.gamma();
  return schedule;
}

}  // namespace

absl::StatusOr<model::MlpSpec> MlpSpecFromProto(const v1::ModelSpec& spec) {
  model::MlpSpec mlp;
  if (spec.input_dim() > static_cast<uint32_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_dim: expected at most ", INT32_MAX, ", got ", spec.input_dim()));
  }
  mlp.input_dim = static_cast<int>(spec.input_dim());
  mlp.seed = spec.seed();
  for (int l = 0; l < spec.layers_size(); ++l) {
    const v1::LayerSpec& layer = spec.layers(l);
    if (layer.units() > static_cast<uint32_t>(INT32_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat("layers[", l, "].units: expected at most ",
                                                     INT32_MAX, ", got ", layer.units()));
    }
    DELTASERVE_ASSIGN_OR_RETURN(model::Activation activation,
                                ActivationFromProto(l, layer.activation()));
    mlp.layers.push_back(model::LayerSpec{static_cast<int>(layer.units()), activation});
  }
  DELTASERVE_RETURN_IF_ERROR(model::ValidateMlpSpec(mlp));
  return mlp;
}

absl::StatusOr<model::OptimizerConfig> OptimizerConfigFromProto(const v1::OptimizerConfig& c) {
  model::OptimizerConfig config;
  config.kind = OptimizerKindFromProto(c.kind());
  config.learning_rate = c.learning_rate();
  config.momentum = c.momentum();
  config.nesterov = c.nesterov();
  config.beta1 = c.beta1();
  config.beta2 = c.beta2();
  config.epsilon = c.epsilon();
  config.weight_decay = c.weight_decay();
  config.clip_norm = c.clip_norm();
  config.schedule = ScheduleFromProto(c.schedule());
  DELTASERVE_RETURN_IF_ERROR(model::ValidateOptimizerConfig(config));
  return config;
}

absl::StatusOr<model::SurrogateConfig> SurrogateConfigFromProto(const v1::SurrogateConfig& c) {
  model::SurrogateConfig config;
  config.mode = ModeFromProto(c.mode());
  config.reduction = ReductionFromProto(c.reduction());
  config.delta_scale = c.delta_scale();
  DELTASERVE_RETURN_IF_ERROR(model::ValidateSurrogateConfig(config));
  return config;
}

absl::StatusOr<model::InputNormalizationConfig> InputNormalizationFromProto(
    const v1::InputNormalization& c) {
  model::InputNormalizationConfig config;
  switch (c.kind()) {
    case v1::InputNormalization::NONE:
      config.kind = model::InputNormalizationConfig::Kind::kNone;
      break;
    case v1::InputNormalization::RUNNING_MEAN_STD:
      config.kind = model::InputNormalizationConfig::Kind::kRunningMeanStd;
      break;
    default:
      config.kind = static_cast<model::InputNormalizationConfig::Kind>(c.kind());
      break;
  }
  config.clip = c.clip();
  config.epsilon = c.epsilon();
  DELTASERVE_RETURN_IF_ERROR(model::ValidateInputNormalizationConfig(config));
  return config;
}

void InputStatisticsToProto(const model::RunningMeanStd& statistics, v1::InputStatistics* proto) {
  proto->Clear();
  proto->mutable_mean()->Add(statistics.mean().begin(), statistics.mean().end());
  proto->mutable_var()->Add(statistics.var().begin(), statistics.var().end());
  proto->set_count(statistics.count());
  proto->set_clip(statistics.clip());
  proto->set_epsilon(statistics.epsilon());
}

absl::StatusOr<model::RunningMeanStd> InputStatisticsFromProto(const v1::InputStatistics& proto,
                                                               int input_dim) {
  if (input_dim > 0 && (proto.mean_size() != input_dim || proto.var_size() != input_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("input_statistics: expected ", input_dim,
                                                   " mean and var values (input_dim), got ",
                                                   proto.mean_size(), " and ", proto.var_size()));
  }
  model::InputNormalizationConfig config;
  config.kind = model::InputNormalizationConfig::Kind::kRunningMeanStd;
  config.clip = proto.clip();
  config.epsilon = proto.epsilon();
  absl::StatusOr<model::RunningMeanStd> statistics = model::RunningMeanStd::FromStatistics(
      config, std::vector<double>(proto.mean().begin(), proto.mean().end()),
      std::vector<double>(proto.var().begin(), proto.var().end()), proto.count());
  if (!statistics.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_statistics: ", statistics.status().message()));
  }
  return statistics;
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

v1::Objective ObjectiveToProto(model::Objective objective) {
  switch (objective) {
    case model::Objective::kMinimize:
      return v1::MINIMIZE;
    case model::Objective::kMaximize:
      return v1::MAXIMIZE;
  }
  return v1::OBJECTIVE_UNSPECIFIED;
}

}  // namespace deltaserve::wire
