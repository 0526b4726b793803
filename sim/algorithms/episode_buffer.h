// EpisodeBuffer: the steps of whole episodes collected for one submission —
// per step the observation acted on, the network outputs that chose the
// action (from model `version`), the action and the reward it earned.
//
// Actions are action_dim floats per step: a discrete action is stored as its
// index (action_dim 1), a continuous one as its components.
#ifndef DELTASERVE_SIM_ALGORITHMS_EPISODE_BUFFER_H_
#define DELTASERVE_SIM_ALGORITHMS_EPISODE_BUFFER_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::sim {

class EpisodeBuffer {
 public:
  EpisodeBuffer(int observation_dim, int output_dim, int action_dim = 1)
      : observation_dim_(observation_dim), output_dim_(output_dim), action_dim_(action_dim) {}

  // Records one step. Sizes must be observation_dim, output_dim and
  // action_dim.
  void Add(absl::Span<const float> observation, absl::Span<const float> outputs,
           absl::Span<const float> action, float reward, uint64_t version);
  // Same for a discrete action (action_dim 1): its index.
  void Add(absl::Span<const float> observation, absl::Span<const float> outputs, int action,
           float reward, uint64_t version);

  // Closes the current episode (its returns stop here).
  void EndEpisode();

  // Appends the closed episodes of `other` (same dimensions), in order.
  void Append(const EpisodeBuffer& other);

  int rows() const { return static_cast<int>(rewards_.size()); }
  int episodes() const { return static_cast<int>(episode_ends_.size()); }
  void Clear();

  // The closed episodes' steps (an unclosed episode's are left out), as
  // [closed_rows × observation_dim / output_dim / action_dim] matrices.
  int closed_rows() const { return episode_ends_.empty() ? 0 : episode_ends_.back(); }
  model::Matrix observations() const;
  model::Matrix outputs() const;
  model::Matrix actions() const;
  absl::Span<const float> rewards() const { return {rewards_.data(), size_t(closed_rows())}; }
  // One past each closed episode's last row, increasing.
  absl::Span<const int> episode_ends() const { return episode_ends_; }
  // The oldest version of any step added; 0 if none.
  uint64_t min_version() const { return min_version_ == UINT64_MAX ? 0 : min_version_; }

 private:
  int observation_dim_;
  int output_dim_;
  int action_dim_;
  std::vector<float> observations_;  // rows × observation_dim, row-major
  std::vector<float> outputs_;       // rows × output_dim
  std::vector<float> actions_;       // rows × action_dim
  std::vector<float> rewards_;
  std::vector<int> episode_ends_;  // one past each closed episode's last row
  uint64_t min_version_ = UINT64_MAX;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_ALGORITHMS_EPISODE_BUFFER_H_
