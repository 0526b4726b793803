// ModelRegistry: the models one server serves, each a Trainer plus the
// WeightHub its learner publishes to and its metrics, looked up by name
// ("" = the first).
#ifndef DELTASERVE_SERVER_CORE_MODEL_REGISTRY_H_
#define DELTASERVE_SERVER_CORE_MODEL_REGISTRY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/forward_batcher.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/core/weight_hub.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::server {

struct ServedModel {
  deltaserve::v1::ModelSpec spec;  // As configured, defaults filled.
  std::unique_ptr<WeightHub> hub;  // Declared before trainer: outlives its publishes.
  std::unique_ptr<Trainer> trainer;
  // Every Forward of the model goes through it. Declared after trainer: it
  // holds the Trainer and is destroyed first.
  std::unique_ptr<ForwardBatcher> batcher;
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
  // `state_fs` (null: POSIX) is the file system those directories live on.
  // `history` (optional, must outlive the registry): each learner records
  // its per-step series there (TrainerOptions::history).
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Create(
      const deltaserve::v1::ServerConfig& config, ServerMetrics* metrics,
      std::shared_ptr<LearnerGate> gate = nullptr, const std::string& state_dir = "",
      persist::FileSystem* state_fs = nullptr, History* history = nullptr);

  // "" → the default (first) model; INVALID_ARGUMENT (ModelNameTooLong) for a
  // name over kMaxModelNameBytes, before any comparison; NOT_FOUND
  // (ModelNotFound) for unknown names. The pointer lives as long as the registry.
  absl::StatusOr<ServedModel*> Find(absl::string_view name) const;

  const std::vector<std::string>& names() const { return names_; }
  const std::vector<std::unique_ptr<ServedModel>>& models() const { return models_; }

  // Shutdown, in this order: watch streams end (hubs closed), then learners
  // stop (queued submissions fail with UNAVAILABLE) and so do the Forward
  // batchers (queued Forwards fail with UNAVAILABLE). Idempotent.
  void CloseHubs();
  void StopTrainers();
  // After CloseHubs: blocks until every model's watch streams have ended
  // (true) or `deadline` passes (false).
  bool AwaitWatchersGone(absl::Time deadline) const;

  // Called (once per model) when a model stops training because its journal
  // failed (Trainer's on_failed): from a learner or sync thread, must not
  // block. Set it before serving.
  using FailureListener = std::function<void(const std::string& model, const absl::Status&)>;
  void SetFailureListener(FailureListener listener) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ModelRegistry() = default;
  void ModelFailed(const std::string& model, const absl::Status& cause) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  FailureListener on_failed_ ABSL_GUARDED_BY(mu_);

  std::vector<std::unique_ptr<ServedModel>> models_;
  std::vector<std::string> names_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_MODEL_REGISTRY_H_
