#include "deltaserve/server/core/history.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/check.h"
#include "deltaserve/v1/state.pb.h"

namespace deltaserve::server {

namespace {

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

}  // namespace

// One resolution of one series: a ring of closed points and (width_ms > 0)
// the bucket still filling.
struct LevelRing {
  std::vector<HistoryPoint> ring;
  size_t head = 0;  // Index of the oldest point once the ring is full.
  int64_t open_bucket = 0;
  double open_sum_ms = 0.0;
  double open_sum_value = 0.0;
  uint64_t open_count = 0;

  // The open bucket's times [open_start_ms, open_end_ms), kept with
  // open_bucket so that Add divides only when a bucket closes (an empty
  // range if they would overflow: Add then always divides).
  int64_t open_start_ms = 0;
  int64_t open_end_ms = 0;

  void Push(const HistoryPoint& p, size_t capacity) {
    if (ring.size() < capacity) {
      ring.push_back(p);
    } else {
      ring[head] = p;
      if (++head == capacity) head = 0;
    }
  }
  void SetOpenBucket(int64_t bucket, int64_t width_ms) {
    open_bucket = bucket;
    if (__builtin_mul_overflow(bucket, width_ms, &open_start_ms) ||
        __builtin_add_overflow(open_start_ms, width_ms, &open_end_ms)) {
      open_start_ms = open_end_ms = 0;
    }
  }
  // Closed points, oldest first.
  template <typename F>
  void ForEach(F&& f) const {
    for (size_t i = 0; i < ring.size(); ++i) f(ring[(head + i) % ring.size()]);
  }
  HistoryPoint Open() const {
    const double n = static_cast<double>(open_count);
    return {static_cast<int64_t>(std::llround(open_sum_ms / n)), open_sum_value / n};
  }
};

struct History::SeriesData {
  std::array<LevelRing, kHistoryLevels.size()> levels;
  int64_t last_ms = std::numeric_limits<int64_t>::min();

  // The raw ring fills within minutes: sized once, so that recording a
  // point does not allocate.
  SeriesData() { levels[0].ring.reserve(kHistoryLevels[0].capacity); }

  void Add(int64_t unix_ms, double value) {
    unix_ms = std::max(unix_ms, last_ms);
    last_ms = unix_ms;
    for (size_t i = 0; i < levels.size(); ++i) {
      const HistoryLevelSpec& spec = kHistoryLevels[i];
      LevelRing& level = levels[i];
      if (spec.width_ms == 0) {
        level.Push({unix_ms, value}, spec.capacity);
        continue;
      }
      // In the open bucket (the usual case): FloorDiv would give open_bucket.
      if (level.open_count == 0 || unix_ms < level.open_start_ms || unix_ms >= level.open_end_ms) {
        const int64_t bucket = FloorDiv(unix_ms, spec.width_ms);
        if (level.open_count > 0 && bucket != level.open_bucket) {
          level.Push(level.Open(), spec.capacity);
          level.open_count = 0;
          level.open_sum_ms = 0.0;
          level.open_sum_value = 0.0;
        }
        level.SetOpenBucket(bucket, spec.width_ms);
      }
      level.open_sum_ms += static_cast<double>(unix_ms);
      level.open_sum_value += value;
      ++level.open_count;
    }
  }

  // Finest level first; before the oldest point emitted so far, the points
  // of the next coarser level that are older (its open bucket included).
  std::vector<HistoryPoint> Read(int64_t since_ms) const {
    std::vector<std::vector<HistoryPoint>> parts;
    int64_t boundary = std::numeric_limits<int64_t>::max();
    for (size_t i = 0; i < levels.size(); ++i) {
      const LevelRing& level = levels[i];
      std::vector<HistoryPoint> part;
      auto take = [&](const HistoryPoint& p) {
        if (p.unix_ms < boundary && p.unix_ms > since_ms) part.push_back(p);
      };
      level.ForEach(take);
      if (level.open_count > 0) take(level.Open());
      int64_t oldest = boundary;
      if (!level.ring.empty()) {
        oldest =
            level.ring[level.ring.size() < kHistoryLevels[i].capacity ? 0 : level.head].unix_ms;
      } else if (level.open_count > 0) {
        oldest = level.Open().unix_ms;
      }
      boundary = std::min(boundary, oldest);
      parts.push_back(std::move(part));
    }
    std::vector<HistoryPoint> out;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
      out.insert(out.end(), it->begin(), it->end());
    }
    return out;
  }
};

History::History() = default;
History::~History() = default;

History::ModelData& History::ModelLocked(std::string_view model) {
  auto it = models_.find(model);
  if (it == models_.end()) it = models_.emplace(std::string(model), ModelData()).first;
  return it->second;
}

History::SeriesData* History::SeriesLocked(ModelData& data, std::string_view series) {
  auto it = data.find(series);
  if (it == data.end()) {
    if (data.size() >= kMaxHistorySeries) return nullptr;
    it = data.emplace(std::string(series), std::make_unique<SeriesData>()).first;
  }
  return it->second.get();
}

void History::RecordLocked(ModelData& data, std::string_view series, int64_t unix_ms,
                           double value) {
  if (!std::isfinite(value)) return;
  if (SeriesData* target = SeriesLocked(data, series)) target->Add(unix_ms, value);
}

History::Group History::MakeGroup(std::string_view model, std::vector<std::string> names) {
  Group group;
  group.model_ = std::string(model);
  group.slots_.assign(names.size(), nullptr);
  group.names_ = std::move(names);
  return group;
}

