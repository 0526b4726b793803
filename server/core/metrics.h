// ServerMetrics: the trainer process's Prometheus metrics (prometheus-cpp,
// pull model). With a non-empty MetricsOptions::listen_address an HTTP
// endpoint (civetweb) serves them at /metrics in Prometheus' text format and
// passes every other path to the handler set with SetHttpHandler (the live
// page and its JSON API, server/web/web_api.h); with an empty one they are
// still recorded (Scrape() renders them) but nothing listens. The endpoint's
// own threads do all of its work: no gRPC thread ever serves HTTP.
//
// Hot path: the server resolves each model's metrics once (ForModel at model
// load) and keeps the ModelMetrics*; every Record/Set call on it then touches
// only pre-created metrics — an atomic add or store, or (histograms) one
// uncontended mutex — with no map lookup, no allocation and no label hashing.
//
// Metric names, types and labels (all prefixed deltaserve_; docs/operations.md
// explains each one):
//   rpc_requests_total{model,rpc,code}        counter
//   rpc_latency_seconds{model,rpc}            histogram
//   forward_rows_total{model}                 counter
//   forward_batch_rows{model}                 histogram (rows per computed batch)
//   submissions_applied_total{model}          counter
//   submitted_rows_total{model}               counter
//   submissions_rejected_total{model,reason}  counter
//   optimizer_steps_total{model}              counter
//   model_version{model}                      gauge
//   submission_staleness{model}               histogram (versions)
//   surrogate_loss{model}                     histogram
//   gradient_norm{model}                      gauge (last step, before clipping)
//   learning_rate{model}                      gauge (the next step's rate)
//   queue_depth{model}                        gauge
//   watchers{model}                           gauge
//   watch_updates_total{model}                counter (writes started to watchers)
//   parameter_waiters{model}                  gauge (GetParameters long-polls waiting)
//   auth_failures_total{reason,principal}     counter (server-wide)
//   reloads_total{what,result}                counter (server-wide)
//   connections                               gauge (server-wide)
//   connections_refused_total{reason}         counter (server-wide)
//   client_metric{model,name}                 gauge (mean of the last 100 reports)
//   client_metrics_dropped_total{model,reason} counter
//
// Reported metrics (client_metric): the values simulators attach to their
// submissions (SubmitDeltaRequest.metrics), recorded for applied ones only.
// Their names come from clients, so they are bounded: at most
// wire::kMaxMetricNames series per model (proto/client_metrics.h), each a
// ring of wire::kMetricWindow values; a metric that breaks a rule is counted
// in client_metrics_dropped_total under one of three fixed reasons and
// leaves no other trace (no series, no log line).
#ifndef DELTASERVE_SERVER_CORE_METRICS_H_
#define DELTASERVE_SERVER_CORE_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "deltaserve/proto/client_metrics.h"

struct mg_connection;
struct mg_context;

