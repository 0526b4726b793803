#include "deltaserve/server/service/server.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deltaserve/base/address.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/history_sampler.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/server/service/admin_service.h"
#include "deltaserve/server/service/auth.h"
#include "deltaserve/server/service/connection_listener.h"
#include "deltaserve/server/service/tls.h"
#include "deltaserve/server/service/trainer_service.h"
#include "deltaserve/server/web/web_api.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace deltaserve::server {
namespace {

// `requested` (an address Start parsed) with the port the OS picked; a unix
// socket as given.
std::string BoundAddress(const std::string& requested, int port) {
  absl::StatusOr<base::Address> address = base::ParseAddress(requested, base::kListenForms);
  if (!address.ok() || address->is_unix()) return requested;
  address->port = static_cast<uint16_t>(port);
  return base::FormatAddress(*address);
}

}  // namespace

std::string ModelHealthServiceName(absl::string_view model) {
  return absl::StrCat(kTrainerServiceName, "/", model);
}

absl::StatusOr<std::unique_ptr<DeltaServer>> DeltaServer::Start(
    const deltaserve::v1::ServerConfig& config, const ServerOptions& options) {
  absl::StatusOr<base::Address> listen =
      base::ParseAddress(options.listen_address, base::kListenForms);
  if (!listen.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("listen address ", listen.status().message()));
  }
  DELTASERVE_RETURN_IF_ERROR(CheckListenExposure(options.listen_address, !options.auth_file.empty(),
                                                 options.allow_unauthenticated));
  DELTASERVE_ASSIGN_OR_RETURN(deltaserve::v1::ServerConfig prepared, PrepareServerConfig(config));
  std::unique_ptr<ServerTls> tls;
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty() ||
      !options.tls_client_ca_file.empty()) {
    DELTASERVE_ASSIGN_OR_RETURN(tls, ServerTls::Create({options.tls_cert_file, options.tls_key_file,
                                                        options.tls_client_ca_file}));
  } else if (!options.auth_file.empty() && !base::IsLoopback(*listen)) {
    LogWarning("--auth_file without TLS on ", options.listen_address,
               ": tokens cross the network in plaintext (add --tls_cert_file/--tls_key_file)");
  }
  // ":9464" (no host) binds loopback: metrics leave the machine only on purpose.
  const std::string metrics_listen = absl::StartsWith(options.metrics_listen_address, ":")
                                         ? absl::StrCat("127.0.0.1", options.metrics_listen_address)
                                         : options.metrics_listen_address;
  DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<ServerMetrics> metrics,
                              ServerMetrics::Create({metrics_listen}));
  std::string metrics_address;
  if (metrics->port() != 0) {
    metrics_address = BoundAddress(metrics_listen, metrics->port());
    LogInfo("metrics on ", metrics_address);
  }
  // TCP is bound here, before the models load (recovery can take a while):
  // a second server on the port refuses with one line, and clients wait in
  // the backlog until the server serves. unix: stays with gRPC's listener.
  std::unique_ptr<ConnectionListener> listener;
  if (!listen->is_unix()) {
    ConnectionListenerOptions accept;
    accept.max_connections = prepared.max_connections();
    accept.reserved_descriptors = kReservedDescriptors;
    accept.metrics = metrics.get();
    DELTASERVE_ASSIGN_OR_RETURN(listener, ConnectionListener::Bind(options.listen_address, accept));
  }
  std::unique_ptr<Authorizer> authorizer = Authorizer::AllowAll(metrics.get());
  if (!options.auth_file.empty()) {
    DELTASERVE_ASSIGN_OR_RETURN(authorizer, Authorizer::FromFile(options.auth_file, metrics.get()));
  }
  // The history continues where the last run on this state directory left
  // it (a bad file: a warning and an empty history, never a failed start).
  auto history = std::make_unique<History>();
  std::vector<std::string> model_names;
  for (const auto& spec : prepared.models()) model_names.push_back(spec.name());
  if (!model_names.empty()) history->SetDefaultModel(model_names.front());
  LoadHistories(*history, model_names, options.state_dir, options.state_fs);
  DELTASERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<ModelRegistry> models,
      ModelRegistry::Create(prepared, metrics.get(), options.learner_gate, options.state_dir,
                            options.state_fs, history.get()));
  if (options.prepare_models) DELTASERVE_RETURN_IF_ERROR(options.prepare_models(models.get()));
  for (const auto& model : models->models()) {
    LogInfo(DescribeModel(model->spec), "; ", model->trainer->mlp().parameter_count(),
            " parameters");
  }
  std::unique_ptr<DeltaServer> server(new DeltaServer(
      std::move(metrics), std::move(metrics_address), std::move(history), std::move(models),
      options, prepared.max_watchers_per_model(), std::move(authorizer), std::move(tls),
      std::move(listener), prepared.max_parameter_waiters_per_model()));
  DELTASERVE_RETURN_IF_ERROR(server->Bind(prepared));
  server->ServeLivePage();
  LogInfo("serving ", prepared.models_size(), " model(s) on ", server->address(), ", max message ",
          prepared.max_message_bytes(), " bytes");
  return server;
}

