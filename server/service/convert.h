// The service layer's conversions between request/response messages and the
// Trainer's types. Model-independent conversions (Matrix, ModelSpec pieces,
// enums) are proto/wire.h's; shape-against-model checks are the Trainer's.
#ifndef DELTASERVE_SERVER_SERVICE_CONVERT_H_
#define DELTASERVE_SERVER_SERVICE_CONVERT_H_

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "deltaserve/server/core/snapshot.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/byte_buffer.h"

namespace deltaserve::server {

// The SubmitDeltaRequest's matrices in core types. The wire's `outputs` is ỹ,
// the output the client acted on (Submission::acted); absent, or rows = cols
// = 0 with no data, means ỹ = y (a 0-row `acted`). Reported metrics are
// copied as they are: a bad one never fails the submission (the Trainer
// drops it once applied, ModelMetrics::RecordClientMetrics).
absl::StatusOr<Submission> SubmissionFromProto(const deltaserve::v1::SubmitDeltaRequest& request);

void ToParameterUpdate(absl::string_view model, const Snapshot& snapshot,
                       deltaserve::v1::ParameterUpdate* update);

// The ParameterUpdate for `snapshot`, serialized once into a ByteBuffer.
grpc::ByteBuffer SerializeParameterUpdate(absl::string_view model, const Snapshot& snapshot);

// A request's bytes as `Message` (the service's methods are raw, so that a
// malformed request gets this INVALID_ARGUMENT, counted like any other, instead
// of gRPC's own empty UNIMPLEMENTED).
template <typename Message>
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, Message* message) {
  grpc::ByteBuffer copy = bytes;  // Deserialize consumes its buffer; copies share slices.
  if (grpc::SerializationTraits<Message>::Deserialize(&copy, message).ok()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("request: expected a serialized ",
                                                 Message::descriptor()->full_name(), ", got ",
                                                 bytes.Length(), " bytes that do not parse"));
}

// `message` serialized into `bytes` (cannot fail for an in-memory message).
template <typename Message>
void SerializeResponse(const Message& message, grpc::ByteBuffer* bytes) {
  bool own_buffer = false;
  (void)grpc::SerializationTraits<Message>::Serialize(message, bytes, &own_buffer);
}

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_CONVERT_H_
