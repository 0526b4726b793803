#include "deltaserve/server/service/convert.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/proto/wire.h"
#include "grpcpp/impl/codegen/proto_utils.h"

namespace deltaserve::server {
namespace v1 = ::deltaserve::v1;

absl::StatusOr<Submission> SubmissionFromProto(const v1::SubmitDeltaRequest& request) {
  Submission submission;
  DELTASERVE_ASSIGN_OR_RETURN(submission.inputs, wire::MatrixFromProto("inputs", request.inputs()));
  DELTASERVE_ASSIGN_OR_RETURN(submission.deltas, wire::MatrixFromProto("deltas", request.deltas()));
  DELTASERVE_ASSIGN_OR_RETURN(submission.acted,
                              wire::MatrixFromProto("outputs", request.outputs()));
  const bool acted_omitted = request.outputs().rows() == 0 && request.outputs().cols() == 0;
  if (!acted_omitted && submission.acted.rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "outputs: expected ", submission.inputs.rows(),
        " rows (one per input row) or an empty matrix (acted outputs = y), got 0 rows and ",
        request.outputs().cols(), " columns"));
  }
  submission.version = request.version();
  submission.request_id = request.request_id();
  if (!request.metrics().empty()) {
    submission.metrics.reserve(static_cast<size_t>(request.metrics().size()));
    for (const auto& [name, value] : request.metrics()) {
      submission.metrics.push_back(ClientMetric{name, value});
    }
  }
  submission.return_input_gradient = request.return_input_gradient();
  DELTASERVE_ASSIGN_OR_RETURN(submission.objective, wire::ObjectiveFromProto(request.objective()));
  return submission;
}

void ToParameterUpdate(absl::string_view model, const Snapshot& snapshot,
                       v1::ParameterUpdate* update) {
  update->set_model(std::string(model));
  update->set_version(snapshot.version);
  auto* params = update->mutable_parameters();
  params->Resize(static_cast<int>(snapshot.parameters.size()), 0.0f);
  std::copy(snapshot.parameters.begin(), snapshot.parameters.end(), params->mutable_data());
  if (snapshot.input_statistics) {
    wire::InputStatisticsToProto(*snapshot.input_statistics, update->mutable_input_statistics());
  } else {
    update->clear_input_statistics();
  }
}

grpc::ByteBuffer SerializeParameterUpdate(absl::string_view model, const Snapshot& snapshot) {
  v1::ParameterUpdate update;
  ToParameterUpdate(model, snapshot, &update);
  grpc::ByteBuffer bytes;
  SerializeResponse(update, &bytes);
  return bytes;
}

}  // namespace deltaserve::server
