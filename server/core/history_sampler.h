// HistorySampler: the server's once-a-second series in the History
// (docs/operations.md, "Metrics history") and its persistence.
//
// Every second, per model: versions_per_second (versions since the last
// sample / elapsed seconds), watchers, parameter_waiters, simulators
// (distinct peers that submitted within the last 10 s:
// ModelMetrics::RecentSubmitters) and "client/<name>" for each metric
// simulators report (the mean of that name's reports since the last sample;
// no point for a second without reports). With a state directory, every
// kHistorySaveEvery and at Stop each model's history is written to
// <state_dir>/<model>/history.pb (History::Save: atomically).
#ifndef DELTASERVE_SERVER_CORE_HISTORY_SAMPLER_H_
#define DELTASERVE_SERVER_CORE_HISTORY_SAMPLER_H_

#include <cstdint>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/server/persist/file_system.h"

namespace deltaserve::server {

inline constexpr absl::Duration kHistorySampleEvery = absl::Seconds(1);
inline constexpr absl::Duration kHistorySaveEvery = absl::Seconds(10);
inline constexpr absl::Duration kSimulatorWindow = absl::Seconds(10);

// <state_dir>/<model>/history.pb
std::string HistoryPath(const std::string& state_dir, const std::string& model);

// Loads every model's history from `state_dir` (empty: nothing). A file that
// cannot be read or parsed logs one warning and leaves that model's history
// empty: never an error.
void LoadHistories(History& history, const std::vector<std::string>& models,
                   const std::string& state_dir, persist::FileSystem* fs);

class HistorySampler {
 public:
  // `history` and `models` must outlive it. `state_dir` empty: nothing is
  // written. `fs` null: POSIX.
  HistorySampler(History* history, const ModelRegistry* models, std::string state_dir,
                 persist::FileSystem* fs);
  // Stop()s.
  ~HistorySampler();

  // Starts the thread (sample every second, save every 10 s).
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops the thread, takes a last sample and saves. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // One sample of every model at `now` (the thread's work; tests call it).
  void SampleOnce(absl::Time now);
  // Writes every model's history (with a state directory); logs failures.
  void SaveAll();

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  History* const history_;
  const ModelRegistry* const models_;
  const std::string state_dir_;
  persist::FileSystem* const fs_;

  // SampleOnce's memory (the sampling thread's, or the caller's when not
  // started): the last sample's time and versions, and each client metric's
  // report count.
  struct Last {
    absl::Time time = absl::InfinitePast();
    uint64_t version = 0;
    std::map<std::string, std::pair<uint64_t, double>> client;  // name -> (total, sum)
  };
  std::map<std::string, Last> last_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_HISTORY_SAMPLER_H_
