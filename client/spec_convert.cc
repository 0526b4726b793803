#include "client/spec_convert.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"

namespace deltaserve::client {
namespace {

absl::StatusOr<model::Activation> ActivationFromProto(deltaserve::v1::Activation activation,
                                                      int layer) {
  switch (activation) {
    case deltaserve::v1::ACTIVATION_IDENTITY:
      return model::Activation::kIdentity;
    case deltaserve::v1::ACTIVATION_TANH:
      return model::Activation::kTanh;
    case deltaserve::v1::ACTIVATION_RELU:
      return model::Activation::kRelu;
    case deltaserve::v1::ACTIVATION_SIGMOID:
      return model::Activation::kSigmoid;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, ": activation ", static_cast<int>(activation),
                       " is not one of IDENTITY, TANH, RELU, SIGMOID"));
  }
}

}  // namespace

absl::StatusOr<model::MlpSpec> MlpSpecFromProto(const deltaserve::v1::ModelSpec& spec) {
  if (spec.input_dim() > static_cast<uint32_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_dim ", spec.input_dim(), " does not fit in int32"));
  }
  model::MlpSpec out;
  out.input_dim = static_cast<int>(spec.input_dim());
  out.seed = spec.seed();
  out.layers.reserve(spec.layers_size());
  for (int i = 0; i < spec.layers_size(); ++i) {
    const deltaserve::v1::LayerSpec& layer = spec.layers(i);
    if (layer.units() > static_cast<uint32_t>(INT32_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", i, ": units ", layer.units(), " does not fit in int32"));
    }
    model::LayerSpec converted;
    converted.units = static_cast<int>(layer.units());
    ASSIGN_OR_RETURN(converted.activation, ActivationFromProto(layer.activation(), i));
    out.layers.push_back(converted);
  }
  RETURN_IF_ERROR(model::ValidateMlpSpec(out));
  return out;
}

}  // namespace deltaserve::client
