// History: bounded, downsampled time series per model and series name, for
// the live views (GetMetricsHistory, `deltaserve-cli top`, the metrics
// listener's page). docs/operations.md ("Metrics history") lists the series.
//
// Every series keeps several resolutions, each a ring of fixed capacity
// (kHistoryLevels): the last 600 points as recorded (one per optimizer step
// for the learner's series, one per second for the sampled ones), then
// averages over 10 s, 1 min, 10 min and 1 h buckets. Every level is fed by
// every point (a bucket closes when a point falls in a later one), so a
// series costs at most kHistoryPointsPerSeries points whatever the run's
// length, and a model at most kMaxHistorySeries series (more names are
// dropped). Read() returns the raw points, and before the oldest of them
// the finest coarser level that reaches further back, and so on: a week-long
// run shows the last minutes at full resolution and the week at 10 min.
//
// Values that are not finite are dropped; a time before the series' last
// point counts as that point's time (a clock step never reorders a series).
//
// Thread-safe: one mutex, held for a few map lookups per Record (none per
// RecordGroup once its series exist) and while Read copies (about 4,000
// points per series at most). Recording a point allocates nothing once its
// series exists, except when a coarser ring grows (every 10 s at most).
#ifndef DELTASERVE_SERVER_CORE_HISTORY_H_
#define DELTASERVE_SERVER_CORE_HISTORY_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "deltaserve/server/persist/file_system.h"

namespace deltaserve::server {

struct HistoryPoint {
  int64_t unix_ms;
  double value;
};

// One resolution: width_ms 0 keeps points as recorded; otherwise the mean
// (of times and of values) of the points in each aligned bucket of width_ms.
struct HistoryLevelSpec {
  int64_t width_ms;
  size_t capacity;
};
inline constexpr std::array<HistoryLevelSpec, 5> kHistoryLevels = {{
    {0, 600},          // the last 600 points
    {10'000, 360},     // 10 s buckets: 1 h
    {60'000, 1440},    // 1 min: 1 day
    {600'000, 1008},   // 10 min: 7 days
    {3'600'000, 720},  // 1 h: 30 days
}};
inline constexpr size_t kHistoryPointsPerSeries = 600 + 360 + 1440 + 1008 + 720;
// Series one model may have (the learner's and sampled ones plus up to
// wire::kMaxMetricNames "client/<name>" ones fit with room to spare).
inline constexpr size_t kMaxHistorySeries = 128;

class History {
 public:
  struct SeriesData;  // history.cc

 private:
  using ModelData = std::map<std::string, std::unique_ptr<SeriesData>, std::less<>>;

 public:
  History();
  ~History();
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  void Record(std::string_view model, std::string_view series, int64_t unix_ms, double value)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Several series of one model at one time, under one lock (the learner's
  // per-step record).
  void RecordMany(std::string_view model, int64_t unix_ms,
                  absl::Span<const std::pair<std::string_view, double>> values)
      ABSL_LOCKS_EXCLUDED(mu_);

  // A fixed list of one model's series recorded together (the learner's
  // per-step set), resolved to their storage on first use: RecordGroup then
  // costs one lock and no lookup by name. Owned and used by one thread at a
  // time (the History may be shared); re-resolved after a Load.
  class Group {
   public:
    Group() = default;

   private:
    friend class History;
    std::string model_;
    std::vector<std::string> names_;
    ModelData* model_data_ = nullptr;  // The model's, while generation_ holds.
    // Null: not created yet (no finite value so far) or dropped (full).
    std::vector<SeriesData*> slots_;
    uint64_t generation_ = 0;
  };
  static Group MakeGroup(std::string_view model, std::vector<std::string> names);
  // values[i] for the group's names[i] at one time, exactly as RecordMany
  // would record them (values.size() must equal the names').
  void RecordGroup(Group& group, int64_t unix_ms, absl::Span<const double> values)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The model listed first by Models() (the server's default model).
  void SetDefaultModel(std::string_view model) ABSL_LOCKS_EXCLUDED(mu_);
  // Models with at least one series: the default model first if known,
  // else sorted.
  std::vector<std::string> Models() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::string> Series(std::string_view model) const  // sorted
      ABSL_LOCKS_EXCLUDED(mu_);
  // Points with unix_ms > since_ms, oldest first, for every series of
  // `model` (an unknown model -> empty map).
  std::map<std::string, std::vector<HistoryPoint>> Read(std::string_view model,
                                                        int64_t since_ms) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Persistence (a deltaserve.v1.MetricsHistory, state.proto). Save writes
  // `model`'s series to `path` atomically (persist::WriteFileAtomically).
  // Load replaces `model`'s series by the file's: a missing file leaves it
  // empty (OK); an unreadable or corrupt one leaves it empty and returns
  // the error (the caller warns; never fatal).
  absl::Status Save(std::string_view model, persist::FileSystem& fs, const std::string& path) const
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Load(std::string_view model, persist::FileSystem& fs, const std::string& path)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void RecordLocked(ModelData& data, std::string_view series, int64_t unix_ms, double value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ModelData& ModelLocked(std::string_view model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The series' storage, created if there is room (else null).
  SeriesData* SeriesLocked(ModelData& data, std::string_view series)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::string default_model_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ModelData, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  // Bumped whenever a model's series may have been destroyed (Load): the
  // Groups resolved before re-resolve. Starts at 1 (a new Group has 0).
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_HISTORY_H_
