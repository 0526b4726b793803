// AdminService: the deltaserve.v1.Admin gRPC service (admin.proto) over a
// ModelRegistry: on-demand checkpoints and parameter imports. Each handler
// parses, calls the model's Trainer and finishes later from the thread that
// completes the work (the checkpoint writer, the learner); none blocks.
// Raw methods, like TrainerService: a request that does not parse is
// INVALID_ARGUMENT. Every rpc needs an ADMIN token when the server has
// --auth_file (auth.h; UNAUTHENTICATED / PERMISSION_DENIED before parsing).
#ifndef DELTASERVE_SERVER_SERVICE_ADMIN_SERVICE_H_
#define DELTASERVE_SERVER_SERVICE_ADMIN_SERVICE_H_

#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/server/service/auth.h"
#include "deltaserve/v1/admin.grpc.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"

namespace deltaserve::server {

namespace internal {
using RawAdminService = ::deltaserve::v1::Admin::WithRawCallbackMethod_Checkpoint<
    ::deltaserve::v1::Admin::WithRawCallbackMethod_ImportParameters<
        ::deltaserve::v1::Admin::CallbackService>>;
}  // namespace internal

class AdminService final : public internal::RawAdminService {
 public:
  // `models` and `authorizer` (not null) must outlive the service.
  AdminService(ModelRegistry* models, const Authorizer* authorizer)
      : models_(models), authorizer_(authorizer) {}

  // FAILED_PRECONDITION without --state_dir, NOT_FOUND for an unknown model,
  // UNAVAILABLE when shutting down; else the durable checkpoint's file.
  grpc::ServerUnaryReactor* Checkpoint(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  // INVALID_ARGUMENT for a wrong count or non-finite values; else the new
  // version, once applied (and durable, with --state_dir).
  grpc::ServerUnaryReactor* ImportParameters(grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* response) override;

 private:
  ModelRegistry* const models_;
  const Authorizer* const authorizer_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_ADMIN_SERVICE_H_
