// Conversions between the wire contract (deltaserve.v1 protobuf messages) and
// the core types (model::*, server::Trainer*). Checks here are the ones that
// only make sense on the wire (a Matrix whose rows·cols ≠ data size, an enum
// value outside the contract); shape-against-model checks live in Trainer.
#ifndef DELTASERVE_SERVER_CONVERT_H_
#define DELTASERVE_SERVER_CONVERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/v1/config.pb.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "model/spec.h"
#include "server/snapshot.h"
#include "server/trainer.h"

namespace deltaserve::server {

// Matrix and MlpSpec conversions are in proto/wire.h (shared with the client).

// Expect defaults already filled (config.h FillDefaults); UNSPECIFIED kinds
// map to the documented defaults (SGD, ANCHORED, SUM) all the same.
// INVALID_ARGUMENT for enum values outside the contract.
absl::StatusOr<model::OptimizerConfig> OptimizerConfigFromProto(
    const deltaserve::v1::OptimizerConfig& config);
absl::StatusOr<model::SurrogateConfig> SurrogateConfigFromProto(
    const deltaserve::v1::SurrogateConfig& config);

// MINIMIZE for OBJECTIVE_UNSPECIFIED; INVALID_ARGUMENT for unknown values.
absl::StatusOr<model::Objective> ObjectiveFromProto(deltaserve::v1::Objective objective);

// Everything a Trainer needs; validated by model::Validate*. The spec should
// have its defaults filled.
absl::StatusOr<TrainerOptions> TrainerOptionsFromProto(const deltaserve::v1::ModelSpec& spec);

// The SubmitDeltaRequest's matrices in core types. `outputs` absent or with
// rows = cols = 0 and no data means ỹ = y (a 0-row `acted`).
absl::StatusOr<Submission> SubmissionFromProto(const deltaserve::v1::SubmitDeltaRequest& request);

void ToParameterUpdate(absl::string_view model, const Snapshot& snapshot,
                       deltaserve::v1::ParameterUpdate* update);

// The ParameterUpdate for `snapshot`, serialized once into a ByteBuffer.
grpc::ByteBuffer SerializeParameterUpdate(absl::string_view model, const Snapshot& snapshot);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CONVERT_H_
