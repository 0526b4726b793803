#include "deltaserve/server/core/model_registry.h"

#include <utility>

#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/errors.h"

namespace deltaserve::server {

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Create(
    const deltaserve::v1::ServerConfig& config, ServerMetrics* metrics,
    std::shared_ptr<LearnerGate> gate, const std::string& state_dir, persist::FileSystem* state_fs,
    History* history) {
  auto registry = std::unique_ptr<ModelRegistry>(new ModelRegistry());
  for (const deltaserve::v1::ModelSpec& spec : config.models()) {
    DELTASERVE_ASSIGN_OR_RETURN(TrainerOptions options, TrainerOptionsFromProto(spec));
    auto model = std::make_unique<ServedModel>();
    model->spec = spec;
    model->metrics = metrics->ForModel(spec.name());
    options.metrics = model->metrics;
    options.gate = gate;
    options.history = history;
    DELTASERVE_ASSIGN_OR_RETURN(options.persistence,
                                PersistenceOptionsFromProto(config, spec, state_dir));
    options.persistence.fs = state_fs;
    options.on_failed = [registry = registry.get(), name = spec.name()](const absl::Status& cause) {
      registry->ModelFailed(name, cause);
    };
    model->hub = std::make_unique<WeightHub>(spec.name(), /*initial=*/nullptr);
    WeightHub* hub = model->hub.get();
    DELTASERVE_ASSIGN_OR_RETURN(
        model->trainer,
        Trainer::Create(std::move(options),
                        [hub](std::shared_ptr<const Snapshot> s) { hub->Publish(std::move(s)); }));
    DELTASERVE_ASSIGN_OR_RETURN(ForwardBatchingOptions batching,
                                ForwardBatchingOptionsFromProto(spec));
    DELTASERVE_ASSIGN_OR_RETURN(
        model->batcher, ForwardBatcher::Create(model->trainer.get(), batching, model->metrics));
    hub->Publish(model->trainer->snapshot());
    registry->names_.push_back(spec.name());
    registry->models_.push_back(std::move(model));
  }
  return registry;
}

absl::StatusOr<ServedModel*> ModelRegistry::Find(absl::string_view name) const {
  if (name.size() > kMaxModelNameBytes) return ModelNameTooLong(name);
  if (name.empty()) return models_.front().get();
  for (const auto& model : models_) {
    if (model->spec.name() == name) return model.get();
  }
  return ModelNotFound(name, names_);
}

void ModelRegistry::CloseHubs() {
  for (const auto& model : models_) model->hub->Close();
}

bool ModelRegistry::AwaitWatchersGone(absl::Time deadline) const {
  bool all = true;
  for (const auto& model : models_) all = model->hub->AwaitNoSubscribers(deadline) && all;
  return all;
}

void ModelRegistry::SetFailureListener(FailureListener listener) {
  absl::MutexLock lock(&mu_);
  on_failed_ = std::move(listener);
}

void ModelRegistry::ModelFailed(const std::string& model, const absl::Status& cause) {
  FailureListener listener;
  {
    absl::MutexLock lock(&mu_);
    listener = on_failed_;
  }
  if (listener) listener(model, cause);
}

void ModelRegistry::StopTrainers() {
  for (const auto& model : models_) {
    model->trainer->Stop();
    model->batcher->Stop();
  }
}

}  // namespace deltaserve::server
