#include "deltaserve/server/service/auth.h"

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/log.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;

constexpr absl::string_view kBearerPrefix = "bearer ";
constexpr absl::string_view kHowToAuthenticate =
    "send the metadata \"authorization: Bearer <token>\" (deltaserve-cli token makes one)";

// Metric label values of deltaserve_auth_failures_total{reason}.
constexpr absl::string_view kMissing = "missing";
constexpr absl::string_view kMalformed = "malformed";
constexpr absl::string_view kUnknownToken = "unknown_token";
constexpr absl::string_view kPermissionDenied = "permission_denied";

}  // namespace

v1::Role RequiredRole(absl::string_view method) {
  if (method == kGetModelInfoMethod || method == kForwardMethod || method == kGetParametersMethod ||
      method == kWatchParametersMethod || method == kListModelsMethod ||
      method == kInputGradientMethod || method == kGetMetricsHistoryMethod) {
    return v1::OBSERVER;
  }
  if (method == kSubmitDeltaMethod || method == kSessionMethod) return v1::SIMULATOR;
  return v1::ADMIN;
}

absl::Status ValidateAuthConfig(const v1::AuthConfig& config) {
  std::set<std::string> names;
  std::set<std::string> digests;
  for (int i = 0; i < config.principals_size(); ++i) {
    const v1::Principal& p = config.principals(i);
    const std::string which = absl::StrCat("principal ", i, " (\"", p.name(), "\")");
    if (p.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("principal ", i, ": name must not be empty"));
    }
    if (!names.insert(p.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(which, ": name used twice"));
    }
    if (p.role() != v1::OBSERVER && p.role() != v1::SIMULATOR && p.role() != v1::ADMIN) {
      return absl::InvalidArgumentError(
          absl::StrCat(which, ": role must be OBSERVER, SIMULATOR or ADMIN"));
    }
    absl::StatusOr<base::Sha256Digest> digest = base::ParseSha256Hex(p.token_sha256());
    if (!digest.ok() || absl::AsciiStrToLower(p.token_sha256()) != p.token_sha256()) {
      return absl::InvalidArgumentError(
          absl::StrCat(which,
                       ": token_sha256 must be the token's SHA-256 as 64 lowercase hex digits "
                       "(deltaserve-cli token prints it), never the token itself"));
    }
    if (!digests.insert(p.token_sha256()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(which, ": token_sha256 is another principal's too"));
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<Authorizer> Authorizer::AllowAll(ServerMetrics* metrics) {
  return std::unique_ptr<Authorizer>(new Authorizer("", metrics, std::make_shared<Table>()));
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::FromFile(std::string path,
                                                                 ServerMetrics* metrics) {
  if (path.empty()) return absl::InvalidArgumentError("--auth_file: empty path");
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Table> table, Load(path));
  LogInfo("auth: ", table->size(), " principal(s) from ", path);
  return std::unique_ptr<Authorizer>(new Authorizer(std::move(path), metrics, std::move(table)));
}

Authorizer::Authorizer(std::string path, ServerMetrics* metrics, std::shared_ptr<const Table> table)
    : path_(std::move(path)), metrics_(metrics), table_(std::move(table)) {}

absl::StatusOr<std::shared_ptr<const Authorizer::Table>> Authorizer::Load(const std::string& path) {
  v1::AuthConfig config;
  DELTASERVE_RETURN_IF_ERROR(LoadTextMessage(path, &config));
  const absl::Status valid = ValidateAuthConfig(config);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  }
  auto table = std::make_shared<Table>();
  for (const v1::Principal& p : config.principals()) {
    table->push_back({p.name(), p.role(), *base::ParseSha256Hex(p.token_sha256())});
  }
  if (table->empty()) LogWarning("auth: ", path, " has no principals: every call is refused");
  return table;
}

absl::Status Authorizer::Reload() {
  if (!enabled()) return absl::OkStatus();
  absl::StatusOr<std::shared_ptr<const Table>> table = Load(path_);
  if (!table.ok()) return table.status();
  LogInfo("auth: reloaded ", (*table)->size(), " principal(s) from ", path_);
  absl::MutexLock lock(&mu_);
  table_ = *std::move(table);
  return absl::OkStatus();
}

absl::Status Authorizer::Authorize(const grpc::ServerContextBase& context,
                                   absl::string_view method) const {
  if (!enabled()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto found = metadata.find("authorization");
  std::optional<absl::string_view> value;
  if (found != metadata.end()) value.emplace(found->second.data(), found->second.size());
  return Check(value, method).status();
}

absl::StatusOr<std::string> Authorizer::Check(std::optional<absl::string_view> authorization,
                                              absl::string_view method) const {
  if (!enabled()) return std::string();
  if (!authorization.has_value()) {
    metrics_->RecordAuthFailure(kMissing, "");
    return absl::UnauthenticatedError(absl::StrCat("no credentials: ", kHowToAuthenticate));
  }
  if (authorization->size() <= kBearerPrefix.size() ||
      !absl::StartsWithIgnoreCase(*authorization, kBearerPrefix)) {
    metrics_->RecordAuthFailure(kMalformed, "");
    return absl::UnauthenticatedError(
        absl::StrCat("malformed authorization metadata: ", kHowToAuthenticate));
  }
  const base::Sha256Digest digest = base::Sha256(authorization->substr(kBearerPrefix.size()));
  std::shared_ptr<const Table> table;
  {
    absl::ReaderMutexLock lock(&mu_);
    table = table_;
  }
  // Every digest is compared, in constant time, so the time taken says
  // nothing about which principal (if any) matched or how closely.
  const Entry* match = nullptr;
  for (const Entry& entry : *table) {
    if (base::DigestsEqual(entry.digest, digest)) match = &entry;
  }
  if (match == nullptr) {
    metrics_->RecordAuthFailure(kUnknownToken, "");
    return absl::UnauthenticatedError("invalid token: not one of this server's --auth_file");
  }
  const v1::Role required = RequiredRole(method);
  if (match->role < required) {
    metrics_->RecordAuthFailure(kPermissionDenied, match->name);
    return absl::PermissionDeniedError(
        absl::StrCat("principal \"", match->name, "\" (", v1::Role_Name(match->role),
                     ") may not call ", method, ": it needs ", v1::Role_Name(required)));
  }
  return match->name;
}

}  // namespace deltaserve::server
