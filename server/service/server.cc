#include "server/server.h"

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "server/config.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/trainer_service.h"

namespace deltaserve::server {
namespace {

// "host:port" with the port the OS picked; "unix:..." as given.
std::string BoundAddress(const std::string& requested, int port) {
  if (absl::StartsWith(requested, "unix")) return requested;
  const size_t colon = requested.rfind(':');
  return absl::StrCat(requested.substr(0, colon), ":", port);
}

}  // namespace

std::string ModelHealthServiceName(absl::string_view model) {
  return absl::StrCat(kTrainerServiceName, "/", model);
}

absl::StatusOr<std::unique_ptr<DeltaServer>> DeltaServer::Start(
    const deltaserve::v1::ServerConfig& config, const ServerOptions& options) {
  ASSIGN_OR_RETURN(deltaserve::v1::ServerConfig prepared, PrepareServerConfig(config));
  ASSIGN_OR_RETURN(std::unique_ptr<ServerMetrics> metrics,
                   ServerMetrics::Create({options.metrics_listen_address}));
  std::string metrics_address;
  if (metrics->port() != 0) {
    metrics_address = BoundAddress(options.metrics_listen_address, metrics->port());
    LogInfo("metrics on ", metrics_address);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ModelRegistry> models,
                   ModelRegistry::Create(prepared, metrics.get()));
  for (const auto& model : models->models()) {
    LogInfo(DescribeModel(model->spec), "; ", model->trainer->mlp().parameter_count(),
            " parameters");
  }
  std::unique_ptr<DeltaServer> server(
      new DeltaServer(std::move(metrics), std::move(metrics_address), std::move(models), options));
  RETURN_IF_ERROR(server->Bind(prepared.max_message_bytes()));
  LogInfo("serving ", prepared.models_size(), " model(s) on ", server->address(), ", max message ",
          prepared.max_message_bytes(), " bytes");
  return server;
}

DeltaServer::DeltaServer(std::unique_ptr<ServerMetrics> metrics, std::string metrics_address,
                         std::unique_ptr<ModelRegistry> models, ServerOptions options)
    : options_(std::move(options)),
      metrics_(std::move(metrics)),
      metrics_address_(std::move(metrics_address)),
      models_(std::move(models)),
      service_(std::make_unique<TrainerService>(models_.get(), metrics_.get())) {}

DeltaServer::~DeltaServer() { Shutdown(); }

absl::Status DeltaServer::Bind(uint32_t max_message_bytes) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.listen_address, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", options_.listen_address,
                     "\" (expected host:port or unix:PATH that is free to bind)"));
  }
  address_ = BoundAddress(options_.listen_address, port);
  MarkServing();
  return absl::OkStatus();
}

void DeltaServer::MarkServing() {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(true);
  health->SetServingStatus(kTrainerServiceName, true);
  for (const std::string& name : models_->names()) {
    health->SetServingStatus(ModelHealthServiceName(name), true);
  }
}

void DeltaServer::Shutdown() {
  bool first;
  {
    absl::MutexLock lock(&mu_);
    first = !shutdown_started_;
    shutdown_started_ = true;
  }
  if (!first) {
    shutdown_done_.WaitForNotification();
    return;
  }
  if (server_ != nullptr) {
    LogInfo("shutting down ", address_);
    // All health statuses → NOT_SERVING; ends health Watch streams.
    if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  }
  models_->CloseHubs();
  models_->StopTrainers();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMicroseconds(options_.shutdown_grace));
    LogInfo("shut down");
  }
  shutdown_done_.Notify();
}

void DeltaServer::Wait() { shutdown_done_.WaitForNotification(); }

Trainer* DeltaServer::trainer(absl::string_view model) const {
  absl::StatusOr<ServedModel*> found = models_->Find(model);
  return found.ok() ? (*found)->trainer.get() : nullptr;
}

}  // namespace deltaserve::server