namespace prometheus {
class Counter;
template <typename T>
class Family;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace deltaserve::server {

// The Trainer service's rpcs (label rpc="Forward", ...). Add new ones at the
// end, before kLast's definition moves to them, and name them in metrics.cc.
// The Session stream counts itself (kSession: status and lifetime when it
// ends) and each call on it by kind (kSessionForward, kSessionSubmitDelta,
// kSessionInputGradient:
// the code its CallError carries, OK for an answer; wall time from the read
// to the answer), like the unary rpcs.
enum class Rpc {
  kGetModelInfo = 0,
  kForward,
  kSubmitDelta,
  kGetParameters,
  kWatchParameters,
  kSession,
  kSessionForward,
  kSessionSubmitDelta,
  kListModels,  // Names no model: counted under model "" (ServerMetrics::UnknownModel).
  kInputGradient,
  kSessionInputGradient,
  kGetMetricsHistory,
};
inline constexpr int kNumRpcs = static_cast<int>(Rpc::kGetMetricsHistory) + 1;

// Status codes counted per rpc: OK .. UNAUTHENTICATED, the canonical codes
// gRPC and absl share; any other value is counted as UNKNOWN.
inline constexpr int kNumStatusCodes = static_cast<int>(absl::StatusCode::kUnauthenticated) + 1;

// Why a submission was not applied (label reason="stale", ...).
enum class RejectReason {
  kInvalid = 0,   // INVALID_ARGUMENT: shapes, non-finite values, future version.
  kStale,         // ABORTED: more than max_staleness versions behind.
  kQueueFull,     // RESOURCE_EXHAUSTED: the model's queue is full.
  kShuttingDown,  // UNAVAILABLE: the learner is stopping.
  kOther,         // Any other code. Keep last.
};
inline constexpr int kNumRejectReasons = static_cast<int>(RejectReason::kOther) + 1;

// Why a reported metric was dropped (label reason="invalid_name", ...):
// wire::MetricRule without kOk.
inline constexpr int kNumMetricDropReasons = static_cast<int>(wire::MetricRule::kTooManyNames);

// One value a client reported with a submission (SubmitDeltaRequest.metrics),
// as received: ModelMetrics::RecordClientMetrics checks the rules.
struct ClientMetric {
  std::string name;
  double value = 0.0;
};

// A reported metric's aggregate (ModelMetrics::ClientMetrics).
struct ClientMetricSummary {
  std::string name;
  double mean = 0.0;   // Of the last `count` reports (what the gauge shows).
  uint64_t count = 0;  // Reports in the mean: min(total, wire::kMetricWindow).
  uint64_t total = 0;  // Reports kept since the server started.
  double sum = 0.0;    // Of those `total` reports (the history's per-second means).
};

// Maps a Trainer error to its reason, following docs/architecture.md §6.
RejectReason RejectReasonFromStatus(absl::StatusCode code);

// Label values, e.g. RpcName(Rpc::kForward) == "Forward",
// RejectReasonName(RejectReason::kQueueFull) == "queue_full",
// StatusCodeName(5) == "NOT_FOUND" (absl::StatusCodeToString: the canonical
// names, which gRPC and absl share with their numbering; an out-of-range code
// is reported as "UNKNOWN").
absl::string_view RpcName(Rpc rpc);
absl::string_view RejectReasonName(RejectReason reason);
// "invalid_name", "not_finite" or "too_many_names" (not for kOk).
absl::string_view MetricDropReasonName(wire::MetricRule rule);
std::string StatusCodeName(int code);

// One model's metrics. Every method is thread-safe and never blocks on
// anything but a histogram's own uncontended mutex. Owned by ServerMetrics;
// the pointer stays valid for its lifetime.
class ModelMetrics {
 public:
  // One finished rpc: its status code (grpc::StatusCode or absl::StatusCode,
  // same numbers) and its wall time in seconds (for WatchParameters: the
  // stream's lifetime, recorded when it ends).
  void RecordRpc(Rpc rpc, int code, double seconds);

  // Rows a Forward call evaluated.
  void AddForwardRows(uint64_t rows);

  // One product the Forward batcher computed, of `rows` stacked rows
  // (server/core/forward_batcher.h; unbatched: one request's rows).
  void RecordForwardBatch(uint64_t rows);

  // A submission the learner applied: its rows, its staleness (versions
  // behind when applied) and its surrogate loss l_s.
  void RecordSubmissionApplied(uint64_t rows, uint64_t staleness, double surrogate_loss);

  // A submission refused at Submit() or by the learner.
  void RecordSubmissionRejected(RejectReason reason);

  // An optimizer step that produced `version`, with the global gradient norm
  // ‖G‖ it stepped on (before clipping).
  void RecordOptimizerStep(uint64_t version, double gradient_norm);

  // Sets the version gauge without counting a step (model load, restore).
  void SetVersion(uint64_t version);

  // The learning rate the model's next optimizer step will use (its
  // schedule's; set at load, restore and after each step).
  void SetLearningRate(double rate);

  // Submissions waiting in the model's queue.
  void SetQueueDepth(int64_t depth);

