// TrainerClient: the C++ client of the deltaserve.v1.Trainer service.
//
// Matrices go in and come out as model::Matrix (row-major float32, rows are
// samples); every result is an absl::Status / absl::StatusOr whose code and
// message are exactly the gRPC status the server returned (FromGrpcStatus).
// Every unary call carries a deadline (ClientOptions::timeout). The client
// does not validate shapes: the server does, and answers INVALID_ARGUMENT.
//
// Watches and slow readers. WatchParameters is latest-wins on the server: it
// has at most one write in flight per watcher and then writes the newest
// version, skipping the ones in between. That only reaches the reader if the
// transport does not buffer many messages ahead of it: gRPC completes a write
// once its bytes fit the receiver's HTTP/2 stream window, and by default the
// client grows that window (BDP probing) to megabytes, i.e. thousands of
// small updates queued in order. So watches run on their own channel
// (CreateWatchChannel) with BDP probing off and a small stream window
// (ClientOptions::watch_window_bytes): once the reader falls behind, the
// server's write waits until the reader reads, and the next write is the
// newest version. A reader slower than the learner then receives, at every
// read, a version at most about one message's worth of transport buffering
// behind the newest (tests/client/slow_watcher_test.cc). The window never
// blocks progress: gRPC widens it for the message being read, whatever its
// size. Unary calls keep the ordinary channel (CreateChannel), so the small
// window never slows Forward or SubmitDelta.
//
// Thread-safety: all methods are const and may be called concurrently from
// any number of threads; a TrainerClient is typically shared through a
// std::shared_ptr (Replica takes one).
#ifndef DELTASERVE_CLIENT_TRAINER_CLIENT_H_
#define DELTASERVE_CLIENT_TRAINER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/client/channel_security.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/proto/config_defaults.h"
#include "deltaserve/proto/grpc_status.h"
#include "deltaserve/v1/admin.grpc.pb.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "deltaserve/v1/trainer.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace deltaserve::client {

// Largest message sent or received by channels from CreateChannel: the
// server's default ServerConfig.max_message_bytes (64 MiB). An int, as gRPC
// takes it.
inline constexpr int kDefaultMaxMessageBytes = static_cast<int>(wire::kDefaultMaxMessageBytes);

// HTTP/2 stream window of watch channels (CreateWatchChannel): how many bytes
// of updates the transport may receive ahead of the reader, beyond the
// message being read. Small, so a slow reader holds ~one update in flight.
inline constexpr int kDefaultWatchWindowBytes = 64;

// Longest wait between a channel's reconnection attempts while the server is
// down (gRPC's own is 120 s): a restarted server is noticed within this. The
// first wait is min(200 ms, this), not gRPC's 1 s, which is also how long a
// spurious failed connect keeps a channel failing fast.
inline constexpr absl::Duration kDefaultMaxReconnectBackoff = absl::Seconds(2);

struct ClientOptions {
  // Deadline of every unary call (GetModelInfo, Forward, SubmitDelta,
  // GetParameters), measured from the moment the call starts. Must be finite.
  absl::Duration timeout = absl::Seconds(10);
  // Deadline of a WatchParameters stream. Infinite by default: a watch lives
  // until cancelled. Set a finite value to bound a watch's lifetime (the
  // stream then ends with DEADLINE_EXCEEDED).
  absl::Duration watch_timeout = absl::InfiniteDuration();
  // Used by CreateChannel / TrainerClient::Connect for both directions.
  int max_message_bytes = kDefaultMaxMessageBytes;
  // Stream window of the watch channel TrainerClient::Connect creates
  // (CreateWatchChannel). ≥ 0; 0 means gRPC's defaults (BDP-probed window,
  // megabytes): then a slow watcher receives a backlog of old versions.
  int watch_window_bytes = kDefaultWatchWindowBytes;
  // SubmitDelta sends a timed-out (DEADLINE_EXCEEDED) or UNAVAILABLE call
  // again, up to this many times, with the same request_id: the server
  // applies a request_id once, so a retry never applies δ twice.
  int submit_retries = 2;
  // Cap of the reconnect backoff of both channels (kDefaultMaxReconnectBackoff
  // above). Finite and positive.
  absl::Duration max_reconnect_backoff = kDefaultMaxReconnectBackoff;
  // TLS, client certificate and bearer token (client/channel_security.h).
  // Default: plaintext, and the token from $DELTASERVE_TOKEN if it is set.
  SecurityOptions security;
};

