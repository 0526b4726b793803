// The one place that turns an absl::Status into a grpc::Status. The canonical
// code spaces are identical, so the code is copied and the message kept.
#ifndef DELTASERVE_SERVER_SERVICE_GRPC_STATUS_H_
#define DELTASERVE_SERVER_SERVICE_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace deltaserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_GRPC_STATUS_H_
