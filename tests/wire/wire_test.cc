#include "deltaserve/proto/wire.h"

#include "gtest/gtest.h"

namespace deltaserve::wire {
namespace {

namespace v1 = ::deltaserve::v1;

v1::ModelSpec TwoLayerSpec() {
  v1::ModelSpec spec;
  spec.set_name("m");
  spec.set_input_dim(4);
  spec.set_seed(99);
  auto* hidden = spec.add_layers();
  hidden->set_units(16);
  hidden->set_activation(v1::ACTIVATION_RELU);
  auto* out = spec.add_layers();
  out->set_units(2);
  out->set_activation(v1::ACTIVATION_SIGMOID);
  return spec;
}

TEST(MlpSpecFromProto, CopiesDimensionsActivationsAndSeed) {
  auto spec = MlpSpecFromProto(TwoLayerSpec());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->input_dim, 4);
  EXPECT_EQ(spec->seed, 99u);
  ASSERT_EQ(spec->layers.size(), 2u);
  EXPECT_EQ(spec->layers[0].units, 16);
  EXPECT_EQ(spec->layers[0].activation, model::Activation::kRelu);
  EXPECT_EQ(spec->layers[1].units, 2);
  EXPECT_EQ(spec->layers[1].activation, model::Activation::kSigmoid);
  EXPECT_EQ(model::ParameterCount(*spec), 16u * 5 + 2u * 17);
}

TEST(MlpSpecFromProto, MapsEveryActivation) {
  const std::pair<v1::Activation, model::Activation> pairs[] = {
      {v1::ACTIVATION_IDENTITY, model::Activation::kIdentity},
      {v1::ACTIVATION_TANH, model::Activation::kTanh},
      {v1::ACTIVATION_RELU, model::Activation::kRelu},
      {v1::ACTIVATION_SIGMOID, model::Activation::kSigmoid},
  };
  for (const auto& [wire, core] : pairs) {
    v1::ModelSpec proto = TwoLayerSpec();
    proto.mutable_layers(0)->set_activation(wire);
    auto spec = MlpSpecFromProto(proto);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->layers[0].activation, core);
  }
}

TEST(MlpSpecFromProto, UnspecifiedActivationNamesTheLayer) {
  v1::ModelSpec proto = TwoLayerSpec();
  proto.mutable_layers(1)->set_activation(v1::ACTIVATION_UNSPECIFIED);
  auto spec = MlpSpecFromProto(proto);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("layers[1]"), absl::string_view::npos) << spec.status();
}

TEST(MlpSpecFromProto, RejectsWhatTheModelCoreRejects) {
  v1::ModelSpec no_input = TwoLayerSpec();
  no_input.set_input_dim(0);
  EXPECT_EQ(MlpSpecFromProto(no_input).status().code(), absl::StatusCode::kInvalidArgument);
  v1::ModelSpec no_layers = TwoLayerSpec();
  no_layers.clear_layers();
  EXPECT_EQ(MlpSpecFromProto(no_layers).status().code(), absl::StatusCode::kInvalidArgument);
  v1::ModelSpec zero_units = TwoLayerSpec();
  zero_units.mutable_layers(0)->set_units(0);
  EXPECT_EQ(MlpSpecFromProto(zero_units).status().code(), absl::StatusCode::kInvalidArgument);
}

// Enum values outside the contract reach the model core's checks, which name
// the field and the value (one message per condition).
TEST(MlpSpecFromProto, UnknownActivationValueIsRejectedByTheModelCore) {
  v1::ModelSpec proto = TwoLayerSpec();
  proto.mutable_layers(0)->set_activation(static_cast<v1::Activation>(17));
  auto spec = MlpSpecFromProto(proto);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("layers[0].activation: expected identity, tanh, relu or"),
            absl::string_view::npos)
      << spec.status();
  EXPECT_NE(spec.status().message().find("17"), absl::string_view::npos) << spec.status();
}

TEST(OptimizerConfigFromProto, UnspecifiedKindIsSgdAndUnknownKindIsRejected) {
  v1::OptimizerConfig proto;
  proto.set_learning_rate(0.1f);
  auto config = OptimizerConfigFromProto(proto);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->kind, model::OptimizerConfig::Kind::kSgd);
  EXPECT_EQ(config->learning_rate, 0.1f);
  proto.set_kind(static_cast<v1::OptimizerConfig::Kind>(9));
  auto bad = OptimizerConfigFromProto(proto);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("optimizer.kind: expected SGD, MOMENTUM, ADAM or ADAMW"),
            absl::string_view::npos)
      << bad.status();
}

