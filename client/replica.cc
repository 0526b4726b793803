#include "deltaserve/client/replica.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/proto/wire.h"

namespace deltaserve::client {
namespace {

bool Normalizes(const deltaserve::v1::ModelInfo& info) {
  return info.spec().input_normalization().kind() ==
         deltaserve::v1::InputNormalization::RUNNING_MEAN_STD;
}

// INTERNAL unless `update` carries input statistics of input_dim columns
// exactly when the model normalises its inputs.
absl::Status CheckStatistics(const deltaserve::v1::ModelInfo& info, const model::Mlp& mlp,
                             const Parameters& update) {
  const bool normalizes = Normalizes(info);
  if (normalizes != (update.input_statistics != nullptr)) {
    return absl::InternalError(absl::StrCat(
        "server sent version ", update.version, " of model \"", info.spec().name(), "\" ",
        normalizes ? "without" : "with", " input statistics; its spec's input_normalization is ",
        normalizes ? "RUNNING_MEAN_STD" : "NONE"));
  }
  if (normalizes && update.input_statistics->input_dim() != mlp.input_dim()) {
    return absl::InternalError(absl::StrCat(
        "server sent input statistics of ", update.input_statistics->input_dim(),
        " columns for model \"", info.spec().name(), "\" whose input_dim is ", mlp.input_dim()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Replica>> Replica::Create(std::shared_ptr<TrainerClient> client,
                                                         const std::string& model,
                                                         ReplicaOptions options) {
  if (client == nullptr) return absl::InvalidArgumentError("Replica needs a TrainerClient");
  DELTASERVE_ASSIGN_OR_RETURN(deltaserve::v1::ModelInfo info, client->GetModelInfo(model));
  if (info.spec().name().empty()) info.mutable_spec()->set_name(model);
  DELTASERVE_ASSIGN_OR_RETURN(model::MlpSpec spec, wire::MlpSpecFromProto(info.spec()));
  DELTASERVE_ASSIGN_OR_RETURN(model::Mlp mlp, model::Mlp::Create(std::move(spec)));
  // Later calls use the resolved name, so the replica stays on this model.
  DELTASERVE_ASSIGN_OR_RETURN(Parameters initial, client->GetParameters(info.spec().name()));
  if (initial.parameters.size() != mlp.parameter_count()) {
    return absl::InternalError(absl::StrCat("server sent ", initial.parameters.size(),
                                            " parameters for model \"", info.spec().name(),
                                            "\" whose spec needs ", mlp.parameter_count()));
  }
  DELTASERVE_RETURN_IF_ERROR(CheckStatistics(info, mlp, initial));
  return std::unique_ptr<Replica>(
      new Replica(std::move(client), std::move(info), std::move(mlp), std::move(initial), options));
}

Replica::Replica(std::shared_ptr<TrainerClient> client, deltaserve::v1::ModelInfo info,
                 model::Mlp mlp, Parameters initial, ReplicaOptions options)
    : client_(std::move(client)),
      info_(std::move(info)),
      mlp_(std::move(mlp)),
      options_(options),
      snapshot_(std::make_shared<const Parameters>(std::move(initial))) {
  watcher_ = std::thread([this] { WatchLoop(); });
}

Replica::~Replica() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // A context not yet in a call cancels that call as soon as it starts.
    if (active_context_ != nullptr) active_context_->TryCancel();
  }
  watcher_.join();
}

absl::StatusOr<ForwardResult> Replica::Forward(
    const Eigen::Ref<const model::Matrix>& inputs) const {
  // Activations are resized per call, so one workspace per thread serves
  // every Replica that thread uses.
  thread_local model::Mlp::Workspace workspace;
  thread_local model::Matrix normalized;
  ForwardResult result;
  DELTASERVE_ASSIGN_OR_RETURN(result.version, Forward(inputs, workspace, normalized));
  result.outputs = workspace.output();
  return result;
}

absl::StatusOr<uint64_t> Replica::Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                          model::Mlp::Workspace& workspace) const {
  model::Matrix normalized;
  return Forward(inputs, workspace, normalized);
}

absl::StatusOr<uint64_t> Replica::Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                          model::Mlp::Workspace& workspace,
                                          model::Matrix& normalized) const {
  return ForwardAt(mlp_, *snapshot(), inputs, workspace, normalized);
}

absl::StatusOr<uint64_t> Replica::ForwardAt(const model::Mlp& mlp, const Parameters& params,
                                            const Eigen::Ref<const model::Matrix>& inputs,
                                            model::Mlp::Workspace& workspace,
                                            model::Matrix& normalized) {
  if (params.input_statistics == nullptr) {
    DELTASERVE_RETURN_IF_ERROR(mlp.Forward(params.parameters, inputs, workspace));
  } else {
    DELTASERVE_RETURN_IF_ERROR(params.input_statistics->Normalize(inputs, &normalized));
    DELTASERVE_RETURN_IF_ERROR(mlp.Forward(params.parameters, normalized, workspace));
  }
  return params.version;
}

std::shared_ptr<const Parameters> Replica::snapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

uint64_t Replica::version() const { return snapshot()->version; }

bool Replica::WaitForVersion(uint64_t min_version, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const auto reached = [this, min_version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return snapshot_->version >= min_version;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

absl::Status Replica::watch_status() const {
  absl::MutexLock lock(&mu_);
  return watch_status_;
}

bool Replica::Install(Parameters update) {
  if (absl::Status checked = CheckStatistics(info_, mlp_, update); !checked.ok()) {
    absl::MutexLock lock(&mu_);
    watch_status_ = absl::InternalError(
        absl::StrCat("ignored version ", update.version, ": ", checked.message()));
    return false;
  }
  if (update.parameters.size() != mlp_.parameter_count()) {
    absl::MutexLock lock(&mu_);
    watch_status_ = absl::InternalError(
        absl::StrCat("ignored version ", update.version, ": ", update.parameters.size(),
                     " parameters, the spec needs ", mlp_.parameter_count()));
    return false;
  }
  std::shared_ptr<const Parameters> next = std::make_shared<const Parameters>(std::move(update));
  {
    absl::MutexLock lock(&mu_);
    snapshot_.swap(next);
    watch_status_ = absl::OkStatus();
  }
  return true;  // `next` (the old snapshot) is released outside the lock.
}

void Replica::WatchLoop() {
  const std::string& model = info_.spec().name();
  absl::Duration backoff = options_.reconnect_backoff;
  while (true) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      active_context_ = &context;
    }
    bool received = false;
    const absl::Status status = client_->WatchParameters(&context, model, [&](Parameters update) {
      received = Install(std::move(update)) || received;
      return true;
    });
    absl::MutexLock lock(&mu_);
    active_context_ = nullptr;
    if (stopping_) return;
    watch_status_ =
        status.ok() ? absl::UnavailableError("the server ended the watch stream") : status;
    if (received) backoff = options_.reconnect_backoff;
    // Backoff before reconnecting; the destructor's stopping_ = true ends it early.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    if (stopping_) return;
    backoff = std::min(backoff * 2, options_.max_reconnect_backoff);
  }
}

}  // namespace deltaserve::client
