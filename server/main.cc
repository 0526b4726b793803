// deltaserve: the trainer server.
//
//   deltaserve [--config=FILE] [--listen=ADDR] [--metrics_listen=ADDR]
//              [--state_dir=DIR] [--log_level=LEVEL]
//              [--tls_cert_file=PEM --tls_key_file=PEM [--tls_client_ca_file=PEM]]
//              [--auth_file=FILE] [--allow_unauthenticated]
//              [--upstream=ADDR [--upstream_tls_ca_file=PEM] [--upstream_token_file=FILE]]
//   deltaserve --help | --version      (print and exit 0)
//
// With --upstream it is a relay (server/relay/relay.h): it serves the models
// of the deltaserve server at ADDR from a mirror and forwards submissions to
// it; "listening on" comes once every model is mirrored, and an upstream
// that does not list its models within --upstream_wait_seconds is exit 1.
//
// FILE is a deltaserve.v1.ServerConfig in protobuf text format; without it
// the server trains DefaultServerConfig() (server/core/config.h). ADDR is
// host:port (port 0: the OS picks) or unix:PATH; default 127.0.0.1:50051.
// Once serving it prints exactly one line, "listening on ADDR" with the bound
// address, to stdout. With --metrics_listen=host:port it also serves
// Prometheus metrics at /metrics there and logs "metrics on ADDR" (the bound
// address). With --state_dir each model's checkpoints and journal live in
// DIR/<model> and are restored at start (docs/operations.md). SIGINT or
// SIGTERM shut it down cleanly (exit 0), with a final checkpoint; SIGHUP
// reloads the auth file and the TLS files (docs/security.md).
// A state directory that does not match the config (another network or
// optimizer) is refused like a bad config; one that cannot be recovered
// without losing acknowledged submissions, like an address that cannot be
// bound.
// Exit codes: 2 for a bad flag or config (one-line reason on stderr), also
// for a non-loopback --listen without --auth_file or --allow_unauthenticated;
// 1 if an address cannot be bound (e.g. another server holds the port).
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/model/dense_rows.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/heap_release.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/relay/relay.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/server/service/tls.h"

ABSL_FLAG(std::string, config, "",
          "deltaserve.v1.ServerConfig in protobuf text format; empty: the built-in default model");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "address to serve on: host:port (port 0 lets the OS pick) or unix:PATH");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port for the Prometheus endpoint /metrics (port 0 lets the OS pick; no host, "
          "e.g. :9464, binds 127.0.0.1); empty: no endpoint");
ABSL_FLAG(std::string, state_dir, "",
          "keep each model's checkpoints and journal in DIR/<model> and restore them at start; "
          "empty: nothing is written (a restart starts from the seed)");
ABSL_FLAG(std::string, log_level, "info", "stderr log level: debug, info, warning or error");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain to serve TLS with (needs --tls_key_file); empty: plaintext");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle: mutual TLS, clients without a certificate it signed are refused");
ABSL_FLAG(std::string, auth_file, "",
          "deltaserve.v1.AuthConfig (text format: principals with role and token_sha256); "
          "every rpc then needs \"authorization: Bearer <token>\"");
ABSL_FLAG(std::string, upstream, "",
          "relay mode: serve no models of its own but mirror every model of the deltaserve "
          "server at ADDR (host:port, dns:///host:port or unix:PATH) and forward submissions "
          "to it (docs/operations.md, Relays); --config then gives only server settings");
ABSL_FLAG(std::string, upstream_tls_ca_file, "",
          "relay: TLS to the upstream; its certificate must chain to this PEM CA bundle");
ABSL_FLAG(std::string, upstream_tls_cert_file, "",
          "relay: client certificate (PEM) for an upstream with mutual TLS");
ABSL_FLAG(std::string, upstream_tls_key_file, "", "relay: private key of --upstream_tls_cert_file");
ABSL_FLAG(std::string, upstream_tls_server_name, "",
          "relay: the name the upstream's certificate carries, when --upstream is not it");
ABSL_FLAG(std::string, upstream_token_file, "",
          "relay: bearer token for the upstream (SIMULATOR to forward submissions, OBSERVER "
          "for a read-only relay)");
ABSL_FLAG(int64_t, upstream_max_in_flight, 1024,
          "relay: submissions forwarded and not yet answered, at most (then RESOURCE_EXHAUSTED)");
ABSL_FLAG(int64_t, upstream_wait_seconds, 60,
          "relay: how long to wait at start for the upstream to list its models (then exit 1)");
ABSL_FLAG(bool, allow_unauthenticated, false,
          "serve a non-loopback --listen address without --auth_file (anyone who reaches the "
          "port can train the model)");