TEST(SurrogateConfigFromProto, UnspecifiedModeIsCurrent) {
  v1::SurrogateConfig proto;
  proto.set_delta_scale(1);
  auto config = SurrogateConfigFromProto(proto);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, model::SurrogateConfig::Mode::kCurrent);
  EXPECT_EQ(config->reduction, model::SurrogateConfig::Reduction::kSum);
  proto.set_mode(v1::SurrogateConfig::ANCHORED);
  EXPECT_EQ(SurrogateConfigFromProto(proto)->mode, model::SurrogateConfig::Mode::kAnchored);
}

TEST(SurrogateConfigFromProto, UnknownModeOrReductionIsRejected) {
  v1::SurrogateConfig proto;
  proto.set_delta_scale(1);
  proto.set_mode(static_cast<v1::SurrogateConfig::Mode>(5));
  auto bad_mode = SurrogateConfigFromProto(proto);
  EXPECT_NE(bad_mode.status().message().find("surrogate.mode: expected ANCHORED or CURRENT"),
            absl::string_view::npos)
      << bad_mode.status();
  proto.set_mode(v1::SurrogateConfig::CURRENT);
  proto.set_reduction(static_cast<v1::SurrogateConfig::Reduction>(7));
  auto bad_reduction = SurrogateConfigFromProto(proto);
  EXPECT_NE(bad_reduction.status().message().find("surrogate.reduction: expected SUM or MEAN"),
            absl::string_view::npos)
      << bad_reduction.status();
}

TEST(ObjectiveFromProto, UnspecifiedIsMinimizeAndUnknownIsRejected) {
  EXPECT_EQ(*ObjectiveFromProto(v1::OBJECTIVE_UNSPECIFIED), model::Objective::kMinimize);
  EXPECT_EQ(*ObjectiveFromProto(v1::MAXIMIZE), model::Objective::kMaximize);
  EXPECT_EQ(ObjectiveFromProto(static_cast<v1::Objective>(4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (model::Objective o : {model::Objective::kMinimize, model::Objective::kMaximize}) {
    EXPECT_EQ(*ObjectiveFromProto(ObjectiveToProto(o)), o);
  }
}

TEST(MatrixFromProto, CopiesRowMajorData) {
  v1::Matrix proto;
  proto.set_rows(2);
  proto.set_cols(3);
  for (float v : {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}) proto.add_data(v);
  absl::StatusOr<model::Matrix> matrix = MatrixFromProto("inputs", proto);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  ASSERT_EQ(matrix->rows(), 2);
  ASSERT_EQ(matrix->cols(), 3);
  EXPECT_EQ((*matrix)(0, 2), 3.f);
  EXPECT_EQ((*matrix)(1, 0), 4.f);
}

TEST(MatrixFromProto, WrongDataSizeSaysWhatWasExpected) {
  v1::Matrix proto;
  proto.set_rows(2);
  proto.set_cols(3);
  proto.add_data(1.f);
  absl::StatusOr<model::Matrix> matrix = MatrixFromProto("deltas", proto);
  EXPECT_EQ(matrix.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(matrix.status().message(), "deltas: expected rows*cols = 2*3 = 6 values, got 1");
}

TEST(MatrixToProto, CopiesABlockOfALargerMatrixRowByRow) {
  model::Matrix big(3, 4);
  big << 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12;
  v1::Matrix proto;
  proto.add_data(42.f);  // replaced, not appended to
  MatrixToProto(big.block(1, 1, 2, 2), &proto);
  EXPECT_EQ(proto.rows(), 2u);
  EXPECT_EQ(proto.cols(), 2u);
  ASSERT_EQ(proto.data_size(), 4);
  EXPECT_EQ(proto.data(0), 6.f);
  EXPECT_EQ(proto.data(1), 7.f);
  EXPECT_EQ(proto.data(2), 10.f);
  EXPECT_EQ(proto.data(3), 11.f);
}

}  // namespace
}  // namespace deltaserve::wire
