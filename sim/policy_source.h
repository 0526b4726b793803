// PolicySource: where a simulator gets the network's output for its
// observations — a Forward round trip to the server per call, or a local
// Replica kept fresh by the server's weight push. Both return the model
// version that produced the outputs, which the simulator sends back with its δ.
#ifndef DELTASERVE_SIM_POLICY_SOURCE_H_
#define DELTASERVE_SIM_POLICY_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::sim {

class PolicySource {
 public:
  virtual ~PolicySource() = default;

  // Writes y = f(inputs) into *outputs ([rows × output_dim]) and returns the
  // version that produced it; errors are the client's or replica's status.
  // Not thread-safe: one PolicySource per simulator thread.
  virtual absl::StatusOr<uint64_t> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                           model::Matrix* outputs) = 0;

  // Waits until the outputs come from version ≥ min_version or `timeout`
  // passes (then later outputs are just older; not an error). A round trip
  // always answers at the server's latest version: returns at once. A
  // replica behind min_version fetches or awaits it (ReplicaCatchUp).
  virtual void AwaitVersion(uint64_t min_version, absl::Duration timeout) {
    (void)min_version;
    (void)timeout;
  }

  // True if submissions should ask for the newest parameters with their
  // answer (DeltaSubmission::return_parameters), to be handed to Offer.
  // Thread-safe.
  virtual bool WantsParameters() const { return false; }

  // Parameters that came with an answer: acted with from now on while they
  // are newer than what the source has (ignored otherwise).
  virtual void Offer(std::shared_ptr<const client::Parameters> parameters) { (void)parameters; }
};

// One Forward round trip, however it travels (sim::Runner: a Session or a
// unary rpc).
using RoundTrip =
    std::function<absl::StatusOr<client::ForwardResult>(const Eigen::Ref<const model::Matrix>&)>;

// How a replica's AwaitVersion reaches a version its weight push has not
// brought yet.
enum class ReplicaCatchUp {
  // The weights come with the SubmitDelta answer (return_parameters): no
  // extra round trip; a GetParameters round trip if an answer lacked them.
  kAnswer,
  kFetch,  // a GetParameters round trip (the weights are acted with until the push catches up)
  kPush,   // wait for the push (the server paces each watch stream, at least 10 ms apart)
};

// Abseil flag support: "answer", "fetch" or "push".
bool AbslParseFlag(absl::string_view text, ReplicaCatchUp* catch_up, std::string* error);
std::string AbslUnparseFlag(ReplicaCatchUp catch_up);

// kind "roundtrip" (a Forward per call: `round_trip`, or TrainerClient::Forward
// when it is null) or "replica" (a client::Replica of `model`, created here:
// fails with its status; `catch_up` says how AwaitVersion gets ahead of its
// push). INVALID_ARGUMENT for any other kind.
absl::StatusOr<std::unique_ptr<PolicySource>> MakePolicySource(
    absl::string_view kind, std::shared_ptr<client::TrainerClient> client,
    const std::string& model = "", RoundTrip round_trip = nullptr,
    ReplicaCatchUp catch_up = ReplicaCatchUp::kAnswer);

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_POLICY_SOURCE_H_
