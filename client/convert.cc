#include "deltaserve/client/convert.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
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
  request.set_return_input_gradient(submission.return_input_gradient);
  request.set_return_parameters(submission.return_parameters);
  return request;
}

v1::InputGradientRequest InputGradientRequestFor(const Eigen::Ref<const model::Matrix>& inputs,
                                                 const Eigen::Ref<const model::Matrix>& deltas,
                                                 const std::string& model) {
  v1::InputGradientRequest request;
  request.set_model(model);
  wire::MatrixToProto(inputs, request.mutable_inputs());
  wire::MatrixToProto(deltas, request.mutable_deltas());
  return request;
}

absl::StatusOr<InputGradientResult> InputGradientResultFrom(
    const v1::InputGradientResponse& response) {
  InputGradientResult result;
  absl::StatusOr<model::Matrix> m =
      wire::MatrixFromProto("server's input_gradient", response.input_gradient());
  if (!m.ok()) return absl::InternalError(m.status().message());
  result.input_gradient = *std::move(m);
  m = wire::MatrixFromProto("server's outputs", response.outputs());
  if (!m.ok()) return absl::InternalError(m.status().message());
  result.outputs = *std::move(m);
  result.version = response.version();
  return result;
}

absl::StatusOr<ForwardResult> ForwardResultFrom(const v1::ForwardResponse& response) {
  absl::StatusOr<model::Matrix> outputs =
      wire::MatrixFromProto("server's matrix", response.outputs());
  if (!outputs.ok()) return absl::InternalError(outputs.status().message());
  return ForwardResult{*std::move(outputs), response.version()};
}

absl::StatusOr<Parameters> ParametersFrom(const v1::ParameterUpdate& update) {
  Parameters params;
  params.model = update.model();
  params.version = update.version();
  params.parameters.assign(update.parameters().begin(), update.parameters().end());
  if (update.has_input_statistics()) {
    absl::StatusOr<model::RunningMeanStd> statistics =
        wire::InputStatisticsFromProto(update.input_statistics());
    if (!statistics.ok()) {
      return absl::InternalError(absl::StrCat("the server sent version ", update.version(),
                                              " of model \"", update.model(), "\" with invalid ",
                                              statistics.status().message()));
    }
    params.input_statistics = std::make_shared<const model::RunningMeanStd>(*std::move(statistics));
  }
  return params;
}

absl::StatusOr<SubmitDeltaResult> SubmitResultFrom(const v1::SubmitDeltaResponse& response) {
  SubmitDeltaResult result;
  result.version = response.version();
  result.surrogate_loss = response.surrogate_loss();
  result.staleness = response.staleness();
  result.stepped = response.stepped();
  result.duplicate = response.duplicate();
  if (response.has_input_gradient()) {
    absl::StatusOr<model::Matrix> gradient =
        wire::MatrixFromProto("server's input_gradient", response.input_gradient());
    if (!gradient.ok()) return absl::InternalError(gradient.status().message());
    result.input_gradient = *std::move(gradient);
  }
  if (response.has_parameters()) {
    absl::StatusOr<Parameters> parameters = ParametersFrom(response.parameters());
    if (!parameters.ok()) return parameters.status();
    result.parameters = std::make_shared<const Parameters>(*std::move(parameters));
  }
  return result;
}

}  // namespace deltaserve::client::internal
