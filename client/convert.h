// Conversions between the client's types (client/trainer_client.h) and the
// wire messages, shared by the unary calls and the Session stream.
#ifndef DELTASERVE_CLIENT_CONVERT_H_
#define DELTASERVE_CLIENT_CONVERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/v1/trainer.pb.h"

namespace deltaserve::client::internal {

deltaserve::v1::ForwardRequest ForwardRequestFor(const Eigen::Ref<const model::Matrix>& inputs,
                                                 const std::string& model);

// request_id: the submission's, or a NewRequestId() when it is empty.
// The metrics are copied as they are: callers check them first
// (wire::ValidateMetrics).
deltaserve::v1::SubmitDeltaRequest SubmitRequestFor(const DeltaSubmission& submission,
                                                    const std::string& model);

// INTERNAL if the outputs do not have rows·cols values: the server broke the
// contract.
absl::StatusOr<ForwardResult> ForwardResultFrom(const deltaserve::v1::ForwardResponse& response);

// INTERNAL if the input statistics are invalid: the server broke the
// contract.
absl::StatusOr<Parameters> ParametersFrom(const deltaserve::v1::ParameterUpdate& update);

// INTERNAL if a matrix does not have rows·cols values, or the parameters'
// input statistics are invalid: the server broke the contract.
absl::StatusOr<SubmitDeltaResult> SubmitResultFrom(
    const deltaserve::v1::SubmitDeltaResponse& response);

deltaserve::v1::InputGradientRequest InputGradientRequestFor(
    const Eigen::Ref<const model::Matrix>& inputs, const Eigen::Ref<const model::Matrix>& deltas,
    const std::string& model);

// INTERNAL if a matrix does not have rows·cols values.
absl::StatusOr<InputGradientResult> InputGradientResultFrom(
    const deltaserve::v1::InputGradientResponse& response);

}  // namespace deltaserve::client::internal

#endif  // DELTASERVE_CLIENT_CONVERT_H_