namespace {

namespace server = ::deltaserve::server;

constexpr int kExitBadConfig = deltaserve::base::kExitBadFlag;
constexpr int kExitCannotServe = 1;

// The config as written; DeltaServer::Start fills defaults and validates it.
absl::StatusOr<deltaserve::v1::ServerConfig> ReadConfig() {
  const std::string path = absl::GetFlag(FLAGS_config);
  return path.empty() ? server::DefaultServerConfig() : server::LoadServerConfig(path);
}

deltaserve::base::ProgramInfo Program() {
  return {"deltaserve",
          "usage: deltaserve [--config=FILE] [--listen=HOST:PORT|unix:PATH] "
          "[--metrics_listen=HOST:PORT] [--state_dir=DIR] [--log_level=LEVEL]\n"
          "       [--tls_cert_file=PEM --tls_key_file=PEM [--tls_client_ca_file=PEM]]\n"
          "       [--auth_file=FILE] [--allow_unauthenticated]\n"
          "       [--upstream=ADDR [--upstream_tls_ca_file=PEM] [--upstream_token_file=FILE]]\n\n"
          "Trains the models in FILE (a deltaserve.v1.ServerConfig in protobuf text format) from\n"
          "the deltas simulators send, and serves them over gRPC. Prints \"listening on ADDR\"\n"
          "once serving; SIGINT/SIGTERM stop it, SIGHUP reloads --auth_file and the TLS files.\n"
          "Exit codes: 0 clean stop, 1 cannot listen, 2 bad flag or config (or a non-loopback\n"
          "--listen without --auth_file or --allow_unauthenticated; see docs/security.md).\n"
          "With --upstream it is a relay: it mirrors the upstream's models, serves reads from\n"
          "the mirror and forwards submissions (docs/operations.md).",
          {"server/main.cc"}};
}

// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread started
// after, so they are only ever taken by sigwait below (no signal-handler work).
sigset_t BlockSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Raises the soft limit on open files to the hard limit: every connection
// costs a descriptor, and gRPC's listener does not recover once accept()
// fails with EMFILE. Returns the limit now in force.
rlim_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  }
  return limit.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  deltaserve::base::DisableMutexDeadlockDetection();
  server::KeepHeapForReuse();  // Before any thread allocates: server/core/heap_release.h.
  if (std::optional<int> exit_code = deltaserve::base::CheckCommandLine(Program(), argc, argv)) {
    return *exit_code;
  }
  absl::ParseCommandLine(argc, argv);
  server::LogLevel level;
  if (!server::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    server::LogError("--log_level: expected debug, info, warning or error, got \"",
                     absl::GetFlag(FLAGS_log_level), "\"");
    return kExitBadConfig;
  }
  server::SetLogLevel(level);
  server::RouteProtobufLogs();

  absl::StatusOr<deltaserve::v1::ServerConfig> config = ReadConfig();
  if (!config.ok()) {
    server::LogError("rejected config: ", config.status().message());
    return kExitBadConfig;
  }
  const rlim_t open_files = RaiseOpenFileLimit();
  const sigset_t signals = BlockSignals();
  server::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.metrics_listen_address = absl::GetFlag(FLAGS_metrics_listen);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.auth_file = absl::GetFlag(FLAGS_auth_file);
  options.allow_unauthenticated = absl::GetFlag(FLAGS_allow_unauthenticated);
  // Would listen openly: one line saying what to do (DeltaServer::Start
  // refuses it too, for in-process users).
  if (const absl::Status open = server::CheckListenExposure(
          options.listen_address, !options.auth_file.empty(), options.allow_unauthenticated);
      !open.ok()) {
    server::LogError(open.message());
    return kExitBadConfig;
  }
  const std::string upstream = absl::GetFlag(FLAGS_upstream);
  absl::StatusOr<std::unique_ptr<server::Relay>> relay;
  absl::StatusOr<std::unique_ptr<server::DeltaServer>> running;
  if (!upstream.empty()) {
    if (absl::GetFlag(FLAGS_upstream_max_in_flight) < 1 ||
        absl::GetFlag(FLAGS_upstream_wait_seconds) < 0) {
      server::LogError(
          "--upstream_max_in_flight: expected >= 1; --upstream_wait_seconds: expected >= 0");
      return kExitBadConfig;
    }
    server::RelayOptions relay_options;
    relay_options.upstream = upstream;
    relay_options.security.tls_ca_file = absl::GetFlag(FLAGS_upstream_tls_ca_file);
    relay_options.security.tls_cert_file = absl::GetFlag(FLAGS_upstream_tls_cert_file);
    relay_options.security.tls_key_file = absl::GetFlag(FLAGS_upstream_tls_key_file);
    relay_options.security.tls_server_name = absl::GetFlag(FLAGS_upstream_tls_server_name);
    relay_options.security.token_file = absl::GetFlag(FLAGS_upstream_token_file);
    relay_options.max_in_flight_submits =
        static_cast<size_t>(absl::GetFlag(FLAGS_upstream_max_in_flight));
    relay_options.wait_for_upstream = absl::Seconds(absl::GetFlag(FLAGS_upstream_wait_seconds));
    relay = server::Relay::Start(*config, options, relay_options);
    if (relay.ok()) {
      running = std::unique_ptr<server::DeltaServer>();  // The relay owns its server.
    } else {
      running = relay.status();
    }
  } else {
    running = server::DeltaServer::Start(*config, options);
  }
  if (!running.ok()) {
    const absl::StatusCode code = running.status().code();
    const bool bad_config =
        code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition;
    server::LogError(bad_config ? "rejected config: " : "cannot serve: ",
                     running.status().message());
    return bad_config ? kExitBadConfig : kExitCannotServe;
  }
  server::LogInfo(
      "config ",
      absl::GetFlag(FLAGS_config).empty() ? "(built-in default)" : absl::GetFlag(FLAGS_config),
      "; open files limit ", open_files, "; Forward kernel ",
      ::deltaserve::model::DenseRowsKernels().front().name);
  server::DeltaServer* served =
      relay.ok() && *relay != nullptr ? (*relay)->server() : running->get();
  std::printf("listening on %s\n", served->address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    server::LogInfo("received SIGHUP: reloading");
    (void)served->Reload();  // Logs what failed; what is in force stays.
  }
  server::LogInfo("received ", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  if (relay.ok() && *relay != nullptr) {
    (*relay)->Shutdown();
  } else {
    served->Shutdown();
  }
  return 0;
}
