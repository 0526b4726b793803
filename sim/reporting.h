// How simulators report: one machine-readable line per event on stdout,
// flushed at once (scripts and run_simulators.py read the lines as they
// come), moving averages of episode returns, and the metrics a submission
// reports to the server.
#ifndef DELTASERVE_SIM_REPORTING_H_
#define DELTASERVE_SIM_REPORTING_H_

#include <cstddef>
#include <cstdio>
#include <deque>
#include <map>
#include <numeric>
#include <string>

#include "absl/strings/str_format.h"
#include "deltaserve/sim/algorithms/episode_buffer.h"

namespace deltaserve::sim {

// Prints absl::StrFormat(format, args...) to stdout and flushes it.
template <typename... Args>
void Report(const absl::FormatSpec<Args...>& format, const Args&... args) {
  absl::PrintF(format, args...);
  std::fflush(stdout);
}

// The mean of the last `size` values added (of fewer while not full()).
class ReturnWindow {
 public:
  explicit ReturnWindow(size_t size) : size_(size) {}

  void Add(double value) {
    values_.push_back(value);
    if (values_.size() > size_) values_.pop_front();
  }
  bool full() const { return values_.size() == size_; }
  // 0 while empty.
  double mean() const {
    if (values_.empty()) return 0.0;
    return std::accumulate(values_.begin(), values_.end(), 0.0) / values_.size();
  }

 private:
  size_t size_;
  std::deque<double> values_;
};

// What a simulator reports with the submission that carries `episodes`
// (DeltaSubmission::metrics; the server shows the mean of each name's last
// 100 reports on /metrics): episode_return, the mean undiscounted return,
// and episode_length, the mean length, of its closed episodes. Empty if it
// has none.
inline std::map<std::string, double> EpisodeMetrics(const EpisodeBuffer& episodes) {
  if (episodes.episodes() == 0) return {};
  const absl::Span<const float> rewards = episodes.rewards();
  const double total = std::accumulate(rewards.begin(), rewards.end(), 0.0);
  const double count = episodes.episodes();
  return {{"episode_return", total / count}, {"episode_length", episodes.closed_rows() / count}};
}

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_REPORTING_H_