// Unanswered calls a Session allows by default (client/session.h).
inline constexpr size_t kDefaultSessionInFlight = 64;

class Session;

// A new random request_id (32 hex digits, 128 bits) for SubmitDelta.
std::string NewRequestId();

// A gRPC status as an absl::Status: same canonical code, same message
// (proto/grpc_status.h, shared with the server).
using ::deltaserve::FromGrpcStatus;

// A channel to `target` ("127.0.0.1:50051", "dns:///host:port",
// "unix:/path/to/socket") with `security`'s credentials (default: plaintext,
// no token), send/receive limits of max_message_bytes, HTTP/2 keepalive
// pings so a watch notices a dead peer, and reconnection attempts at most
// max_reconnect_backoff apart (first after min(200 ms, it)). Never blocks;
// connection errors (also a failed TLS handshake) surface on the first call
// as UNAVAILABLE.
std::shared_ptr<grpc::Channel> CreateChannel(
    const std::string& target, int max_message_bytes = kDefaultMaxMessageBytes,
    const ChannelSecurity& security = {},
    absl::Duration max_reconnect_backoff = kDefaultMaxReconnectBackoff);

// A channel for WatchParameters streams: as CreateChannel, plus BDP probing
// off and an HTTP/2 stream window of `window_bytes` (grpc.http2.bdp_probe = 0,
// grpc.http2.lookahead_bytes), so a slow reader keeps the server's write
// waiting and gets the newest version instead of a transport backlog (see the
// top of this file). window_bytes 0: exactly CreateChannel's arguments (a
// distinct channel nonetheless). Never blocks.
std::shared_ptr<grpc::Channel> CreateWatchChannel(
    const std::string& target, int max_message_bytes = kDefaultMaxMessageBytes,
    int window_bytes = kDefaultWatchWindowBytes, const ChannelSecurity& security = {},
    absl::Duration max_reconnect_backoff = kDefaultMaxReconnectBackoff);

// y = f(X; Θ) and the model version Θ belongs to.
struct ForwardResult {
  model::Matrix outputs;  // [batch × output_dim]
  uint64_t version = 0;
};

// One SubmitDelta: δ = ∂loss/∂y for the rows of `inputs`.
struct DeltaSubmission {
  model::Matrix inputs;                        // X  [batch × input_dim]
  std::optional<model::Matrix> acted_outputs;  // ỹ  [batch × output_dim]; nullopt → ỹ = y
  model::Matrix deltas;                        // δ  [batch × output_dim]
  uint64_t version = 0;                        // version that produced ỹ (ForwardResult)
  model::Objective objective = model::Objective::kMinimize;  // kMaximize: δ = ∂reward/∂y
  // Unique per submission; empty: SubmitDelta makes one (NewRequestId). Set
  // it yourself to keep it across your own retries of the same submission.
  std::string request_id = "";
  // Values to report with it (e.g. {"episode_return", 195.0}), kept by the
  // server if the submission is applied and shown on its /metrics as
  // deltaserve_client_metric{model, name} (docs/operations.md). Names match
  // [A-Za-z_][A-Za-z0-9_]{0,63}, values are finite, at most 64 names
  // (proto/client_metrics.h): otherwise SubmitDelta fails with
  // INVALID_ARGUMENT naming the rule, and nothing is sent.
  std::map<std::string, double> metrics = {};
  // Ask for SubmitDeltaResult::input_gradient (docs/model.md, "Input
  // gradients"). False: the server computes nothing extra.
  bool return_input_gradient = false;
  // Ask for SubmitDeltaResult::parameters: the model's newest parameters
  // come back with the answer, so a client acting on its own copy of the
  // model needs no second round trip to act on the weights its δ made
  // (docs/operations.md, "Distance: which transport at which round trip").
  // Costs the whole parameter buffer per answer: for small models.
  bool return_parameters = false;
};