void History::RecordGroup(Group& group, int64_t unix_ms, absl::Span<const double> values) {
  DELTASERVE_DCHECK(values.size() == group.names_.size());
  absl::MutexLock lock(&mu_);
  if (group.generation_ != generation_) {
    group.model_data_ = &ModelLocked(group.model_);
    std::fill(group.slots_.begin(), group.slots_.end(), nullptr);
    group.generation_ = generation_;
  }
  const size_t n = std::min(values.size(), group.names_.size());
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) continue;  // As RecordLocked: not even created.
    SeriesData*& slot = group.slots_[i];
    if (slot == nullptr) slot = SeriesLocked(*group.model_data_, group.names_[i]);
    if (slot != nullptr) slot->Add(unix_ms, values[i]);
  }
}

void History::Record(std::string_view model, std::string_view series, int64_t unix_ms,
                     double value) {
  absl::MutexLock lock(&mu_);
  RecordLocked(ModelLocked(model), series, unix_ms, value);
}

void History::RecordMany(std::string_view model, int64_t unix_ms,
                         absl::Span<const std::pair<std::string_view, double>> values) {
  absl::MutexLock lock(&mu_);
  ModelData& data = ModelLocked(model);
  for (const auto& [series, value] : values) RecordLocked(data, series, unix_ms, value);
}

void History::SetDefaultModel(std::string_view model) {
  absl::MutexLock lock(&mu_);
  default_model_ = std::string(model);
}

std::vector<std::string> History::Models() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, data] : models_) {
    if (!data.empty() && name != default_model_) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  auto it = models_.find(default_model_);
  if (it != models_.end() && !it->second.empty()) names.insert(names.begin(), default_model_);
  return names;
}

std::vector<std::string> History::Series(std::string_view model) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  auto it = models_.find(model);
  if (it == models_.end()) return names;
  for (const auto& [name, data] : it->second) names.push_back(name);
  return names;
}

std::map<std::string, std::vector<HistoryPoint>> History::Read(std::string_view model,
                                                               int64_t since_ms) const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::vector<HistoryPoint>> out;
  auto it = models_.find(model);
  if (it == models_.end()) return out;
  for (const auto& [name, data] : it->second) out.emplace(name, data->Read(since_ms));
  return out;
}

absl::Status History::Save(std::string_view model, persist::FileSystem& fs,
                           const std::string& path) const {
  deltaserve::v1::MetricsHistory proto;
  proto.set_model(std::string(model));
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(model);
    if (it != models_.end()) {
      for (const auto& [name, data] : it->second) {
        deltaserve::v1::HistorySeries* series = proto.add_series();
        series->set_name(name);
        for (size_t i = 0; i < data->levels.size(); ++i) {
          const LevelRing& level = data->levels[i];
          deltaserve::v1::HistoryLevel* out = series->add_levels();
          out->set_width_ms(kHistoryLevels[i].width_ms);
          level.ForEach([&](const HistoryPoint& p) {
            out->add_unix_ms(p.unix_ms);
            out->add_values(p.value);
          });
          out->set_open_bucket(level.open_bucket);
          out->set_open_sum_ms(level.open_sum_ms);
          out->set_open_sum_value(level.open_sum_value);
          out->set_open_count(level.open_count);
        }
      }
    }
  }
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) {
    return absl::InternalError(
        absl::StrCat("history of \"", std::string(model), "\": serialization failed"));
  }
  return persist::WriteFileAtomically(fs, path, bytes);
}

absl::Status History::Load(std::string_view model, persist::FileSystem& fs,
                           const std::string& path) {
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(model);
    if (it != models_.end()) models_.erase(it);
    ++generation_;
  }
  absl::StatusOr<std::string> bytes = fs.ReadFile(path);
  if (absl::IsNotFound(bytes.status())) return absl::OkStatus();
  if (!bytes.ok()) return bytes.status();
  deltaserve::v1::MetricsHistory proto;
  if (!proto.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": not a MetricsHistory message"));
  }
  ModelData loaded;
  for (const deltaserve::v1::HistorySeries& series : proto.series()) {
    if (series.name().empty() || loaded.size() >= kMaxHistorySeries) continue;
    auto data = std::make_unique<SeriesData>();
    for (const deltaserve::v1::HistoryLevel& in : series.levels()) {
      for (size_t i = 0; i < kHistoryLevels.size(); ++i) {
        if (kHistoryLevels[i].width_ms != in.width_ms()) continue;
        if (in.unix_ms_size() != in.values_size()) {
          return absl::DataLossError(absl::StrCat(path, ": series \"", series.name(), "\" has ",
                                                  in.unix_ms_size(), " times and ",
                                                  in.values_size(), " values"));
        }
        LevelRing& level = data->levels[i];
        const size_t capacity = kHistoryLevels[i].capacity;
        const int n = in.unix_ms_size();
        const int first = n > static_cast<int>(capacity) ? n - static_cast<int>(capacity) : 0;
        for (int k = first; k < n; ++k) {
          if (!std::isfinite(in.values(k))) continue;
          level.Push({in.unix_ms(k), in.values(k)}, capacity);
          data->last_ms = std::max(data->last_ms, in.unix_ms(k));
        }
        if (in.open_count() > 0 && kHistoryLevels[i].width_ms > 0 &&
            std::isfinite(in.open_sum_ms()) && std::isfinite(in.open_sum_value())) {
          level.SetOpenBucket(in.open_bucket(), kHistoryLevels[i].width_ms);
          level.open_sum_ms = in.open_sum_ms();
          level.open_sum_value = in.open_sum_value();
          level.open_count = in.open_count();
          data->last_ms = std::max(data->last_ms, level.Open().unix_ms);
        }
      }
    }
    loaded.emplace(series.name(), std::move(data));
  }
  absl::MutexLock lock(&mu_);
  models_[std::string(model)] = std::move(loaded);
  ++generation_;
  return absl::OkStatus();
}

}  // namespace deltaserve::server