DeltaServer::DeltaServer(std::unique_ptr<ServerMetrics> metrics, std::string metrics_address,
                         std::unique_ptr<History> history, std::unique_ptr<ModelRegistry> models,
                         ServerOptions options, uint32_t max_watchers_per_model,
                         std::unique_ptr<Authorizer> authorizer, std::unique_ptr<ServerTls> tls,
                         std::unique_ptr<ConnectionListener> listener,
                         uint32_t max_parameter_waiters_per_model)
    : options_(std::move(options)),
      metrics_(std::move(metrics)),
      metrics_address_(std::move(metrics_address)),
      history_(std::move(history)),
      models_(std::move(models)),
      sampler_(std::make_unique<HistorySampler>(history_.get(), models_.get(), options_.state_dir,
                                                options_.state_fs)),
      authorizer_(std::move(authorizer)),
      tls_(std::move(tls)),
      service_(std::make_unique<TrainerService>(models_.get(), metrics_.get(),
                                                max_watchers_per_model, authorizer_.get(),
                                                max_parameter_waiters_per_model, history_.get())),
      admin_(std::make_unique<AdminService>(models_.get(), authorizer_.get())),
      listener_(std::move(listener)) {}

DeltaServer::~DeltaServer() {
  Shutdown();
  // The page's handler reads history_ and authorizer_: the endpoint stops
  // calling it (and running calls end) before they go.
  metrics_->SetHttpHandler(nullptr);
}

void DeltaServer::ServeLivePage() {
  if (metrics_->port() == 0) return;
  web::WebOptions web;
  web.history = history_.get();
  if (authorizer_->enabled()) {
    // The page and its API need what GetModelInfo needs: OBSERVER.
    web.authorize = [authorizer =
                         authorizer_.get()](std::optional<absl::string_view> authorization) {
      return authorizer->Check(authorization, kGetModelInfoMethod).status();
    };
  }
  // Runs on the endpoint's (civetweb's) threads, never on gRPC's.
  metrics_->SetHttpHandler(web::MakeWebHandler(std::move(web)));
  LogInfo("live page on http://", metrics_address_, "/");
}

