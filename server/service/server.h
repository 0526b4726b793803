// DeltaServer: the trainer process's gRPC server, startable in-process (tests,
// benchmarks) or from main.cc.
//
// Services registered: deltaserve.v1.Trainer, grpc.health.v1.Health and
// server reflection (grpc.reflection.v1alpha.ServerReflection). Health
// reports SERVING, until Shutdown, for the service names
//   ""                                  the whole server
//   "deltaserve.v1.Trainer"             the Trainer service
//   "deltaserve.v1.Trainer/<model>"     each configured model
//
// Security (docs/security.md): TLS or mutual TLS with ServerOptions::tls_*,
// role tokens with auth_file (every Trainer and Admin rpc calls authorizer()
// first; health and reflection stay open), Reload() for SIGHUP. Start
// refuses a non-loopback listen address without an auth file unless
// allow_unauthenticated.
//
// Connections: a TCP listen address is bound and accepted by
// ConnectionListener (connection_listener.h: at most
// ServerConfig.max_connections open, never the last descriptors, accept never
// stops), which hands each connection to gRPC; unix: uses gRPC's listener.
//
// Metrics (server/core/metrics.h, docs/operations.md) are always recorded; with
// ServerOptions::metrics_listen_address set they are also served over HTTP
// at /metrics.
#ifndef DELTASERVE_SERVER_SERVICE_SERVER_H_
#define DELTASERVE_SERVER_SERVICE_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/v1/config.pb.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace deltaserve::persist {
class FileSystem;
}  // namespace deltaserve::persist

namespace deltaserve::server {

class Authorizer;
class ConnectionListener;
class History;
class HistorySampler;
class LearnerGate;
class ModelRegistry;
class ServerMetrics;
class ServerTls;
class Trainer;
class AdminService;
class TrainerService;

// Descriptors below the open-files limit that connections never take: the
// state directory, the metrics endpoint and gRPC's own (connection_listener.h).
inline constexpr uint32_t kReservedDescriptors = 128;

// Health-check service names (see the file comment).
inline constexpr char kTrainerServiceName[] = "deltaserve.v1.Trainer";
std::string ModelHealthServiceName(absl::string_view model);

struct ServerOptions {
  // "host:port", "[v6]:port", ":port", "unix:PATH" or "unix-abstract:NAME"
  // (base/address.h; port 0: the OS picks).
  std::string listen_address = "127.0.0.1:0";
  // "host:port" or "[v6]:port" of the Prometheus endpoint (port 0: the OS
  // picks; ":PORT" without a host binds 127.0.0.1). Empty:
  // metrics are recorded (see metrics()) but nothing listens.
  std::string metrics_listen_address;
  // How long Shutdown lets watch streams end before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Optional seam: every model's learner passes this gate before taking
  // each batch (server/core/trainer.h LearnerGate; tests hold learners with
  // it). Null: learners never wait.
  std::shared_ptr<LearnerGate> learner_gate;
  // --state_dir: each model's checkpoints and journal in state_dir/<model>
  // (docs/operations.md). Empty: nothing is written.
  std::string state_dir;
  // The file system state_dir lives on (null: POSIX; tests inject failures).
  deltaserve::persist::FileSystem* state_fs = nullptr;

  // Security (docs/security.md). TLS when cert and key are set (PEM files);
  // mutual TLS when tls_client_ca_file is set too: a client without a
  // certificate signed by it fails the handshake.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // A deltaserve.v1.AuthConfig in text format; empty: every call allowed.
  std::string auth_file;
  // Without it, Start refuses (FAILED_PRECONDITION) a non-loopback
  // listen_address when auth_file is empty.
  bool allow_unauthenticated = false;

  // A relay (server/relay/relay.h): called once with the models built from
  // the config, before anything is served (it sets ServedModel::upstream
  // and mirrors each model's first version). An error fails Start.
  std::function<absl::Status(ModelRegistry*)> prepare_models;
};

class DeltaServer {
 public:
  // Validates `config` (INVALID_ARGUMENT with a one-line reason), starts the
  // metrics endpoint if asked (INVALID_ARGUMENT if the address is not
  // host:port, UNAVAILABLE if it cannot bind), builds one Trainer per model,
  // registers the Trainer, health and reflection services and binds the
  // address (UNAVAILABLE if it cannot, e.g. when another process holds the
  // port: SO_REUSEPORT is off, so two servers never share one). Serves on
  // return. Wire defaults (config.h FillDefaults) are filled in first; the
  // config is validated here, once. FAILED_PRECONDITION (one line saying
  // what to do) for an open non-loopback listener (tls.h
  // CheckListenExposure); INVALID_ARGUMENT for unreadable or invalid TLS or
  // auth files.
  static absl::StatusOr<std::unique_ptr<DeltaServer>> Start(
      const deltaserve::v1::ServerConfig& config, const ServerOptions& options);

