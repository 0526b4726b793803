#include "deltaserve/server/core/history_sampler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/server/core/log.h"

namespace deltaserve::server {

std::string HistoryPath(const std::string& state_dir, const std::string& model) {
  return absl::StrCat(state_dir, "/", model, "/history.pb");
}

void LoadHistories(History& history, const std::vector<std::string>& models,
                   const std::string& state_dir, persist::FileSystem* fs) {
  if (state_dir.empty()) return;
  persist::FileSystem& files = fs != nullptr ? *fs : *persist::FileSystem::Default();
  for (const std::string& model : models) {
    const std::string path = HistoryPath(state_dir, model);
    if (absl::Status status = history.Load(model, files, path); !status.ok()) {
      LogWarning("metrics history of model \"", model, "\" not loaded (", status.message(),
                 "): it starts empty");
    }
  }
}

HistorySampler::HistorySampler(History* history, const ModelRegistry* models, std::string state_dir,
                               persist::FileSystem* fs)
    : history_(history),
      models_(models),
      state_dir_(std::move(state_dir)),
      fs_(fs != nullptr ? fs : persist::FileSystem::Default()) {}

HistorySampler::~HistorySampler() { Stop(); }

void HistorySampler::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void HistorySampler::Stop() {
  bool was_started;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    was_started = started_;
  }
  if (was_started) {
    thread_.join();
    SampleOnce(absl::Now());
  }
  SaveAll();
}

void HistorySampler::Loop() {
  absl::Time next_save = absl::Now() + kHistorySaveEvery;
  absl::Time next = absl::Now();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Wakes at the next second, or at once when Stop() sets stopping_.
      const absl::Condition stop(&stopping_);
      if (mu_.AwaitWithDeadline(stop, next + kHistorySampleEvery)) return;
    }
    next = absl::Now();
    SampleOnce(next);
    if (next >= next_save) {
      SaveAll();
      next_save = next + kHistorySaveEvery;
    }
  }
}

void HistorySampler::SampleOnce(absl::Time now) {
  const int64_t now_ms = absl::ToUnixMillis(now);
  for (const auto& model : models_->models()) {
    const std::string& name = model->trainer->name();
    Last& last = last_[name];
    const uint64_t version = model->trainer->snapshot()->version;
    ModelMetrics* metrics = model->metrics;
    if (last.time != absl::InfinitePast() && now > last.time) {
      // A version lower than before (an import does not lower it; a restore
      // could not happen in-process) counts as 0.
      const double versions = version >= last.version ? double(version - last.version) : 0.0;
      history_->Record(name, "versions_per_second", now_ms,
                       versions / absl::ToDoubleSeconds(now - last.time));
    }
    history_->Record(name, "watchers", now_ms, static_cast<double>(metrics->watchers()));
    history_->Record(name, "parameter_waiters", now_ms,
                     static_cast<double>(metrics->parameter_waiters()));
    history_->Record(name, "simulators", now_ms,
                     static_cast<double>(metrics->RecentSubmitters(kSimulatorWindow)));
    for (const ClientMetricSummary& summary : metrics->ClientMetrics()) {
      auto& [total, sum] = last.client[summary.name];
      if (summary.total > total) {
        history_->Record(name, absl::StrCat("client/", summary.name), now_ms,
                         (summary.sum - sum) / static_cast<double>(summary.total - total));
      }
      total = summary.total;
      sum = summary.sum;
    }
    last.time = now;
    last.version = version;
  }
}

void HistorySampler::SaveAll() {
  if (state_dir_.empty()) return;
  for (const auto& model : models_->models()) {
    const std::string& name = model->trainer->name();
    if (absl::Status status = history_->Save(name, *fs_, HistoryPath(state_dir_, name));
        !status.ok()) {
      LogWarning("metrics history of model \"", name, "\" not saved: ", status.message());
    }
  }
}

}  // namespace deltaserve::server
