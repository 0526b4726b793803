// Spec and config validation, ParameterCount, CheckFinite.
#include "deltaserve/model/spec.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/model/validate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::model {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

MlpSpec ValidSpec() {
  MlpSpec spec;
  spec.input_dim = 4;
  spec.layers = {{8, Activation::kRelu}, {2, Activation::kIdentity}};
  return spec;
}

void ExpectInvalid(const absl::Status& status, const std::string& message_part) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(message_part));
}

TEST(ValidateMlpSpec, AcceptsValidSpecAndCountsParameters) {
  EXPECT_TRUE(ValidateMlpSpec(ValidSpec()).ok());
  EXPECT_EQ(ParameterCount(ValidSpec()), 8u * 5 + 2u * 9);
}

TEST(MultiplyAddsPerRow, CountsEachLayersWeightsButNotItsBiases) {
  EXPECT_EQ(MultiplyAddsPerRow(ValidSpec()), 8u * 4 + 2u * 8);
}

TEST(ValidateMlpSpec, RejectsBadSpecsSayingWhatWasExpected) {
  MlpSpec spec = ValidSpec();
  spec.input_dim = 0;
  ExpectInvalid(ValidateMlpSpec(spec), "input_dim: expected > 0, got 0");
  spec = ValidSpec();
  spec.layers.clear();
  ExpectInvalid(ValidateMlpSpec(spec), "expected at least one layer");
  spec = ValidSpec();
  spec.layers[1].units = 0;
  ExpectInvalid(ValidateMlpSpec(spec), "layers[1].units: expected > 0, got 0");
  spec = ValidSpec();
  spec.layers[0].activation = static_cast<Activation>(17);
  ExpectInvalid(ValidateMlpSpec(spec), "layers[0].activation: expected identity, tanh, relu or");
  spec = ValidSpec();
  spec.input_dim = 100000;
  spec.layers = {{100000, Activation::kTanh}};
  ExpectInvalid(ValidateMlpSpec(spec), "parameters in total");
}

TEST(ValidateOptimizerConfig, AcceptsDefaultsAndEveryKind) {
  OptimizerConfig config;
  EXPECT_TRUE(ValidateOptimizerConfig(config).ok());
  config.kind = OptimizerConfig::Kind::kMomentum;
  config.momentum = 0.9f;
  config.nesterov = true;
  EXPECT_TRUE(ValidateOptimizerConfig(config).ok());
  config.nesterov = false;
  config.kind = OptimizerConfig::Kind::kAdamW;
  config.weight_decay = 0.01f;
  config.clip_norm = 1.0f;
  EXPECT_TRUE(ValidateOptimizerConfig(config).ok());
}

TEST(ValidateOptimizerConfig, RejectsNonFiniteAndOutOfRangeHyperParameters) {
  auto with = [](auto mutate) {
    OptimizerConfig config;
    config.kind = OptimizerConfig::Kind::kAdam;
    mutate(config);
    return ValidateOptimizerConfig(config);
  };
  ExpectInvalid(with([](auto& c) { c.learning_rate = 0; }), "learning_rate: expected");
  ExpectInvalid(with([](auto& c) { c.learning_rate = kNaN; }), "learning_rate");
  ExpectInvalid(with([](auto& c) { c.learning_rate = kInf; }), "learning_rate");
  ExpectInvalid(with([](auto& c) { c.weight_decay = -1; }), "weight_decay");
  ExpectInvalid(with([](auto& c) { c.clip_norm = kNaN; }), "clip_norm");
  ExpectInvalid(with([](auto& c) { c.beta1 = 1; }), "beta1: expected a value in [0, 1)");
  ExpectInvalid(with([](auto& c) { c.beta2 = kNaN; }), "beta2");
  ExpectInvalid(with([](auto& c) { c.epsilon = 0; }), "epsilon");
  ExpectInvalid(with([](auto& c) { c.nesterov = true; }), "nesterov");
  ExpectInvalid(with([](auto& c) { c.kind = static_cast<OptimizerConfig::Kind>(9); }),
                "optimizer.kind");
  ExpectInvalid(with([](auto& c) {
                  c.kind = OptimizerConfig::Kind::kMomentum;
                  c.momentum = 0;
                  c.nesterov = true;
                }),
                "expected momentum > 0 with nesterov");
  ExpectInvalid(with([](auto& c) {
                  c.kind = OptimizerConfig::Kind::kMomentum;
                  c.momentum = -0.5f;
                }),
                "momentum");
}

TEST(ValidateSurrogateConfig, RejectsBadScaleAndEnums) {
  SurrogateConfig config;
  EXPECT_TRUE(ValidateSurrogateConfig(config).ok());
  config.delta_scale = kNaN;
  ExpectInvalid(ValidateSurrogateConfig(config), "delta_scale: expected a finite value > 0");
  config.delta_scale = -1;
  ExpectInvalid(ValidateSurrogateConfig(config), "delta_scale");
  config = SurrogateConfig{};
  config.mode = static_cast<SurrogateConfig::Mode>(5);
  ExpectInvalid(ValidateSurrogateConfig(config), "surrogate.mode");
}

TEST(ActivationName, NamesEveryActivation) {
  EXPECT_STREQ(ActivationName(Activation::kIdentity), "identity");
  EXPECT_STREQ(ActivationName(Activation::kTanh), "tanh");
  EXPECT_STREQ(ActivationName(Activation::kRelu), "relu");
  EXPECT_STREQ(ActivationName(Activation::kSigmoid), "sigmoid");
}

TEST(CheckFinite, AcceptsFiniteAndNamesFirstBadIndex) {
  const std::vector<float> good = {0.0f, -1e30f, 3.5f};
  EXPECT_TRUE(CheckFinite("inputs", good).ok());
  EXPECT_TRUE(CheckFinite("inputs", {}).ok());
  const std::vector<float> bad = {1.0f, 2.0f, kInf, kNaN};
  ExpectInvalid(CheckFinite("deltas", bad), "deltas: expected finite values, got inf at index 2");
}

// The scan goes block by block; the first bad value is named wherever it
// sits: at either edge of a block, in the last, short block, or after an
// earlier bad value of another kind in the same block.
TEST(CheckFinite, NamesFirstBadIndexAcrossBlocks) {
  const float kLargest = std::numeric_limits<float>::max();
  for (size_t bad_at : {size_t{0}, size_t{255}, size_t{256}, size_t{511}, size_t{1000}}) {
    std::vector<float> values(1001, kLargest);  // Largest finite: exponent bits 0xfe.
    values[bad_at] = -kInf;
    if (bad_at + 1 < values.size()) values[bad_at + 1] = kNaN;
    ExpectInvalid(CheckFinite("g", values),
                  absl::StrCat("g: expected finite values, got -inf at index ", bad_at));
  }
  std::vector<float> values(700, -kLargest);
  values[699] = kNaN;
  ExpectInvalid(CheckFinite("g", values), "g: expected finite values, got nan at index 699");
  values[699] = std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(CheckFinite("g", values).ok());
}

}  // namespace
}  // namespace deltaserve::model
