// ModelRegistry: the models one server serves, each a Trainer plus the
// WeightHub its learner publishes to and its metrics, looked up by name
// ("" = the first).
#ifndef DELTASERVE_SERVER_CORE_MODEL_REGISTRY_H_
#define DELTASERVE_SERVER_CORE_MODEL_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "deltaserve/v1/config.pb.h"
#include "server/core/metrics.h"
#include "server/core/trainer.h"
#include "server/core/weight_hub.h"

namespace deltaserve::server {

struct ServedModel {
  deltaserve::v1::ModelSpec spec;  // As configured, defaults filled.
  std::unique_ptr<WeightHub> hub;  // Declared before trainer: outlives its publishes.
  std::unique_ptr<Trainer> trainer;
  // Resolved once at load; never null; owned by the registry's ServerMetrics.
  ModelMetrics* metrics = nullptr;
};

class ModelRegistry {
 public:
  // `config` must have passed PrepareServerConfig (defaults filled,
  // validated; it is not validated again here beyond what Trainer::Create
  // checks). Starts one learner per model; every learner passes `gate`
  // (TrainerOptions::gate) if it is not null. Each model records into
  // metrics->ForModel(name); `metrics` must not be null and must outlive
  // the registry. A non-empty `state_dir` keeps each model's state in
  // state_dir/<name> (restored here; see Trainer::Create for its errors).
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Create(
      const deltaserve::v1::ServerConfig& config, ServerMetrics* metrics,
      std::shared_ptr<LearnerGate> gate = nullptr, const std::string& state_dir = "");

  // "" → the default (first) model; NOT_FOUND (ModelNotFound) for unknown
  // names. The pointer lives as long as the registry.
  absl::StatusOr<ServedModel*> Find(absl::string_view name) const;

  const std::vector<std::string>& names() const { return names_; }
  const std::vector<std::unique_ptr<ServedModel>>& models() const { return models_; }

  // Shutdown, in this order: watch streams end (hubs closed), then learners
  // stop (queued submissions fail with UNAVAILABLE). Idempotent.
  void CloseHubs();
  void StopTrainers();
  // After CloseHubs: blocks until every model's watch streams have ended
  // (true) or `deadline` passes (false).
  bool AwaitWatchersGone(absl::Time deadline) const;

 private:
  ModelRegistry() = default;

  std::vector<std::unique_ptr<ServedModel>> models_;
  std::vector<std::string> names_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_MODEL_REGISTRY_H_