// A flat parameter buffer (layout as in ModelSpec) and its version.
struct Parameters {
  std::string model;  // the resolved model name (never "")
  uint64_t version = 0;
  std::vector<float> parameters;
  // The version's input normalisation statistics (ParameterUpdate.
  // input_statistics); null when the model does not normalise its inputs.
  std::shared_ptr<const model::RunningMeanStd> input_statistics;
};

// The server's answer to a SubmitDelta (see SubmitDeltaResponse).
struct SubmitDeltaResult {
  uint64_t version = 0;         // model version once the δ was applied
  double surrogate_loss = 0.0;  // l_s at the server's y
  uint64_t staleness = 0;       // server version − submission version when applied
  bool stepped = false;         // this submission completed an optimizer step
  bool duplicate = false;       // request_id was applied before; nothing was applied now
  // Only when the submission set return_input_gradient (else 0 x 0):
  // gᵀ·∂y/∂X [batch × input_dim] for this submission's surrogate gradient g
  // (objective sign, delta_scale and mode included, staleness scale not).
  model::Matrix input_gradient = {};
  // Only when the submission set return_parameters (else null): the newest
  // parameters when the server answered, parameters->version >= version.
  std::shared_ptr<const Parameters> parameters = nullptr;
};

// The read-only vector-Jacobian product of InputGradient, at one version.
struct InputGradientResult {
  model::Matrix input_gradient;  // δᵀ·∂y/∂X [batch × input_dim]
  model::Matrix outputs;         // y = f(X) [batch × output_dim]
  uint64_t version = 0;          // the version both were computed at
};

// A WatchParameters stream running on its own thread (TrainerClient::Watch).
// Destroying the handle cancels the stream and joins the thread; never destroy
// it from inside its own on_update callback.
class WatchHandle {
 public:
  ~WatchHandle();
  WatchHandle(const WatchHandle&) = delete;
  WatchHandle& operator=(const WatchHandle&) = delete;

  // Asks the stream to end (ClientContext::TryCancel). Non-blocking,
  // idempotent, callable from any thread including the callback's.
  void Cancel();

  // Blocks until the stream has ended and the callback will not run again;
  // returns how it ended: CANCELLED after Cancel(), otherwise the server's
  // status (OK if the server closed the stream, UNAVAILABLE if it went away
  // after the stream started; before that the stream waits for it).
  // Must not be called from the callback.
  absl::Status Wait() ABSL_LOCKS_EXCLUDED(mu_);

  // Like Wait but gives up after `timeout`; nullopt if still running.
  std::optional<absl::Status> WaitWithTimeout(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class TrainerClient;
  WatchHandle() = default;

  grpc::ClientContext context_;
  std::thread thread_;
  absl::Mutex mu_;
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
};

class TrainerClient {
 public:
  // Uses `stub` for the unary calls, `watch_stub` for WatchParameters
  // (null: `stub` for everything; tests inject fakes) and `admin_stub` for
  // the Admin rpcs (null: they fail with FAILED_PRECONDITION). `stub` must
  // not be null. options.watch_window_bytes only matters to Connect.
  explicit TrainerClient(
      std::shared_ptr<deltaserve::v1::Trainer::StubInterface> stub, ClientOptions options = {},
      std::shared_ptr<deltaserve::v1::Trainer::StubInterface> watch_stub = nullptr,
      std::shared_ptr<deltaserve::v1::Admin::StubInterface> admin_stub = nullptr);

  // A client whose unary calls go over CreateChannel(target,
  // options.max_message_bytes) and whose watches go over a second connection,
  // CreateWatchChannel(target, options.max_message_bytes,
  // options.watch_window_bytes), both with options.security and
  // options.max_reconnect_backoff. INVALID_ARGUMENT if target is empty,
  // options.timeout or max_reconnect_backoff is not finite and positive,
  // max_message_bytes <= 0, watch_window_bytes < 0, or a security
  // file or the token cannot be read (ChannelSecurity::Load). Does not
  // contact the server.
  static absl::StatusOr<std::unique_ptr<TrainerClient>> Connect(const std::string& target,
                                                                ClientOptions options = {});

