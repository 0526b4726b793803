#include "deltaserve/sim/policy_source.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/client/replica.h"
#include "deltaserve/model/mlp.h"

namespace deltaserve::sim {
namespace {

class RoundTripSource final : public PolicySource {
 public:
  explicit RoundTripSource(RoundTrip round_trip) : round_trip_(std::move(round_trip)) {}

  absl::StatusOr<uint64_t> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                   model::Matrix* outputs) override {
    DELTASERVE_ASSIGN_OR_RETURN(client::ForwardResult result, round_trip_(inputs));
    *outputs = std::move(result.outputs);
    return result.version;
  }

 private:
  RoundTrip round_trip_;
};

class ReplicaSource final : public PolicySource {
 public:
  explicit ReplicaSource(std::unique_ptr<client::Replica> replica) : replica_(std::move(replica)) {}

  absl::StatusOr<uint64_t> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                   model::Matrix* outputs) override {
    DELTASERVE_ASSIGN_OR_RETURN(uint64_t version, replica_->Forward(inputs, workspace_));
    *outputs = workspace_.output();
    return version;
  }

  void AwaitVersion(uint64_t min_version, absl::Duration timeout) override {
    replica_->WaitForVersion(min_version, timeout);
  }

 private:
  std::unique_ptr<client::Replica> replica_;
  model::Mlp::Workspace workspace_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PolicySource>> MakePolicySource(
    absl::string_view kind, std::shared_ptr<client::TrainerClient> client, const std::string& model,
    RoundTrip round_trip) {
  if (kind == "roundtrip") {
    if (round_trip == nullptr) {
      round_trip = [client, model](const Eigen::Ref<const model::Matrix>& inputs) {
        return client->Forward(inputs, model);
      };
    }
    return std::make_unique<RoundTripSource>(std::move(round_trip));
  }
  if (kind == "replica") {
    DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<client::Replica> replica,
                                client::Replica::Create(std::move(client), model));
    return std::make_unique<ReplicaSource>(std::move(replica));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--actions must be 'roundtrip' or 'replica', got '", kind, "'"));
}

}  // namespace deltaserve::sim
