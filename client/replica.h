// Replica: a local, continuously updated copy of one server model that runs
// forward passes in-process with the model core (no RPC per Forward).
//
// A background thread owned by the Replica keeps a WatchParameters stream
// open and swaps in each ParameterUpdate as an immutable snapshot; if the
// stream ends (server restart, network error) it reconnects with capped
// exponential backoff. Readers never wait for that thread: Forward takes the
// current std::shared_ptr<const Parameters> and computes with it, so the
// outputs and the version it returns always belong together and can be sent
// back with SubmitDelta.
//
// Freshness: the watch runs on the client's watch channel (TrainerClient::
// Connect → CreateWatchChannel, small HTTP/2 window, no BDP probing), so even
// when installing updates is slower than the learner the replica gets the
// newest version, not a backlog queued in the transport.
#ifndef DELTASERVE_CLIENT_REPLICA_H_
#define DELTASERVE_CLIENT_REPLICA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/client_context.h"

namespace deltaserve::client {

struct ReplicaOptions {
  // First wait before reconnecting a watch that ended; doubles per failed
  // attempt up to max_reconnect_backoff, and resets after an update arrives.
  absl::Duration reconnect_backoff = absl::Milliseconds(50);
  absl::Duration max_reconnect_backoff = absl::Seconds(2);
};

class Replica {
 public:
  // Fetches GetModelInfo and GetParameters for `model` ("" = default model),
  // builds the model::Mlp from the spec, and starts the watcher thread. On
  // return the replica already serves Forward at the fetched version. Fails
  // with the RPC's status, INVALID_ARGUMENT if `client` is null or the spec
  // cannot be converted, INTERNAL if the server's parameter count does not
  // match its spec. The replica keeps `client` alive.
  static absl::StatusOr<std::unique_ptr<Replica>> Create(std::shared_ptr<TrainerClient> client,
                                                         const std::string& model = "",
                                                         ReplicaOptions options = {});

  // Cancels the watch and joins the watcher thread. Blocks until it has.
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // y = f(X; Θ) with the newest snapshot, and that snapshot's version;
  // when the model normalises its inputs, f(X) = mlp(normalize(X)) with the
  // snapshot's input_statistics, as the server's Forward.
  // inputs: [batch × input_dim], batch ≥ 1, else INVALID_ARGUMENT. Uses a
  // thread_local workspace: safe to call concurrently from any threads,
  // never blocks on the watcher.
  absl::StatusOr<ForwardResult> Forward(const Eigen::Ref<const model::Matrix>& inputs) const;

  // Same with caller-owned scratch (one per thread); writes Y into
  // workspace.output() and returns the version used. `normalized` holds
  // normalize(X) when the model normalises (untouched otherwise).
  absl::StatusOr<uint64_t> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                   model::Mlp::Workspace& workspace) const;
  absl::StatusOr<uint64_t> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                   model::Mlp::Workspace& workspace,
                                   model::Matrix& normalized) const;

  // The same at `params` instead of the newest snapshot (e.g. parameters
  // fetched by GetParameters ahead of the push): the one place a replica's
  // forward pass applies the input statistics.
  static absl::StatusOr<uint64_t> ForwardAt(const model::Mlp& mlp, const Parameters& params,
                                            const Eigen::Ref<const model::Matrix>& inputs,
                                            model::Mlp::Workspace& workspace,
                                            model::Matrix& normalized);

  // The newest parameters (never null). Holding it keeps them alive and
  // unchanged while the replica moves on.
  std::shared_ptr<const Parameters> snapshot() const ABSL_LOCKS_EXCLUDED(mu_);

  // snapshot()->version.
  uint64_t version() const ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until version() ≥ min_version (true) or `timeout` passes (false).
  bool WaitForVersion(uint64_t min_version, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

  // The resolved model name, its ModelInfo as fetched by Create, and the
  // network built from its spec.
  const std::string& model_name() const { return info_.spec().name(); }
  const deltaserve::v1::ModelInfo& info() const { return info_; }
  const model::Mlp& mlp() const { return mlp_; }

  // OK while the watch is healthy; otherwise why the last watch attempt
  // ended or why the last update was rejected (e.g. wrong parameter count).
  // For diagnostics: the replica keeps retrying regardless.
  absl::Status watch_status() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Replica(std::shared_ptr<TrainerClient> client, deltaserve::v1::ModelInfo info, model::Mlp mlp,
          Parameters initial, ReplicaOptions options);

  // Watcher thread body: watch, on end back off and reconnect, until stopped.
  void WatchLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Swaps in `update` if its size matches the network and it carries input
  // statistics exactly when the model normalises (of input_dim columns);
  // false otherwise.
  bool Install(Parameters update) ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<TrainerClient> client_;
  const deltaserve::v1::ModelInfo info_;
  const model::Mlp mlp_;
  const ReplicaOptions options_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const Parameters> snapshot_ ABSL_GUARDED_BY(mu_);
  absl::Status watch_status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The context of the watch in flight (null between attempts), so the
  // destructor can TryCancel it.
  grpc::ClientContext* active_context_ ABSL_GUARDED_BY(mu_) = nullptr;

  std::thread watcher_;
};

}  // namespace deltaserve::client

#endif  // DELTASERVE_CLIENT_REPLICA_H_