  const ClientOptions& options() const { return options_; }

  // In every call below, `model` "" means the server's default model, and the
  // returned status is the server's (NOT_FOUND for unknown models,
  // INVALID_ARGUMENT for bad shapes, DEADLINE_EXCEEDED after the timeout,
  // UNAVAILABLE when the server cannot be reached, ...).

  // The model's spec (defaults filled in), version, parameter and output
  // counts, as the wire message.
  absl::StatusOr<deltaserve::v1::ModelInfo> GetModelInfo(const std::string& model = "") const;

  // y = f(X; Θ) at the server's latest version. inputs: [batch × input_dim].
  absl::StatusOr<ForwardResult> Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                        const std::string& model = "") const;

  // Sends δ; returns once the server has accumulated it (and stepped, if this
  // submission completed a step). ABORTED if `submission.version` is too
  // stale (refetch and retry), RESOURCE_EXHAUSTED if the queue is full.
  // DEADLINE_EXCEEDED and UNAVAILABLE are retried (options().submit_retries)
  // with the same request_id, so a call that timed out after the server
  // applied it is answered with the original result (duplicate = true).
  // INVALID_ARGUMENT without sending anything if submission.metrics breaks
  // a rule (see DeltaSubmission::metrics).
  absl::StatusOr<SubmitDeltaResult> SubmitDelta(const DeltaSubmission& submission,
                                                const std::string& model = "") const;

  // The current parameters and their version. With `min_version` above the
  // model's version the call is a long-poll: the server answers once the
  // model reaches min_version, with the NEWEST version then (never an older
  // one in between), so a puller that asks for last_seen + 1 always acts on
  // the newest weights. DEADLINE_EXCEEDED if that does not happen within
  // `timeout` (zero: options().timeout; InfiniteDuration: no deadline),
  // UNAVAILABLE if the server shuts down meanwhile, RESOURCE_EXHAUSTED if
  // the model already has max_parameter_waiters_per_model such calls
  // waiting. min_version 0 (or <= the version) answers at once.
  absl::StatusOr<Parameters> GetParameters(const std::string& model = "", uint64_t min_version = 0,
                                           absl::Duration timeout = absl::ZeroDuration()) const;

  // Same, with a caller-owned fresh context: another thread may end the wait
  // with context->TryCancel() (→ CANCELLED; the server drops the waiter).
  // Its deadline is set here from `timeout` unless already set.
  absl::StatusOr<Parameters> GetParameters(grpc::ClientContext* context, const std::string& model,
                                           uint64_t min_version,
                                           absl::Duration timeout = absl::ZeroDuration()) const;

  // Every model the server serves, each as GetModelInfo returns it, the
  // default model first.
  absl::StatusOr<std::vector<deltaserve::v1::ModelInfo>> ListModels() const;

  // The model's metrics history (GetMetricsHistory, OBSERVER): every
  // series' points newer than `since_unix_ms` (0: all the server keeps),
  // oldest first; series sorted by name (docs/operations.md, "Metrics
  // history"). NOT_FOUND for an unknown model.
  absl::StatusOr<deltaserve::v1::GetMetricsHistoryResponse> GetMetricsHistory(
      const std::string& model = "", int64_t since_unix_ms = 0) const;

  // δᵀ·∂y/∂X (the plain vector-Jacobian product: no surrogate, delta_scale
  // or objective) and y = f(X), both at one version; changes nothing on the
  // server. inputs: [batch × input_dim], deltas: [batch × output_dim].
  absl::StatusOr<InputGradientResult> InputGradient(const Eigen::Ref<const model::Matrix>& inputs,
                                                    const Eigen::Ref<const model::Matrix>& deltas,
                                                    const std::string& model = "") const;

