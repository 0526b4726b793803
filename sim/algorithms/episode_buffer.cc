#include "deltaserve/sim/algorithms/episode_buffer.h"

#include <algorithm>

namespace deltaserve::sim {
namespace {

// Appends the first `rows` rows (of `cols` floats) of `from` to `to`.
void AppendRows(const std::vector<float>& from, int rows, int cols, std::vector<float>* to) {
  to->insert(to->end(), from.begin(), from.begin() + static_cast<ptrdiff_t>(rows) * cols);
}

}  // namespace

void EpisodeBuffer::Add(absl::Span<const float> observation, absl::Span<const float> outputs,
                        absl::Span<const float> action, float reward, uint64_t version) {
  observations_.insert(observations_.end(), observation.begin(), observation.end());
  outputs_.insert(outputs_.end(), outputs.begin(), outputs.end());
  actions_.insert(actions_.end(), action.begin(), action.end());
  rewards_.push_back(reward);
  min_version_ = std::min(min_version_, version);
}

void EpisodeBuffer::Add(absl::Span<const float> observation, absl::Span<const float> outputs,
                        int action, float reward, uint64_t version) {
  const float index = static_cast<float>(action);
  Add(observation, outputs, absl::MakeConstSpan(&index, 1), reward, version);
}

void EpisodeBuffer::EndEpisode() {
  if (rows() > closed_rows()) episode_ends_.push_back(rows());
}

void EpisodeBuffer::Append(const EpisodeBuffer& other) {
  const int n = other.closed_rows();
  if (n == 0) return;
  const int offset = rows();
  AppendRows(other.observations_, n, observation_dim_, &observations_);
  AppendRows(other.outputs_, n, output_dim_, &outputs_);
  AppendRows(other.actions_, n, action_dim_, &actions_);
  AppendRows(other.rewards_, n, 1, &rewards_);
  for (int end : other.episode_ends_) episode_ends_.push_back(offset + end);
  min_version_ = std::min(min_version_, other.min_version_);
}

void EpisodeBuffer::Clear() {
  observations_.clear();
  outputs_.clear();
  actions_.clear();
  rewards_.clear();
  episode_ends_.clear();
  min_version_ = UINT64_MAX;
}

model::Matrix EpisodeBuffer::observations() const {
  return model::ConstMatrixMap(observations_.data(), closed_rows(), observation_dim_);
}

model::Matrix EpisodeBuffer::outputs() const {
  return model::ConstMatrixMap(outputs_.data(), closed_rows(), output_dim_);
}

model::Matrix EpisodeBuffer::actions() const {
  return model::ConstMatrixMap(actions_.data(), closed_rows(), action_dim_);
}

}  // namespace deltaserve::sim
