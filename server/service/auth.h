// Authorizer: who may call which rpc (docs/security.md).
//
// With --auth_file the server knows a set of principals (deltaserve.v1
// AuthConfig: name, role, SHA-256 of the token). A call authenticates with the
// metadata `authorization: Bearer <token>`; the Authorizer hashes the token,
// compares the digest with every principal's in constant time, and checks the
// principal's role against the least role the method needs (RequiredRole).
// Without --auth_file every call is allowed (the server then only listens
// openly with --allow_unauthenticated; see tls.h CheckListenExposure).
//
// Every handler of every service calls it first, before parsing its request,
// and on an error finishes with that status and changes nothing:
//
//   if (absl::Status denied = authorizer_->Authorize(*context, kSubmitDeltaMethod);
//       !denied.ok()) { reactor->Finish(ToGrpcStatus(denied)); return reactor; }
//
// grpc.health.v1 and reflection (which only describes the public .proto
// files) are not checked, so probes work without a token.
//
// Reload (SIGHUP) swaps the principals atomically: calls that start after it
// see the new file, calls already running are not affected (a stream
// authorized at its start runs until it ends; docs/security.md).
#ifndef DELTASERVE_SERVER_SERVICE_AUTH_H_
#define DELTASERVE_SERVER_SERVICE_AUTH_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/base/token.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/v1/auth.pb.h"
#include "grpcpp/server_context.h"

namespace deltaserve::server {

// Full method names, as gRPC routes them (":path").
inline constexpr absl::string_view kGetModelInfoMethod = "/deltaserve.v1.Trainer/GetModelInfo";
inline constexpr absl::string_view kForwardMethod = "/deltaserve.v1.Trainer/Forward";
inline constexpr absl::string_view kSubmitDeltaMethod = "/deltaserve.v1.Trainer/SubmitDelta";
inline constexpr absl::string_view kGetParametersMethod = "/deltaserve.v1.Trainer/GetParameters";
inline constexpr absl::string_view kWatchParametersMethod =
    "/deltaserve.v1.Trainer/WatchParameters";
inline constexpr absl::string_view kSessionMethod = "/deltaserve.v1.Trainer/Session";
inline constexpr absl::string_view kListModelsMethod = "/deltaserve.v1.Trainer/ListModels";
inline constexpr absl::string_view kInputGradientMethod = "/deltaserve.v1.Trainer/InputGradient";
inline constexpr absl::string_view kGetMetricsHistoryMethod =
    "/deltaserve.v1.Trainer/GetMetricsHistory";
inline constexpr absl::string_view kCheckpointMethod = "/deltaserve.v1.Admin/Checkpoint";
inline constexpr absl::string_view kImportParametersMethod =
    "/deltaserve.v1.Admin/ImportParameters";

// The least role that may call `method` (a full name, e.g. kForwardMethod):
// OBSERVER for GetModelInfo, GetParameters, WatchParameters, Forward and
// ListModels, InputGradient and GetMetricsHistory;
// SIMULATOR for SubmitDelta and Session; ADMIN for everything else — every
// /deltaserve.v1.Admin/ method and any method not named here (deny by
// default: a new rpc needs ADMIN until it is added to this table).
deltaserve::v1::Role RequiredRole(absl::string_view method);

// Checks an AuthConfig: every principal has a non-empty unique name, a role
// other than ROLE_UNSPECIFIED, and a token_sha256 of 64 lowercase hex digits
// no other principal has. INVALID_ARGUMENT naming the principal otherwise.
absl::Status ValidateAuthConfig(const deltaserve::v1::AuthConfig& config);

class Authorizer {
 public:
  // Allows every call (no --auth_file). Reload is a no-op.
  static std::unique_ptr<Authorizer> AllowAll(ServerMetrics* metrics);

  // Reads and validates the AuthConfig at `path` (text format):
  // INVALID_ARGUMENT / NOT_FOUND naming the file and the problem.
  // `metrics` (not null) counts refused calls; must outlive this.
  static absl::StatusOr<std::unique_ptr<Authorizer>> FromFile(std::string path,
                                                              ServerMetrics* metrics);

  // Re-reads the file. OK: calls from now on use it. Error (unreadable,
  // invalid): the principals in force stay, and the error says why.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // OK if the call's metadata authenticates a principal whose role may call
  // `method` (full name; see RequiredRole). Otherwise, counted in
  // deltaserve_auth_failures_total and:
  //   UNAUTHENTICATED    no authorization metadata, not "Bearer <token>", or
  //                      a token no principal has;
  //   PERMISSION_DENIED  a valid token whose role is below RequiredRole.
  // Thread-safe; never blocks beyond a reader lock held for a pointer copy.
  absl::Status Authorize(const grpc::ServerContextBase& context, absl::string_view method) const;

  // The same check on the value of the authorization metadata (nullopt: no
  // such metadata). Returns the principal's name ("" when auth is off).
  absl::StatusOr<std::string> Check(std::optional<absl::string_view> authorization,
                                    absl::string_view method) const ABSL_LOCKS_EXCLUDED(mu_);

  // False for AllowAll.
  bool enabled() const { return !path_.empty(); }

 private:
  struct Entry {
    std::string name;
    deltaserve::v1::Role role;
    base::Sha256Digest digest;
  };
  using Table = std::vector<Entry>;

  Authorizer(std::string path, ServerMetrics* metrics, std::shared_ptr<const Table> table);
  static absl::StatusOr<std::shared_ptr<const Table>> Load(const std::string& path);

  const std::string path_;  // Empty: allow all.
  ServerMetrics* const metrics_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Table> table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_AUTH_H_