  // A Session stream (client/session.h) on the unary calls' channel: many
  // Forward / SubmitDelta calls in flight at once, at most `max_in_flight`
  // unanswered (≥ 1). Does not wait for the server: if it cannot be reached,
  // the first calls fail with UNAVAILABLE. The stub must outlive the session.
  // UNIMPLEMENTED for a stub without the callback API (test fakes).
  absl::StatusOr<std::unique_ptr<Session>> OpenSession(
      size_t max_in_flight = kDefaultSessionInFlight) const;

  // Blocking watch: calls on_update with the current parameters, then with
  // each newer version as the server publishes it. A slow callback makes the
  // server skip to the newest: with the watch channel of Connect, each update
  // is at most about one message of transport buffering behind the newest
  // version when the callback gets it (see the top of this file). Runs on the calling thread.
  // Returns when on_update returns false (→ OK; the stream is cancelled), when the server ends the
  // stream (its status), or when the deadline (watch_timeout) passes (DEADLINE_EXCEEDED).
  absl::Status WatchParameters(const std::string& model,
                               const std::function<bool(Parameters)>& on_update) const;

  // Same, with a caller-owned context: another thread may end the watch with
  // context->TryCancel() (→ CANCELLED). The context must be fresh (unused);
  // its deadline is set here from watch_timeout unless already set.
  absl::Status WatchParameters(grpc::ClientContext* context, const std::string& model,
                               const std::function<bool(Parameters)>& on_update) const;

  // Non-blocking watch: starts the stream on a new thread owned by the
  // returned handle and delivers every update to on_update on that thread
  // (calls never overlap). Unlike the blocking WatchParameters, the stream
  // waits for the server (gRPC wait_for_ready) while no connection can be
  // made, until watch_timeout or Cancel: a failed connection attempt does
  // not end it (gRPC 1.51 fails some loopback attempts that had not failed,
  // docs/reliability.md). Once the stream runs, losing the server ends it
  // (UNAVAILABLE), as before. Never fails today; StatusOr for future checks.
  // The handle holds its own copy of the client; it may outlive this one.
  absl::StatusOr<std::unique_ptr<WatchHandle>> Watch(
      const std::string& model, std::function<void(Parameters)> on_update) const;

  // Admin rpcs (admin.proto). Checkpoint returns once the server's
  // checkpoint is durable (FAILED_PRECONDITION if it has no --state_dir).
  absl::StatusOr<deltaserve::v1::CheckpointResponse> Checkpoint(
      const std::string& model = "") const;
  // Replaces the model's parameters (optimizer state reset); the new version.
  absl::StatusOr<uint64_t> ImportParameters(const std::string& model,
                                            const std::vector<float>& parameters) const;
  // The same, and (non-null) `input_statistics` replace the model's input
  // normalisation statistics (mean, var, count; the server keeps its clip
  // and epsilon). INVALID_ARGUMENT from a model without normalisation.
  absl::StatusOr<uint64_t> ImportParameters(const std::string& model,
                                            const std::vector<float>& parameters,
                                            const model::RunningMeanStd* input_statistics) const;

 private:
  // A context whose deadline is now + timeout (skipped if infinite).
  static void SetDeadline(grpc::ClientContext& context, absl::Duration timeout);

  // One unary call of `method` (a StubInterface member) with a fresh context
  // whose deadline is options_.timeout; the status as an absl::Status.
  template <typename Request, typename Response, typename Method>
  absl::Status Unary(Method method, const Request& request, Response* response) const {
    grpc::ClientContext context;
    SetDeadline(context, options_.timeout);
    return FromGrpcStatus((stub_.get()->*method)(&context, request, response));
  }

  std::shared_ptr<deltaserve::v1::Trainer::StubInterface> stub_;
  std::shared_ptr<deltaserve::v1::Trainer::StubInterface> watch_stub_;  // never null
  std::shared_ptr<deltaserve::v1::Admin::StubInterface> admin_stub_;    // may be null
  ClientOptions options_;
};

}  // namespace deltaserve::client

#endif  // DELTASERVE_CLIENT_TRAINER_CLIENT_H_
