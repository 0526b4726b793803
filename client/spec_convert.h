// Converts the wire contract's ModelSpec into the model core's MlpSpec, so the
// client can build the same network the server trains. Only the network part
// (input_dim, layers, seed) is converted; optimizer and surrogate settings
// matter to the server alone.
#ifndef DELTASERVE_CLIENT_SPEC_CONVERT_H_
#define DELTASERVE_CLIENT_SPEC_CONVERT_H_

#include "absl/status/statusor.h"
#include "deltaserve/v1/config.pb.h"
#include "model/spec.h"

namespace deltaserve::client {

// INVALID_ARGUMENT (naming the layer) for ACTIVATION_UNSPECIFIED or unknown
// activations, and whenever model::ValidateMlpSpec rejects the result
// (input_dim 0, no layers, zero units, too many parameters).
absl::StatusOr<model::MlpSpec> MlpSpecFromProto(const deltaserve::v1::ModelSpec& spec);

}  // namespace deltaserve::client

#endif  // DELTASERVE_CLIENT_SPEC_CONVERT_H_
