// Agreement with PyTorch (tools/make_golden.py) to 1e-5 relative: forward,
// backward (parameter and input gradients) and five optimizer steps of every
// kind, with and without weight decay and clipping; the input gradient
// through a running-mean/std normalisation; and, to 1e-6 relative, the
// learning-rate schedules against torch's schedulers.
#include <cmath>
#include <string>
#include <vector>

#include "deltaserve/model/mlp.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/model/optimizer.h"
#include "deltaserve/model/schedule.h"
#include "deltaserve/tests/model/golden_file.h"
#include "gtest/gtest.h"

#ifndef DELTASERVE_GOLDEN_DIR
#error "DELTASERVE_GOLDEN_DIR must name tests/model/golden"
#endif

namespace deltaserve::model {
namespace {

using testing::GoldenCase;
using testing::ReadGoldenFile;

constexpr double kRelTol = 1e-5;
// Absolute floor for values that are (nearly) zero, e.g. relu gradients and
// parameters that cancel; every compared value here is O(0.1 .. 10).
constexpr double kAbsTol = 1e-6;

std::string GoldenPath(const std::string& file) {
  return std::string(DELTASERVE_GOLDEN_DIR) + "/" + file;
}

void ExpectClose(absl::Span<const float> actual, absl::Span<const float> expected,
                 const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double tol = kRelTol * std::abs(expected[i]) + kAbsTol;
    EXPECT_NEAR(actual[i], expected[i], tol) << what << " at index " << i;
  }
}

void ExpectClose(const Matrix& actual, const Matrix& expected, const std::string& what) {
  ASSERT_EQ(actual.rows(), expected.rows()) << what;
  ASSERT_EQ(actual.cols(), expected.cols()) << what;
  ExpectClose(absl::MakeConstSpan(actual.data(), actual.size()),
              absl::MakeConstSpan(expected.data(), expected.size()), what);
}

Activation ParseActivation(const std::string& name) {
  if (name == "tanh") return Activation::kTanh;
  if (name == "relu") return Activation::kRelu;
  if (name == "sigmoid") return Activation::kSigmoid;
  EXPECT_EQ(name, "identity");
  return Activation::kIdentity;
}

MlpSpec ParseSpec(const GoldenCase& c) {
  MlpSpec spec;
  spec.input_dim = static_cast<int>(c.Scalar("input_dim").value());
  const std::vector<std::string> tokens = c.Tokens("layers").value();
  for (size_t i = 0; i + 1 < tokens.size(); i += 2) {
    spec.layers.push_back({std::stoi(tokens[i]), ParseActivation(tokens[i + 1])});
  }
  return spec;
}

class GoldenMlpTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenMlpTest, ForwardAndBackwardMatchTorch) {
  auto cases = ReadGoldenFile(GoldenPath("mlp_" + GetParam() + ".txt"));
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 1u);
  const GoldenCase& c = cases->front();
  auto mlp = Mlp::Create(ParseSpec(c));
  ASSERT_TRUE(mlp.ok()) << mlp.status();
  const std::vector<float> params = c.Vector("params").value();
  const Matrix x = c.MatrixRecord("x").value();
  ASSERT_EQ(params.size(), mlp->parameter_count());

  Mlp::Workspace ws;
  ASSERT_TRUE(mlp->Forward(params, x, ws).ok());
  ExpectClose(ws.output(), c.MatrixRecord("y").value(), "forward y");

  std::vector<float> grad(params.size(), 0.0f);
  Matrix dx;
  ASSERT_TRUE(
      mlp->Backward(params, x, ws, c.MatrixRecord("delta").value(), absl::MakeSpan(grad), &dx)
          .ok());
  ExpectClose(grad, c.Vector("grad").value(), "parameter gradient");
  ExpectClose(dx, c.MatrixRecord("dx").value(), "input gradient");
}

INSTANTIATE_TEST_SUITE_P(Architectures, GoldenMlpTest,
                         ::testing::Values("deep", "wide", "single_sample", "linear"));

OptimizerConfig ParseOptimizer(const GoldenCase& c) {
  OptimizerConfig config;
  const std::string kind = c.Tokens("kind").value().at(0);
  if (kind == "sgd") {
    config.kind = OptimizerConfig::Kind::kSgd;
  } else if (kind == "momentum" || kind == "nesterov") {
    config.kind = OptimizerConfig::Kind::kMomentum;
  } else if (kind == "adam") {
    config.kind = OptimizerConfig::Kind::kAdam;
  } else {
    EXPECT_EQ(kind, "adamw");
    config.kind = OptimizerConfig::Kind::kAdamW;
  }
  config.learning_rate = static_cast<float>(c.Scalar("learning_rate").value());
  config.momentum = static_cast<float>(c.Scalar("momentum").value());
  config.nesterov = c.Scalar("nesterov").value() != 0;
  config.beta1 = static_cast<float>(c.Scalar("beta1").value());
  config.beta2 = static_cast<float>(c.Scalar("beta2").value());
  config.epsilon = static_cast<float>(c.Scalar("epsilon").value());
  config.weight_decay = static_cast<float>(c.Scalar("weight_decay").value());
  config.clip_norm = static_cast<float>(c.Scalar("clip_norm").value());
  return config;
}