  // WatchParameters streams open on the model: +1 when one starts, -1 when
  // it ends.
  void AddWatchers(int64_t delta);

  // The metrics an applied submission reported. Each one that follows the
  // rules (proto/client_metrics.h) joins its name's ring of the last
  // wire::kMetricWindow values and sets client_metric{model,name} to their
  // mean; a new name beyond wire::kMaxMetricNames, a bad name or a
  // non-finite value is dropped and counted by reason. Allocates only for a
  // name seen for the first time (at most kMaxMetricNames per model); holds
  // client_mu_ for the few metrics of one call.
  void RecordClientMetrics(absl::Span<const ClientMetric> metrics) ABSL_LOCKS_EXCLUDED(client_mu_);

  // The current aggregate of every kept name, sorted by name (for a live
  // view; /metrics shows the same means). Holds client_mu_ while it copies.
  std::vector<ClientMetricSummary> ClientMetrics() const ABSL_LOCKS_EXCLUDED(client_mu_);
  // A WatchParameters stream started writing an update (the initial one too).
  void RecordWatchUpdate();
  // GetParameters calls parked waiting for min_version: +1 when one parks,
  // −1 when it ends (answered, cancelled, deadline or shutdown).
  void AddParameterWaiters(int64_t delta);

  // The gauges' current values (the history sampler's once-a-second read).
  int64_t watchers() const;
  int64_t parameter_waiters() const;

  // A submission arrived from `peer` (the gRPC peer address of its
  // connection: a Session stream or a unary caller). One short mutex and a
  // hash lookup; at most kMaxSubmitters peers are remembered.
  void NoteSubmitter(absl::string_view peer) ABSL_LOCKS_EXCLUDED(submitters_mu_);
  // Peers that submitted within `window` before now; forgets older ones
  // (the "simulators" history series: docs/operations.md).
  int64_t RecentSubmitters(absl::Duration window) ABSL_LOCKS_EXCLUDED(submitters_mu_);
  static constexpr size_t kMaxSubmitters = 4096;

 private:
  friend class ServerMetrics;
  ModelMetrics() = default;

  // One kept name: the gauge and the ring of its last reports.
  struct ClientSeries {
    prometheus::Gauge* gauge = nullptr;
    std::array<double, wire::kMetricWindow> ring{};
    uint64_t total = 0;  // Reports so far; the next goes to ring[total % size].
    double sum = 0.0;    // Of every report so far.
    double Mean() const;
  };

  std::array<std::array<prometheus::Counter*, kNumStatusCodes>, kNumRpcs> rpc_requests_{};
  std::array<prometheus::Histogram*, kNumRpcs> rpc_latency_{};
  prometheus::Counter* forward_rows_ = nullptr;
  prometheus::Histogram* forward_batch_rows_ = nullptr;
  prometheus::Counter* submissions_applied_ = nullptr;
  prometheus::Counter* submitted_rows_ = nullptr;
  std::array<prometheus::Counter*, kNumRejectReasons> rejected_{};
  prometheus::Counter* optimizer_steps_ = nullptr;
  prometheus::Gauge* version_ = nullptr;
  prometheus::Histogram* staleness_ = nullptr;
  prometheus::Histogram* surrogate_loss_ = nullptr;
  prometheus::Gauge* gradient_norm_ = nullptr;
  prometheus::Gauge* learning_rate_ = nullptr;
  prometheus::Gauge* queue_depth_ = nullptr;
  prometheus::Gauge* watchers_ = nullptr;
  prometheus::Counter* watch_updates_ = nullptr;

