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
  ReplicaSource(std::unique_ptr<client::Replica> replica,
                std::shared_ptr<client::TrainerClient> client, ReplicaCatchUp catch_up)
      : replica_(std::move(replica)), client_(std::move(client)), catch_up_(catch_up) {}

  absl::StatusOr<uint64_t> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                   model::Matrix* outputs) override {
    if (fetched_ != nullptr && fetched_->version > replica_->version()) {
      DELTASERVE_ASSIGN_OR_RETURN(
          const uint64_t version,
          client::Replica::ForwardAt(replica_->mlp(), *fetched_, inputs, workspace_, normalized_));
      *outputs = workspace_.output();
      return version;
    }
    fetched_.reset();  // The push has caught up.
    DELTASERVE_ASSIGN_OR_RETURN(uint64_t version, replica_->Forward(inputs, workspace_));
    *outputs = workspace_.output();
    return version;
  }

  void AwaitVersion(uint64_t min_version, absl::Duration timeout) override {
    if (replica_->version() >= min_version) return;
    if (fetched_ != nullptr && fetched_->version >= min_version) return;
    if (catch_up_ != ReplicaCatchUp::kPush) {
      // One round trip, where the push may wait for its stream's next write
      // (the server paces each watch stream: up to 10 ms on loopback, about
      // 30 ms at a 10 ms round trip, docs/benchmarks.md).
      absl::StatusOr<client::Parameters> fresh =
          client_->GetParameters(replica_->model_name(), min_version);
      if (fresh.ok() && Fits(*fresh)) {
        fetched_ = std::make_shared<const client::Parameters>(*std::move(fresh));
        return;
      }
    }
    replica_->WaitForVersion(min_version, timeout);  // Or later outputs are older: no error.
  }

  bool WantsParameters() const override { return catch_up_ == ReplicaCatchUp::kAnswer; }

  void Offer(std::shared_ptr<const client::Parameters> parameters) override {
    if (parameters == nullptr || !Fits(*parameters)) return;
    if (parameters->version <= replica_->version()) return;
    if (fetched_ != nullptr && parameters->version <= fetched_->version) return;
    fetched_ = std::move(parameters);
  }

 private:
  // The replica's own size check (client::Replica ignores an update of the
  // wrong size): such weights are not acted with.
  bool Fits(const client::Parameters& parameters) const {
    return parameters.parameters.size() == replica_->snapshot()->parameters.size();
  }

  std::unique_ptr<client::Replica> replica_;
  std::shared_ptr<client::TrainerClient> client_;
  const ReplicaCatchUp catch_up_;
  // Parameters newer than the replica's, fetched by AwaitVersion or offered
  // with an answer; null once the push has caught up.
  std::shared_ptr<const client::Parameters> fetched_;
  model::Mlp::Workspace workspace_;
  model::Matrix normalized_;
};

}  // namespace

namespace {

// The flag's names, in the enum's order.
constexpr std::pair<ReplicaCatchUp, absl::string_view> kCatchUpNames[] = {
    {ReplicaCatchUp::kAnswer, "answer"},
    {ReplicaCatchUp::kFetch, "fetch"},
    {ReplicaCatchUp::kPush, "push"},
};

}  // namespace

bool AbslParseFlag(absl::string_view text, ReplicaCatchUp* catch_up, std::string* error) {
  for (const auto& [value, name] : kCatchUpNames) {
    if (text == name) {
      *catch_up = value;
      return true;
    }
  }
  *error = absl::StrCat("expected 'answer', 'fetch' or 'push', got '", text, "'");
  return false;
}

std::string AbslUnparseFlag(ReplicaCatchUp catch_up) {
  for (const auto& [value, name] : kCatchUpNames) {
    if (value == catch_up) return std::string(name);
  }
  return "answer";  // Not reached: every value is named above.
}

absl::StatusOr<std::unique_ptr<PolicySource>> MakePolicySource(
    absl::string_view kind, std::shared_ptr<client::TrainerClient> client, const std::string& model,
    RoundTrip round_trip, ReplicaCatchUp catch_up) {
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
                                client::Replica::Create(client, model));
    return std::make_unique<ReplicaSource>(std::move(replica), std::move(client), catch_up);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--actions must be 'roundtrip' or 'replica', got '", kind, "'"));
}

}  // namespace deltaserve::sim
