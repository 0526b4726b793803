#include "proto/wire.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace deltaserve::wire {
namespace v1 = ::deltaserve::v1;

absl::StatusOr<model::Matrix> MatrixFromProto(absl::string_view what, const v1::Matrix& proto) {
  const uint64_t expected = static_cast<uint64_t>(proto.rows()) * proto.cols();
  if (expected != static_cast<uint64_t>(proto.data_size())) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected rows·cols = ", proto.rows(),
                                                   "·", proto.cols(), " = ", expected,
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

absl::StatusOr<model::Activation> ActivationFromProto(size_t layer, v1::Activation activation) {
  switch (activation) {
    case v1::ACTIVATION_IDENTITY:
      return model::Activation::kIdentity;
    case v1::ACTIVATION_TANH:
      return model::Activation::kTanh;
    case v1::ACTIVATION_RELU:
      return model::Activation::kRelu;
    case v1::ACTIVATION_SIGMOID:
      return model::Activation::kSigmoid;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "layers[", layer,
          "].activation: expected ACTIVATION_IDENTITY, ACTIVATION_TANH, ACTIVATION_RELU or "
          "ACTIVATION_SIGMOID, got ",
          activation == v1::ACTIVATION_UNSPECIFIED ? "ACTIVATION_UNSPECIFIED"
                                                   : absl::StrCat("enum value ", activation)));
  }
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
    ASSIGN_OR_RETURN(model::Activation activation, ActivationFromProto(l, layer.activation()));
    mlp.layers.push_back(model::LayerSpec{static_cast<int>(layer.units()), activation});
  }
  RETURN_IF_ERROR(model::ValidateMlpSpec(mlp));
  return mlp;
}

}  // namespace deltaserve::wire
