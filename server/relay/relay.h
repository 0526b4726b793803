// Relay: `deltaserve --upstream=ADDR`, a server that trains nothing and
// fans an upstream server's versions out to the clients of one node
// (docs/operations.md "Relays").
//
// It mirrors every model the upstream lists (ListModels at start), each as a
// ServedModel whose Trainer only holds the upstream's versions
// (Trainer::Mirror), fed by one WatchParameters stream per model. So the
// ordinary TrainerService answers ListModels, GetModelInfo, GetParameters
// (with the min_version long-poll), WatchParameters, Forward, InputGradient
// and a Session's Forward / InputGradient calls from the mirror, through the
// same WeightHub, EncodedUpdateCache and reactors as any server.
// SubmitDelta (unary and on a Session) goes upstream as it came, request_id
// included, through ServedModel::upstream; the answer or the error (same
// code and message) comes back. Admin rpcs are FAILED_PRECONDITION.
//
// Versions are the upstream's. When a watch stream ends (upstream gone or
// restarted) the model is no longer mirrored: health goes NOT_SERVING, reads
// go on from the last version, submissions fail (UNAVAILABLE from the
// channel). The stream is reopened (200 ms, then at most
// max_reconnect_backoff apart); its first version becomes the mirror's even
// if lower than before (Snapshot::generation), and once every model is
// mirrored again health is SERVING.
//
// Bounds: at most max_in_flight_submits submissions forwarded and not yet
// answered (one more: RESOURCE_EXHAUSTED at once); each forwarded call has a
// deadline of submit_timeout.
#ifndef DELTASERVE_SERVER_RELAY_RELAY_H_
#define DELTASERVE_SERVER_RELAY_RELAY_H_

#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/client/channel_security.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::server {

class UpstreamSubmitter;
class ModelRegistry;
struct ServedModel;

struct RelayOptions {
  // The upstream server: "host:port", "dns:///host:port" or "unix:PATH".
  std::string upstream;
  // TLS toward the upstream (tls_ca_file, client certificate, server name)
  // and its bearer token (token_file); client/channel_security.h. The token
  // needs SIMULATOR to forward submissions, OBSERVER for a read-only relay.
  client::SecurityOptions security;
  // How long Start waits for the upstream's model list before failing with
  // UNAVAILABLE (unreachable) — a relay cannot serve before it knows them.
  absl::Duration wait_for_upstream = absl::Seconds(60);
  // Submissions forwarded and not yet answered, at most.
  size_t max_in_flight_submits = 1024;
  // Deadline of each forwarded submission (and of Start's upstream calls).
  absl::Duration submit_timeout = absl::Seconds(30);
  // Longest wait between two attempts to reopen a model's watch stream.
  absl::Duration max_reconnect_backoff = client::kDefaultMaxReconnectBackoff;
  // Largest message to and from the upstream.
  int max_message_bytes = client::kDefaultMaxMessageBytes;
};

class Relay {
 public:
  // Loads the upstream credentials (INVALID_ARGUMENT naming the file), lists
  // the upstream's models and reads each one's current version (retrying
  // for up to wait_for_upstream: then UNAVAILABLE; UNAUTHENTICATED or
  // PERMISSION_DENIED from the upstream at once), then starts a DeltaServer
  // with `config`'s server settings and the upstream's models (`config`'s
  // own models are replaced) under `options` (listen address, TLS, auth
  // file: as any server, including the refusal to listen openly), already
  // mirrored, and the watch streams. FAILED_PRECONDITION for a state_dir
  // (a relay keeps no state).
  static absl::StatusOr<std::unique_ptr<Relay>> Start(deltaserve::v1::ServerConfig config,
                                                      ServerOptions options, RelayOptions relay);

  // Shutdown().
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  DeltaServer* server() const { return server_.get(); }
  const std::string& address() const { return server_->address(); }

  // Stops the watch streams, cancels forwarded submissions (their callers
  // get CANCELLED), then DeltaServer::Shutdown. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // True while every model is mirrored over an open watch stream (what
  // health reports).
  bool mirrored() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Mirror;  // One model's watch thread and state.

  Relay(RelayOptions options, std::unique_ptr<client::TrainerClient> client,
        std::shared_ptr<UpstreamSubmitter> submitter);
  void WatchLoop(Mirror* mirror);
  // Applies one upstream version to `mirror`'s model; false if it does not fit.
  bool Apply(Mirror* mirror, client::Parameters update);
  void SetLive(Mirror* mirror, bool live) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits `delay` or until Shutdown; false once stopping.
  bool Backoff(absl::Duration delay) ABSL_LOCKS_EXCLUDED(mu_);

  const RelayOptions options_;
  const std::unique_ptr<client::TrainerClient> client_;
  const std::shared_ptr<UpstreamSubmitter> submitter_;
  std::vector<std::unique_ptr<Mirror>> mirrors_;
  std::unique_ptr<DeltaServer> server_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t live_ ABSL_GUARDED_BY(mu_) = 0;  // Mirrors whose stream is open and fed.
  bool reported_serving_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_RELAY_RELAY_H_
