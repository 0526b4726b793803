// The one conversion between absl::Status, which the core and the client
// library return, and the statuses on the wire: grpc::Status (every rpc) and
// the Session's per-call CallError (proto/deltaserve/v1/trainer.proto). The
// canonical code spaces are identical, so the code is copied as a number and
// the message kept word for word, in both directions.
#ifndef DELTASERVE_PROTO_GRPC_STATUS_H_
#define DELTASERVE_PROTO_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/support/status.h"

namespace deltaserve {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// `error` set to `status`'s code and message (`status` is not OK: a Session
// answers an OK call with its result, not a CallError).
void ToCallError(const absl::Status& status, v1::CallError* error);
absl::Status FromCallError(const v1::CallError& error);

}  // namespace deltaserve

#endif  // DELTASERVE_PROTO_GRPC_STATUS_H_
