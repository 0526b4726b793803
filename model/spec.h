// Plain C++ mirrors of the wire contract's ModelSpec pieces. model/ depends on
// Eigen and Abseil only; server/ converts protobuf messages to these types.
#ifndef DELTASERVE_MODEL_SPEC_H_
#define DELTASERVE_MODEL_SPEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "deltaserve/model/eigen.h"
#include "deltaserve/model/schedule.h"

namespace deltaserve::model {

// Row-major float32 matrix; rows are samples (same as the wire's Matrix).
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;

enum class Activation { kIdentity, kTanh, kRelu, kSigmoid };

struct LayerSpec {
  int units = 0;
  Activation activation = Activation::kIdentity;
};

// The network: input_dim → layers[0].units → ... → layers.back().units.
struct MlpSpec {
  int input_dim = 0;
  std::vector<LayerSpec> layers;
  uint64_t seed = 0;
};

// The optimizer's and the surrogate's defaults (torch.optim's, and momentum
// 0.9): their one definition. The wire contract's defaults
// (proto/config_defaults.h) are these values.
inline constexpr float kDefaultLearningRate = 0.01f;
inline constexpr float kDefaultMomentum = 0.9f;  // kMomentum: what an unset momentum means.
inline constexpr float kDefaultBeta1 = 0.9f;
inline constexpr float kDefaultBeta2 = 0.999f;
inline constexpr float kDefaultEpsilon = 1e-8f;
inline constexpr float kDefaultDeltaScale = 1.0f;

// torch.optim semantics for the same hyper-parameters. Fields are used as
// given: the defaults of the wire contract (0 → 0.01 etc.) are filled in by
// whoever converts from protobuf.
struct OptimizerConfig {
  enum class Kind { kSgd, kMomentum, kAdam, kAdamW };
  Kind kind = Kind::kSgd;
  float learning_rate = kDefaultLearningRate;
  float momentum = 0.0f;  // kMomentum only.
  bool nesterov = false;  // kMomentum only.
  float beta1 = kDefaultBeta1;
  float beta2 = kDefaultBeta2;
  float epsilon = kDefaultEpsilon;
  float weight_decay = 0.0f;  // L2 for kSgd/kMomentum/kAdam; decoupled for kAdamW.
  float clip_norm = 0.0f;     // Global L2 norm clip before the step; 0 = none.
  // The rate of each step (model/schedule.h); the default is constant at
  // learning_rate.
  LearningRateScheduleConfig schedule;
};

struct SurrogateConfig {
  enum class Mode { kAnchored, kCurrent };
  enum class Reduction { kSum, kMean };
  Mode mode = Mode::kCurrent;              // The default (docs/surrogate.md).
  float delta_scale = kDefaultDeltaScale;  // ε
  Reduction reduction = Reduction::kSum;
};

enum class Objective { kMinimize, kMaximize };

// INVALID_ARGUMENT unless input_dim > 0, at least one layer, every layer has
// units > 0 and a known activation, and the parameter count fits in int32.
absl::Status ValidateMlpSpec(const MlpSpec& spec);

// INVALID_ARGUMENT for non-finite or out-of-range hyper-parameters
// (learning_rate <= 0, betas outside [0, 1), epsilon <= 0, negative
// momentum/weight_decay/clip_norm, nesterov without momentum) and for an
// invalid schedule (ValidateLearningRateSchedule).
absl::Status ValidateOptimizerConfig(const OptimizerConfig& config);

// INVALID_ARGUMENT unless delta_scale is finite and > 0.
absl::Status ValidateSurrogateConfig(const SurrogateConfig& config);

// Number of float32 parameters: Σ units·(fan_in + 1). Spec must be valid.
size_t ParameterCount(const MlpSpec& spec);

// Multiply-adds one row of Forward costs: Σ units·fan_in. Spec must be valid.
size_t MultiplyAddsPerRow(const MlpSpec& spec);

// "tanh", "relu", ... for messages.
const char* ActivationName(Activation activation);

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_SPEC_H_