  // Shuts down (see Shutdown), then stops the metrics endpoint (up to ~2 s,
  // see ~ServerMetrics).
  ~DeltaServer();

  DeltaServer(const DeltaServer&) = delete;
  DeltaServer& operator=(const DeltaServer&) = delete;

  // The address actually bound: "127.0.0.1:41234", "[::1]:5000", "unix:/p".
  const std::string& address() const { return address_; }

  // The metrics endpoint's bound address ("127.0.0.1:41235"; GET /metrics),
  // or empty if metrics_listen_address was empty.
  const std::string& metrics_address() const { return metrics_address_; }

  // The server's metrics (e.g. ServerMetrics::Scrape()). Never null.
  ServerMetrics* metrics() const { return metrics_.get(); }
  // Every model's metrics history (server/core/history.h): the learners'
  // per-step series and the once-a-second samples (HistorySampler), loaded
  // from and saved to --state_dir. Lives as long as the server.
  const History& history() const { return *history_; }

  // Stops accepting calls; in-flight calls finish or fail with UNAVAILABLE;
  // stops the learner threads. In order: health → NOT_SERVING, watch and
  // Session streams end with UNAVAILABLE, learners and Forward batchers stop
  // (queued submissions and Forwards get UNAVAILABLE; so do GetParameters
  // calls waiting for min_version), waits for the watch, long-poll
  // and Session streams to end (at most shutdown_grace; a stream whose
  // client does not read is then cancelled), then the gRPC server shuts down at once: connections
  // with no call in flight do not hold it. Idempotent, thread-safe; blocks
  // until done.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // SIGHUP: re-reads the auth file and the TLS files. Each that is valid
  // takes effect for new calls (auth: at once; TLS: new handshakes within
  // kTlsRefreshSeconds); one that is not keeps what is in force and its
  // error is returned. Open streams and connections are not touched.
  absl::Status Reload();

  // The call checker every service's handlers use first. Never null.
  const Authorizer* authorizer() const { return authorizer_.get(); }

  // Health of "", the Trainer service and every model (a relay: NOT_SERVING
  // while its upstream is unreachable). No-op once Shutdown has begun.
  void SetServing(bool serving) ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until Shutdown has completed (from another thread).
  void Wait();

  // The Trainer serving `model` ("" = default), or null if unknown. For
  // in-process tools and tests (e.g. Trainer::AwaitQueued).
  Trainer* trainer(absl::string_view model) const;

 private:
  DeltaServer(std::unique_ptr<ServerMetrics> metrics, std::string metrics_address,
              std::unique_ptr<History> history, std::unique_ptr<ModelRegistry> models,
              ServerOptions options, uint32_t max_watchers_per_model,
              std::unique_ptr<Authorizer> authorizer, std::unique_ptr<ServerTls> tls,
              std::unique_ptr<ConnectionListener> listener,
              uint32_t max_parameter_waiters_per_model);
  absl::Status Bind(const deltaserve::v1::ServerConfig& config);
  // Health: SERVING for "", the Trainer service and every model.
  void MarkServing();
  // With a metrics endpoint: the live page and its API there (server/web).
  void ServeLivePage();

  const ServerOptions options_;
  const std::unique_ptr<ServerMetrics> metrics_;  // Outlives everything that records.
  const std::string metrics_address_;
  const std::unique_ptr<History> history_;  // Outlives the learners that record.
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<HistorySampler> sampler_;       // Stopped (and saved) in Shutdown.
  const std::unique_ptr<Authorizer> authorizer_;  // Outlives the services.
  const std::unique_ptr<ServerTls> tls_;          // Null: plaintext.
  std::unique_ptr<TrainerService> service_;
  std::unique_ptr<AdminService> admin_;
  // TCP's accept loop (null for unix:); stopped before server_ shuts down.
  std::unique_ptr<ConnectionListener> listener_;
  std::unique_ptr<grpc::Server> server_;  // Last: destroyed first.
  std::string address_;

  absl::Mutex mu_;
  bool shutdown_started_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification shutdown_done_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_SERVICE_SERVER_H_
