// The one conversion between the wire contract's messages and the model
// core's types, shared by the server and the client library. Only checks that
// make sense on the wire live here (a Matrix whose rows·cols ≠ data size, an
// ACTIVATION_UNSPECIFIED layer); value checks are model/spec.h's Validate*
// (an enum value outside the contract is passed through for them to reject,
// so each condition has one message), shape-against-model checks the
// caller's.
#ifndef DELTASERVE_PROTO_WIRE_H_
#define DELTASERVE_PROTO_WIRE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/v1/config.pb.h"
#include "deltaserve/v1/trainer.pb.h"

namespace deltaserve::wire {

// The wire Matrix as a model::Matrix (rows = 0 gives a 0-row matrix; the
// caller decides whether that is allowed). INVALID_ARGUMENT
// "<what>: expected rows·cols = R·C = N values, got M" when the data size
// doesn't match.
absl::StatusOr<model::Matrix> MatrixFromProto(absl::string_view what,
                                              const deltaserve::v1::Matrix& proto);

// Copies `matrix` (any outer stride, e.g. a block of a larger matrix) into
// `proto`, row-major, replacing what was there.
void MatrixToProto(const Eigen::Ref<const model::Matrix>& matrix, deltaserve::v1::Matrix* proto);

// The network part of a ModelSpec (input_dim, layers, seed). INVALID_ARGUMENT
// naming the layer for ACTIVATION_UNSPECIFIED or unknown activations, for
// sizes beyond int32, and whatever model::ValidateMlpSpec rejects.
absl::StatusOr<model::MlpSpec> MlpSpecFromProto(const deltaserve::v1::ModelSpec& spec);

// The hyper-parameters as given (the optimizer's with its schedule),
// validated by model::ValidateOptimizerConfig / ValidateSurrogateConfig,
// whose messages name the field ("optimizer.schedule.total_steps: ...").
// UNSPECIFIED kinds map to the contract's defaults (SGD; CONSTANT; CURRENT;
// SUM); numeric defaults (0 → 0.01 etc.) are the server
// config's to fill (server/core/config.h) before this is called.
absl::StatusOr<model::OptimizerConfig> OptimizerConfigFromProto(
    const deltaserve::v1::OptimizerConfig& config);
absl::StatusOr<model::SurrogateConfig> SurrogateConfigFromProto(
    const deltaserve::v1::SurrogateConfig& config);

// The input normalisation as given, validated by
// model::ValidateInputNormalizationConfig ("input_normalization.clip: ...").
// Numeric defaults (clip 0 -> 10, epsilon 0 -> 1e-8) are the server config's
// to fill first; an unknown kind is passed through for it to reject.
absl::StatusOr<model::InputNormalizationConfig> InputNormalizationFromProto(
    const deltaserve::v1::InputNormalization& config);

// A version's statistics on the wire (clip and epsilon as in effect), and
// back: INVALID_ARGUMENT ("input_statistics: ...") unless
// model::RunningMeanStd::FromStatistics accepts them (and, when
// input_dim > 0, unless they have input_dim columns).
void InputStatisticsToProto(const model::RunningMeanStd& statistics,
                            deltaserve::v1::InputStatistics* proto);
absl::StatusOr<model::RunningMeanStd> InputStatisticsFromProto(
    const deltaserve::v1::InputStatistics& proto, int input_dim = 0);

// MINIMIZE for OBJECTIVE_UNSPECIFIED; INVALID_ARGUMENT for unknown values.
absl::StatusOr<model::Objective> ObjectiveFromProto(deltaserve::v1::Objective objective);
deltaserve::v1::Objective ObjectiveToProto(model::Objective objective);

}  // namespace deltaserve::wire

#endif  // DELTASERVE_PROTO_WIRE_H_
