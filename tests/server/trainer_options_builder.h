// TrainerOptions for tests and fuzz targets, built in one place:
//
//   TrainerOptions options = TrainerOptionsBuilder("lin", /*input_dim=*/2)
//                                .Layers({{2, model::Activation::kIdentity}})
//                                .Seed(7)
//                                .Sgd(0.1f)
//                                .Build();
//
// What a test does not set is what a ModelSpec with only those fields set
// gives (the config defaults, proto/config_defaults.h; SGD at 0.01). No gRPC.
#ifndef DELTASERVE_TESTS_SERVER_TRAINER_OPTIONS_BUILDER_H_
#define DELTASERVE_TESTS_SERVER_TRAINER_OPTIONS_BUILDER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "deltaserve/model/spec.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/persist/file_system.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::server::testing {

class TrainerOptionsBuilder {
 public:
  // A model named `name` whose rows have `input_dim` values; add Layers.
  TrainerOptionsBuilder(std::string name, int input_dim) {
    options_.name = std::move(name);
    options_.mlp.input_dim = input_dim;
  }

  TrainerOptionsBuilder& Layers(std::vector<model::LayerSpec> layers) {
    options_.mlp.layers = std::move(layers);
    return *this;
  }
  TrainerOptionsBuilder& Seed(uint64_t seed) {
    options_.mlp.seed = seed;
    return *this;
  }
  TrainerOptionsBuilder& Sgd(float learning_rate) {
    return Optimizer(model::OptimizerConfig::Kind::kSgd, learning_rate);
  }
  // torch's betas and epsilon (model::OptimizerConfig's: 0.9, 0.999, 1e-8).
  TrainerOptionsBuilder& Adam(float learning_rate) {
    return Optimizer(model::OptimizerConfig::Kind::kAdam, learning_rate);
  }
  // The optimizer's learning-rate schedule (model/schedule.h).
  TrainerOptionsBuilder& Schedule(const model::LearningRateScheduleConfig& schedule) {
    options_.optimizer.schedule = schedule;
    return *this;
  }
  TrainerOptionsBuilder& ClipNorm(float clip_norm) {
    options_.optimizer.clip_norm = clip_norm;
    return *this;
  }
  TrainerOptionsBuilder& Surrogate(
      model::SurrogateConfig::Mode mode,
      model::SurrogateConfig::Reduction reduction = model::SurrogateConfig::Reduction::kSum) {
    options_.surrogate.mode = mode;
    options_.surrogate.reduction = reduction;
    return *this;
  }
  TrainerOptionsBuilder& SamplesPerStep(uint32_t rows) {
    options_.samples_per_step = rows;
    return *this;
  }
  TrainerOptionsBuilder& MaxStaleness(uint64_t versions) {
    options_.max_staleness = versions;
    return *this;
  }
  // Input normalisation RUNNING_MEAN_STD with this clip and epsilon.
  TrainerOptionsBuilder& Normalize(float clip = 10.0f, float epsilon = 1e-8f) {
    options_.normalization.kind = model::InputNormalizationConfig::Kind::kRunningMeanStd;
    options_.normalization.clip = clip;
    options_.normalization.epsilon = epsilon;
    return *this;
  }
  TrainerOptionsBuilder& StalenessScaledLr() {
    options_.staleness_scaled_lr = true;
    return *this;
  }
  // Keeps the model's state in `dir` ("" keeps nothing) through `fs` (null:
  // the real file system), with no checkpoints but the ones a test asks for
  // and the initial and final ones. persistence.spec is set by Build.
  TrainerOptionsBuilder& PersistIn(std::string dir, persist::FileSystem* fs = nullptr) {
    options_.persistence.dir = std::move(dir);
    options_.persistence.fs = fs;
    options_.persistence.checkpoint_every_steps = uint64_t{1} << 30;
    return *this;
  }

  // The options; persistence.spec is the part of a ModelSpec a checkpoint
  // compares (name, input_dim, layers, optimizer kind), as the server would
  // store it.
  TrainerOptions Build() const {
    TrainerOptions options = options_;
    deltaserve::v1::ModelSpec& spec = options.persistence.spec;
    spec.set_name(options.name);
    spec.set_input_dim(static_cast<uint32_t>(options.mlp.input_dim));
    for (const model::LayerSpec& layer : options.mlp.layers) {
      deltaserve::v1::LayerSpec* l = spec.add_layers();
      l->set_units(static_cast<uint32_t>(layer.units));
      l->set_activation(ActivationToProto(layer.activation));
    }
    spec.mutable_optimizer()->set_kind(options.optimizer.kind == model::OptimizerConfig::Kind::kAdam
                                           ? deltaserve::v1::OptimizerConfig::ADAM
                                           : deltaserve::v1::OptimizerConfig::SGD);
    if (options.normalization.kind == model::InputNormalizationConfig::Kind::kRunningMeanStd) {
      deltaserve::v1::InputNormalization* n = spec.mutable_input_normalization();
      n->set_kind(deltaserve::v1::InputNormalization::RUNNING_MEAN_STD);
      n->set_clip(options.normalization.clip);
      n->set_epsilon(options.normalization.epsilon);
    }
    return options;
  }

 private:
  TrainerOptionsBuilder& Optimizer(model::OptimizerConfig::Kind kind, float learning_rate) {
    options_.optimizer.kind = kind;
    options_.optimizer.learning_rate = learning_rate;
    return *this;
  }

  static deltaserve::v1::Activation ActivationToProto(model::Activation activation) {
    switch (activation) {
      case model::Activation::kTanh:
        return deltaserve::v1::ACTIVATION_TANH;
      case model::Activation::kRelu:
        return deltaserve::v1::ACTIVATION_RELU;
      case model::Activation::kSigmoid:
        return deltaserve::v1::ACTIVATION_SIGMOID;
      case model::Activation::kIdentity:
        break;
    }
    return deltaserve::v1::ACTIVATION_IDENTITY;
  }

  TrainerOptions options_;
};

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_TRAINER_OPTIONS_BUILDER_H_
