#include "deltaserve/client/convert.h"

#include "deltaserve/proto/wire.h"

namespace deltaserve::client::internal {

namespace v1 = ::deltaserve::v1;

v1::ForwardRequest ForwardRequestFor(const Eigen::Ref<const model::Matrix>& inputs,
                                     const std::string& model) {
  v1::ForwardRequest request;
  request.set_model(model);
  wire::MatrixToProto(inputs, request.mutable_inputs());
  return request;
}

v1::SubmitDeltaRequest SubmitRequestFor(const DeltaSubmission& submission,
                                        const std::string& model) {
  v1::SubmitDeltaRequest request;
  request.set_model(model);
  wire::MatrixToProto(submission.inputs, request.mutable_inputs());
  if (submission.acted_outputs.has_value()) {
    wire::MatrixToProto(*submission.acted_outputs, request.mutable_outputs());
  }
  wire::MatrixToProto(submission.deltas, request.mutable_deltas());
  request.set_version(submission.version);
  request.set_objective(wire::ObjectiveToProto(submission.objective));
  request.set_request_id(submission.request_id.empty() ? NewRequestId() : submission.request_id);
  if (!submission.metrics.empty()) {
    request.mutable_metrics()->insert(submission.metrics.begin(), submission.metrics.end());
  }
  return request;
}

absl::StatusOr<ForwardResult> ForwardResultFrom(const v1::ForwardResponse& response) {
  absl::StatusOr<model::Matrix> outputs =
      wire::MatrixFromProto("server's matrix", response.outputs());
  if (!outputs.ok()) return absl::InternalError(outputs.status().message());
  return ForwardResult{*std::move(outputs), response.version()};
}

SubmitDeltaResult SubmitResultFrom(const v1::SubmitDeltaResponse& response) {
  SubmitDeltaResult result;
  result.version = response.version();
  result.surrogate_loss = response.surrogate_loss();
  result.staleness = response.staleness();
  result.stepped = response.stepped();
  result.duplicate = response.duplicate();
  return result;
}

}  // namespace deltaserve::client::internal