TEST(GoldenOptimizer, FiveStepsMatchTorchForEveryConfiguration) {
  auto cases = ReadGoldenFile(GoldenPath("optimizers.txt"));
  ASSERT_TRUE(cases.ok()) << cases.status();
  // 5 kinds × {no decay, decay} × {no clipping, clipping}.
  ASSERT_EQ(cases->size(), 20u);
  for (const GoldenCase& c : *cases) {
    SCOPED_TRACE(c.name());
    std::vector<float> params = c.Vector("params0").value();
    auto optimizer = Optimizer::Create(ParseOptimizer(c), params.size());
    ASSERT_TRUE(optimizer.ok()) << optimizer.status();
    for (int step = 1; step <= 5; ++step) {
      const std::string s = std::to_string(step);
      std::vector<float> grad = c.Vector("grad" + s).value();
      auto norm = (*optimizer)->Step(absl::MakeSpan(params), absl::MakeSpan(grad));
      ASSERT_TRUE(norm.ok()) << norm.status();
      const double expected_norm = c.Scalar("norm" + s).value();
      EXPECT_NEAR(*norm, expected_norm, kRelTol * expected_norm) << "norm of step " << s;
      ExpectClose(params, c.Vector("params" + s).value(), "parameters after step " + s);
    }
    EXPECT_EQ((*optimizer)->step_count(), 5);
  }
}

// `key n v0 .. v(n-1)` as doubles (GoldenCase::Vector rounds to float).
std::vector<double> DoubleVector(const GoldenCase& c, const std::string& key) {
  const std::vector<std::string> tokens = c.Tokens(key).value();
  std::vector<double> values;
  for (size_t i = 1; i < tokens.size(); ++i) values.push_back(std::stod(tokens[i]));
  EXPECT_EQ(values.size(), std::stoul(tokens.at(0))) << key;
  return values;
}

LearningRateScheduleConfig ParseSchedule(const GoldenCase& c) {
  using Kind = LearningRateScheduleConfig::Kind;
  const std::string kind = c.Tokens("kind").value().at(0);
  LearningRateScheduleConfig config;
  if (kind == "linear") {
    config.kind = Kind::kLinear;
  } else if (kind == "cosine") {
    config.kind = Kind::kCosine;
  } else if (kind == "step") {
    config.kind = Kind::kStep;
  } else if (kind == "exponential") {
    config.kind = Kind::kExponential;
  } else {
    EXPECT_EQ(kind, "constant");
  }
  config.warmup_steps = static_cast<uint64_t>(c.Scalar("warmup_steps").value());
  config.total_steps = static_cast<uint64_t>(c.Scalar("total_steps").value());
  config.final_learning_rate = static_cast<float>(c.Scalar("final_learning_rate").value());
  config.step_size = static_cast<uint64_t>(c.Scalar("step_size").value());
  config.gamma = static_cast<float>(c.Scalar("gamma").value());
  return config;
}

TEST(GoldenSchedule, ClosedFormsMatchTorchSchedulersWithinTheirRange) {
  auto cases = ReadGoldenFile(GoldenPath("schedules.txt"));
  ASSERT_TRUE(cases.ok()) << cases.status();
  // linear down and up, cosine to a floor and to 0, step, exponential, warmup.
  ASSERT_EQ(cases->size(), 7u);
  for (const GoldenCase& c : *cases) {
    SCOPED_TRACE(c.name());
    auto schedule =
        LearningRateSchedule::Create(ParseSchedule(c), c.Scalar("learning_rate").value());
    ASSERT_TRUE(schedule.ok()) << schedule.status();
    const std::vector<double> rates = DoubleVector(c, "rates");
    ASSERT_GT(rates.size(), 7u);
    for (size_t k = 0; k < rates.size(); ++k) {
      EXPECT_NEAR(schedule->LearningRateAt(k), rates[k], 1e-6 * rates[k]) << "step " << k;
    }
  }
}

// y = mlp(clip((x − mean)/sqrt(var + ε), −c, c)) and ∂(y·δ)/∂x by torch's
// autograd, with some inputs clipped: Normalize, Forward, InputGradient and
// RunningMeanStd::Backward composed by the chain rule.
TEST(GoldenInputGradient, ThroughNormalizationMatchesTorchAutograd) {
  auto cases = ReadGoldenFile(GoldenPath("input_gradient_normalized.txt"));
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 1u);
  const GoldenCase& c = cases->front();
  auto mlp = Mlp::Create(ParseSpec(c));
  ASSERT_TRUE(mlp.ok()) << mlp.status();
  InputNormalizationConfig config;
  config.kind = InputNormalizationConfig::Kind::kRunningMeanStd;
  config.clip = static_cast<float>(c.Scalar("clip").value());
  config.epsilon = static_cast<float>(c.Scalar("epsilon").value());
  auto normalizer = RunningMeanStd::FromStatistics(config, DoubleVector(c, "mean"),
                                                   DoubleVector(c, "var"), /*count=*/1.0);
  ASSERT_TRUE(normalizer.ok()) << normalizer.status();
  const std::vector<float> params = c.Vector("params").value();
  const Matrix x = c.MatrixRecord("x").value();
  const Matrix dx_torch = c.MatrixRecord("dx").value();

  Matrix z;
  ASSERT_TRUE(normalizer->Normalize(x, &z).ok());
  ExpectClose(z, c.MatrixRecord("z").value(), "normalised inputs");
  Mlp::Workspace ws;
  ASSERT_TRUE(mlp->Forward(params, z, ws).ok());
  ExpectClose(ws.output(), c.MatrixRecord("y").value(), "forward y");
  Matrix dz, dx;
  ASSERT_TRUE(mlp->InputGradient(params, z, ws, c.MatrixRecord("delta").value(), &dz).ok());
  ASSERT_TRUE(normalizer->Backward(x, dz, &dx).ok());
  ExpectClose(dx, dx_torch, "input gradient");
  int clipped = 0;
  for (Eigen::Index i = 0; i < dx_torch.size(); ++i) clipped += dx_torch.data()[i] == 0.0f;
  EXPECT_GT(clipped, 0) << "the golden case must clip some inputs";
  EXPECT_LT(clipped, dx_torch.size()) << "and pass others";
}

}  // namespace
}  // namespace deltaserve::model
