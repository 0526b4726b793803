// STAND-IN (h-web) for h-series' History (/work/api_contract.md): the same
// interface, so server/web builds and is tested before h-series lands.
// Replaced by h-series' server/core/history.{h,cc} at merge.
#ifndef DELTASERVE_SERVER_CORE_HISTORY_H_
#define DELTASERVE_SERVER_CORE_HISTORY_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace deltaserve::server {

struct HistoryPoint {
  int64_t unix_ms;
  double value;
};

class History {
 public:
  void Record(std::string_view model, std::string_view series, int64_t unix_ms, double value) {
    absl::MutexLock lock(&mu_);
    std::deque<HistoryPoint>& points = data_[std::string(model)][std::string(series)];
    points.push_back({unix_ms, value});
    if (points.size() > 4096) points.pop_front();
  }
  std::vector<std::string> Models() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& [name, series] : data_) out.push_back(name);
    return out;
  }
  std::vector<std::string> Series(std::string_view model) const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    auto it = data_.find(std::string(model));
    if (it == data_.end()) return out;
    for (const auto& [name, points] : it->second) out.push_back(name);
    return out;
  }
  std::map<std::string, std::vector<HistoryPoint>> Read(std::string_view model,
                                                        int64_t since_ms) const {
    absl::MutexLock lock(&mu_);
    std::map<std::string, std::vector<HistoryPoint>> out;
    auto it = data_.find(std::string(model));
    if (it == data_.end()) return out;
    for (const auto& [name, points] : it->second) {
      std::vector<HistoryPoint>& dst = out[name];
      for (const HistoryPoint& p : points) {
        if (p.unix_ms > since_ms) dst.push_back(p);
      }
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::map<std::string, std::deque<HistoryPoint>>> data_ ABSL_GUARDED_BY(mu_);
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_HISTORY_H_