absl::Status DeltaServer::Bind(const deltaserve::v1::ServerConfig& config) {
  const int max_message_bytes = static_cast<int>(config.max_message_bytes());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::shared_ptr<grpc::ServerCredentials> credentials =
      tls_ != nullptr ? tls_->credentials() : grpc::InsecureServerCredentials();
  int port = 0;
  // TCP connections come from listener_ (connection_listener.h), with the
  // same credentials and channel arguments as gRPC's own listener's.
  std::shared_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor;
  if (listener_ != nullptr) {
    acceptor = builder.experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, credentials);
    port = listener_->port();
  } else {
    builder.AddListeningPort(options_.listen_address, credentials, &port);
  }
  // gRPC sets SO_REUSEPORT by default: a second server on a taken unix
  // socket would bind too. Off, it fails to bind.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const auto milliseconds = [](uint32_t seconds) {
    return static_cast<int>(std::min<uint64_t>(uint64_t{seconds} * 1000, INT32_MAX));
  };
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             milliseconds(config.handshake_timeout_seconds()));
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             milliseconds(config.max_connection_idle_seconds()));
  // Pings find clients whose host vanished without a FIN or RST: their
  // streams would otherwise stay open (and count as watchers) until TCP gives
  // up, many minutes later, or forever on a connection the server never
  // writes to. Every connection, with or without calls, and without gRPC's
  // default cap of 2 pings between data frames (a watch on an idle model
  // sends none).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, milliseconds(config.keepalive_seconds()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             milliseconds(config.keepalive_timeout_seconds()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.RegisterService(service_.get());
  builder.RegisterService(admin_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", options_.listen_address,
                     "\": expected a free host:port or unix:PATH (is another server using it?)"));
  }
  address_ = BoundAddress(options_.listen_address, port);
  if (listener_ != nullptr) {
    listener_->Start([acceptor](int listener_fd, int fd) {
      grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters connection;
      connection.listener_fd = listener_fd;
      connection.fd = fd;
      acceptor->HandleNewConnection(&connection);
    });
  }
  MarkServing();
  sampler_->Start();
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
  // A model whose journal failed trains no more until a restart: its health
  // and the server's go NOT_SERVING, so a liveness probe restarts the
  // process, which recovers from what is on disk.
  models_->SetFailureListener([health](const std::string& model, const absl::Status& cause) {
    LogError("model \"", model, "\" NOT_SERVING: ", cause.message());
    health->SetServingStatus(ModelHealthServiceName(model), false);
    health->SetServingStatus(kTrainerServiceName, false);
    health->SetServingStatus(false);
  });
}

void DeltaServer::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);  // Not after Shutdown's health->Shutdown().
  if (shutdown_started_ || server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(kTrainerServiceName, serving);
  for (const std::string& name : models_->names()) {
    health->SetServingStatus(ModelHealthServiceName(name), serving);
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
  // No new connections: the listening sockets close (connections waiting
  // in the backlog are reset) and nothing more is handed to gRPC.
  if (listener_ != nullptr) listener_->Stop();
  if (server_ != nullptr) {
    LogInfo("shutting down ", address_);
    // All health statuses → NOT_SERVING; ends health Watch streams.
    if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  }
  const absl::Time deadline = absl::Now() + options_.shutdown_grace;
  models_->CloseHubs();       // Watch streams and GetParameters long-polls end with UNAVAILABLE ...
  service_->CloseSessions();  // ... so do Session streams ...
  models_->StopTrainers();    // ... and queued submissions and Forwards.
  sampler_->Stop();           // A last sample, and the history saved.
  if (!models_->AwaitWatchersGone(deadline)) LogWarning("watch streams still open at the deadline");
  if (!service_->AwaitParameterWaitersGone(deadline)) {
    LogWarning("GetParameters long-polls still open at the deadline");
  }
  if (!service_->AwaitSessionsGone(deadline)) {
    LogWarning("Session streams still open at the deadline (clients not reading)");
  }
  if (server_ != nullptr) {
    // What is left are unary calls that finish in their handler, and idle
    // connections: gRPC's Shutdown(deadline) would wait the whole grace period
    // for an idle client to hang up, so the deadline is now.
    server_->Shutdown(std::chrono::system_clock::now());
    LogInfo("shut down");
  }
  shutdown_done_.Notify();
}

absl::Status DeltaServer::Reload() {
  absl::Status status = authorizer_->Reload();
  if (authorizer_->enabled()) metrics_->RecordReload("auth", status.ok());
  if (!status.ok()) LogError("reload: ", status.message());
  if (tls_ != nullptr) {
    const absl::Status tls = tls_->Reload();
    metrics_->RecordReload("tls", tls.ok());
    if (!tls.ok()) LogError("reload: ", tls.message());
    status.Update(tls);
  }
  return status;
}

void DeltaServer::Wait() { shutdown_done_.WaitForNotification(); }

Trainer* DeltaServer::trainer(absl::string_view model) const {
  absl::StatusOr<ServedModel*> found = models_->Find(model);
  return found.ok() ? (*found)->trainer.get() : nullptr;
}

}  // namespace deltaserve::server