  std::string model_;  // The label value of this model's series.
  prometheus::Family<prometheus::Gauge>* client_metric_family_ = nullptr;
  std::array<prometheus::Counter*, kNumMetricDropReasons> client_metrics_dropped_{};
  mutable absl::Mutex client_mu_;
  std::map<std::string, ClientSeries, std::less<>> client_series_ ABSL_GUARDED_BY(client_mu_);
  prometheus::Gauge* parameter_waiters_ = nullptr;
  absl::Mutex submitters_mu_;
  std::map<std::string, absl::Time, std::less<>> submitters_ ABSL_GUARDED_BY(submitters_mu_);
};

struct MetricsOptions {
  // "host:port" for the HTTP endpoint ("0.0.0.0:9464"; port 0: the OS
  // picks, see port()). Empty: record only, serve nothing.
  std::string listen_address;
};

// One request the metrics endpoint passes to the HttpHandler (any path but
// /metrics). The views are valid only during the call.
struct HttpRequest {
  absl::string_view method;                        // "GET", ...
  absl::string_view path;                          // Decoded path without the query: "/api/models".
  absl::string_view query;                         // Raw query string without '?' ("" if none).
  std::optional<absl::string_view> authorization;  // The Authorization header.
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Runs on the endpoint's threads, concurrently; must be thread-safe.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class ServerMetrics {
 public:
  // Creates the metric families and, if options.listen_address is set, starts
  // the HTTP endpoint (UNAVAILABLE with the address and the reason if it
  // cannot bind; INVALID_ARGUMENT if the address is not host:port).
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Create(const MetricsOptions& options);

  // Stops the endpoint. With an endpoint this blocks for up to ~2 s
  // (civetweb's listener polls with a 2 s timeout before it sees the stop).
  ~ServerMetrics();

  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // The metrics of `model` (a served model's name), created on first use with
  // every label combination pre-registered. Takes a mutex: call it once per
  // model (at load) and keep the pointer, not once per request. Never null.
  ModelMetrics* ForModel(absl::string_view model) ABSL_LOCKS_EXCLUDED(mu_);

  // The bucket for requests naming a model the server does not serve
  // (label model="", so clients cannot create unbounded label values).
  ModelMetrics* UnknownModel() ABSL_LOCKS_EXCLUDED(mu_);

  // A call the Authorizer refused (server/service/auth.h): `reason` is
  // "missing", "malformed", "unknown_token" or "permission_denied";
  // `principal` the authenticated name (only for permission_denied, else "").
  // Names come from --auth_file, never from the request, so the label values
  // stay bounded; tokens are never a label.
  void RecordAuthFailure(absl::string_view reason, absl::string_view principal);

  // A SIGHUP reload of `what` ("auth" or "tls") that succeeded or failed.
  void RecordReload(absl::string_view what, bool ok);

  // TCP connections the listener has handed to gRPC that are still open
  // (server/service/connection_listener.h; refreshed at least every second).
  void SetConnections(int64_t open);

  // A connection the listener accepted and closed at once: `reason` is
  // "max_connections" (ServerConfig.max_connections open already) or
  // "open_files" (too few descriptors left below the open-files limit).
  void RecordConnectionRefused(absl::string_view reason);

  // Serves every path but /metrics with `handler` from now on (an empty
  // handler: 404 for them, the default). Waits for calls of the previous
  // handler still running, so whatever it referenced may be destroyed once
  // this returns (the server clears it before it destroys its parts).
  void SetHttpHandler(HttpHandler handler) ABSL_LOCKS_EXCLUDED(handler_mu_);

  // The TCP port the endpoint is bound to; 0 if it does not listen.
  int port() const { return port_; }

  // Every metric in Prometheus' text exposition format (what /metrics serves).
  std::string Scrape() const;

 private:
  struct Families;

  ServerMetrics();

  // civetweb's request callback (cbdata: the ServerMetrics).
  static int HandleHttp(mg_connection* connection, void* cbdata);
  HttpResponse Serve(const HttpRequest& request) const ABSL_LOCKS_EXCLUDED(handler_mu_);

  const std::shared_ptr<prometheus::Registry> registry_;
  const std::unique_ptr<Families> families_;
  mg_context* http_ = nullptr;  // The endpoint; null if it does not listen.
  int port_ = 0;

  // Held shared while a request runs the handler, exclusively to replace it.
  mutable absl::Mutex handler_mu_;
  HttpHandler handler_ ABSL_GUARDED_BY(handler_mu_);

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ModelMetrics>, std::less<>> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_METRICS_H_
