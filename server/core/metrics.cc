#include "deltaserve/server/core/metrics.h"

#include <algorithm>
#include <iterator>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "civetweb.h"
#include "deltaserve/base/address.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace deltaserve::server {
namespace {

constexpr absl::string_view kRpcNames[] = {
    "GetModelInfo",    "Forward",       "SubmitDelta",          "GetParameters",
    "WatchParameters", "Session",       "SessionForward",       "SessionSubmitDelta",
    "ListModels",      "InputGradient", "SessionInputGradient", "GetMetricsHistory",
};

constexpr absl::string_view kRejectReasonNames[] = {
    "invalid", "stale", "queue_full", "shutting_down", "other",
};

// Indexed by wire::MetricRule − 1 (kOk has no name).
constexpr absl::string_view kMetricDropReasonNames[] = {
    "invalid_name",
    "not_finite",
    "too_many_names",
};

// One name per enumerator: a new rpc or reason without a name fails here.
static_assert(std::size(kRpcNames) == kNumRpcs);
static_assert(std::size(kRejectReasonNames) == kNumRejectReasons);
static_assert(std::size(kMetricDropReasonNames) == kNumMetricDropReasons);

constexpr int kUnknownCode = static_cast<int>(absl::StatusCode::kUnknown);

// Seconds: 100 µs .. 10 s, roughly ×2.5 per bucket.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
  return *buckets;
}

// Rows per batch: powers of two from 1 to 4096.
const prometheus::Histogram::BucketBoundaries& BatchRowBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  return *buckets;
}

// Versions behind: exact for 0..2, then powers of two.
const prometheus::Histogram::BucketBoundaries& StalenessBuckets() {
  static const auto* buckets =
      new prometheus::Histogram::BucketBoundaries{0, 1, 2, 4, 8, 16, 32, 64, 128};
  return *buckets;
}

// Surrogate loss l_s spans orders of magnitude: decades from 1e-6 to 1e4.
const prometheus::Histogram::BucketBoundaries& LossBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4};
  return *buckets;
}

// OK if `address` is host:port or [IPv6]:port (the host is required: the
// server turns ":PORT" into 127.0.0.1:PORT before it gets here).
absl::Status ValidateListenAddress(absl::string_view address) {
  const absl::StatusOr<base::Address> parsed = base::ParseAddress(address);
  if (parsed.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("metrics listen address ", parsed.status().message()));
}

}  // namespace

struct ServerMetrics::Families {
  explicit Families(prometheus::Registry& registry)
      : rpc_requests(prometheus::BuildCounter()
                         .Name("deltaserve_rpc_requests_total")
                         .Help("Finished Trainer rpcs by model, rpc and gRPC status code.")
                         .Register(registry)),
        rpc_latency(prometheus::BuildHistogram()
                        .Name("deltaserve_rpc_latency_seconds")
                        .Help("Wall time of Trainer rpcs (streams: lifetime), by model and rpc.")
                        .Register(registry)),
        forward_rows(prometheus::BuildCounter()
                         .Name("deltaserve_forward_rows_total")
                         .Help("Input rows evaluated by Forward.")
                         .Register(registry)),
        forward_batch_rows(prometheus::BuildHistogram()
                               .Name("deltaserve_forward_batch_rows")
                               .Help("Rows per Forward product the batcher computed.")
                               .Register(registry)),
        submissions_applied(prometheus::BuildCounter()
                                .Name("deltaserve_submissions_applied_total")
                                .Help("SubmitDelta submissions the learner applied.")
                                .Register(registry)),
        submitted_rows(prometheus::BuildCounter()
                           .Name("deltaserve_submitted_rows_total")
                           .Help("Rows of applied submissions (samples toward optimizer steps).")
                           .Register(registry)),
        rejected(prometheus::BuildCounter()
                     .Name("deltaserve_submissions_rejected_total")
                     .Help("Submissions not applied, by reason.")
                     .Register(registry)),
        optimizer_steps(prometheus::BuildCounter()
                            .Name("deltaserve_optimizer_steps_total")
                            .Help("Optimizer steps taken (each publishes a new version).")
                            .Register(registry)),
        version(prometheus::BuildGauge()
                    .Name("deltaserve_model_version")
                    .Help("Current model version.")
                    .Register(registry)),
        staleness(prometheus::BuildHistogram()
                      .Name("deltaserve_submission_staleness")
                      .Help("Versions an applied submission was behind the model.")
                      .Register(registry)),
        surrogate_loss(prometheus::BuildHistogram()
                           .Name("deltaserve_surrogate_loss")
                           .Help("Surrogate loss l_s of applied submissions.")
                           .Register(registry)),
        gradient_norm(prometheus::BuildGauge()
                          .Name("deltaserve_gradient_norm")
                          .Help("Global gradient norm of the last optimizer step, before clipping.")
                          .Register(registry)),
        learning_rate(prometheus::BuildGauge()
                          .Name("deltaserve_learning_rate")
                          .Help("Learning rate the next optimizer step will use (the schedule's).")
                          .Register(registry)),
        queue_depth(prometheus::BuildGauge()
                        .Name("deltaserve_queue_depth")
                        .Help("Submissions waiting for the learner.")
                        .Register(registry)),
        watchers(prometheus::BuildGauge()
                     .Name("deltaserve_watchers")
                     .Help("Open WatchParameters streams.")
                     .Register(registry)),
        watch_updates(prometheus::BuildCounter()
                          .Name("deltaserve_watch_updates_total")
                          .Help("Updates whose write to a WatchParameters stream started "
                                "(paced: at most 100 a second per stream).")
                          .Register(registry)),
        parameter_waiters(prometheus::BuildGauge()
                              .Name("deltaserve_parameter_waiters")
                              .Help("GetParameters calls waiting for min_version (long-polls).")
                              .Register(registry)),
        auth_failures(prometheus::BuildCounter()
                          .Name("deltaserve_auth_failures_total")
                          .Help("Calls refused by --auth_file, by reason and principal name.")
                          .Register(registry)),
        reloads(prometheus::BuildCounter()
                    .Name("deltaserve_reloads_total")
                    .Help("SIGHUP reloads of the auth file and TLS files, by result.")
                    .Register(registry)),
        connections(prometheus::BuildGauge()
                        .Name("deltaserve_connections")
                        .Help("Open TCP connections accepted by the server.")
                        .Register(registry)),
        connections_refused(prometheus::BuildCounter()
                                .Name("deltaserve_connections_refused_total")
                                .Help("Connections accepted and closed at once, by reason.")
                                .Register(registry)),
        client_metric(prometheus::BuildGauge()
                          .Name("deltaserve_client_metric")
                          .Help("Mean of the last 100 values clients reported with applied "
                                "submissions, by model and metric name.")
                          .Register(registry)),
        client_metrics_dropped(prometheus::BuildCounter()
                                   .Name("deltaserve_client_metrics_dropped_total")
                                   .Help("Reported metrics of applied submissions that were not "
                                         "kept, by reason.")
                                   .Register(registry)) {}

  prometheus::Family<prometheus::Counter>& rpc_requests;
  prometheus::Family<prometheus::Histogram>& rpc_latency;
  prometheus::Family<prometheus::Counter>& forward_rows;
  prometheus::Family<prometheus::Histogram>& forward_batch_rows;
  prometheus::Family<prometheus::Counter>& submissions_applied;
  prometheus::Family<prometheus::Counter>& submitted_rows;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Family<prometheus::Counter>& optimizer_steps;
  prometheus::Family<prometheus::Gauge>& version;
  prometheus::Family<prometheus::Histogram>& staleness;
  prometheus::Family<prometheus::Histogram>& surrogate_loss;
  prometheus::Family<prometheus::Gauge>& gradient_norm;
  prometheus::Family<prometheus::Gauge>& learning_rate;
  prometheus::Family<prometheus::Gauge>& queue_depth;
  prometheus::Family<prometheus::Gauge>& watchers;
  prometheus::Family<prometheus::Counter>& watch_updates;
  prometheus::Family<prometheus::Gauge>& parameter_waiters;
  prometheus::Family<prometheus::Counter>& auth_failures;
  prometheus::Family<prometheus::Counter>& reloads;
  prometheus::Family<prometheus::Gauge>& connections;
  prometheus::Family<prometheus::Counter>& connections_refused;
  prometheus::Family<prometheus::Gauge>& client_metric;
  prometheus::Family<prometheus::Counter>& client_metrics_dropped;
};

RejectReason RejectReasonFromStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      return RejectReason::kInvalid;
    case absl::StatusCode::kAborted:
      return RejectReason::kStale;
    case absl::StatusCode::kResourceExhausted:
      return RejectReason::kQueueFull;
    case absl::StatusCode::kUnavailable:
      return RejectReason::kShuttingDown;
    default:
      return RejectReason::kOther;
  }
}

absl::string_view RpcName(Rpc rpc) { return kRpcNames[static_cast<int>(rpc)]; }

absl::string_view RejectReasonName(RejectReason reason) {
  return kRejectReasonNames[static_cast<int>(reason)];
}

absl::string_view MetricDropReasonName(wire::MetricRule rule) {
  return kMetricDropReasonNames[static_cast<int>(rule) - 1];
}

std::string StatusCodeName(int code) {
  if (code < 0 || code >= kNumStatusCodes) code = kUnknownCode;
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

void ModelMetrics::RecordRpc(Rpc rpc, int code, double seconds) {
  const int r = static_cast<int>(rpc);
  const int c = (code < 0 || code >= kNumStatusCodes) ? kUnknownCode : code;
  rpc_requests_[r][c]->Increment();
  rpc_latency_[r]->Observe(seconds);
}

void ModelMetrics::AddForwardRows(uint64_t rows) {
  forward_rows_->Increment(static_cast<double>(rows));
}

void ModelMetrics::RecordForwardBatch(uint64_t rows) {
  forward_batch_rows_->Observe(static_cast<double>(rows));
}

void ModelMetrics::RecordSubmissionApplied(uint64_t rows, uint64_t staleness,
                                           double surrogate_loss) {
  submissions_applied_->Increment();
  submitted_rows_->Increment(static_cast<double>(rows));
  staleness_->Observe(static_cast<double>(staleness));
  surrogate_loss_->Observe(surrogate_loss);
}

void ModelMetrics::RecordSubmissionRejected(RejectReason reason) {
  rejected_[static_cast<int>(reason)]->Increment();
}

void ModelMetrics::RecordOptimizerStep(uint64_t version, double gradient_norm) {
  optimizer_steps_->Increment();
  version_->Set(static_cast<double>(version));
  gradient_norm_->Set(gradient_norm);
}

void ModelMetrics::SetVersion(uint64_t version) { version_->Set(static_cast<double>(version)); }

void ModelMetrics::SetLearningRate(double rate) { learning_rate_->Set(rate); }

void ModelMetrics::SetQueueDepth(int64_t depth) { queue_depth_->Set(static_cast<double>(depth)); }

void ModelMetrics::AddWatchers(int64_t delta) { watchers_->Increment(static_cast<double>(delta)); }

void ModelMetrics::RecordWatchUpdate() { watch_updates_->Increment(); }

double ModelMetrics::ClientSeries::Mean() const {
  const size_t n = total < ring.size() ? static_cast<size_t>(total) : ring.size();
  if (n == 0) return 0.0;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += ring[i];
  return sum / static_cast<double>(n);
}

void ModelMetrics::RecordClientMetrics(absl::Span<const ClientMetric> metrics) {
  absl::MutexLock lock(&client_mu_);
  for (const ClientMetric& metric : metrics) {
    wire::MetricRule rule = wire::CheckMetric(metric.name, metric.value);
    auto it = client_series_.end();
    if (rule == wire::MetricRule::kOk) {
      it = client_series_.find(metric.name);
      if (it == client_series_.end()) {
        if (client_series_.size() >= wire::kMaxMetricNames) {
          rule = wire::MetricRule::kTooManyNames;
        } else {
          // The first report of a name: its one allocation and its series.
          it = client_series_.emplace(metric.name, ClientSeries()).first;
          it->second.gauge =
              &client_metric_family_->Add({{"model", model_}, {"name", metric.name}});
        }
      }
    }
    if (rule != wire::MetricRule::kOk) {
      client_metrics_dropped_[static_cast<int>(rule) - 1]->Increment();
      continue;
    }
    ClientSeries& series = it->second;
    series.ring[series.total % series.ring.size()] = metric.value;
    ++series.total;
    series.sum += metric.value;
    series.gauge->Set(series.Mean());
  }
}

std::vector<ClientMetricSummary> ModelMetrics::ClientMetrics() const {
  absl::MutexLock lock(&client_mu_);
  std::vector<ClientMetricSummary> summaries;
  summaries.reserve(client_series_.size());
  for (const auto& [name, series] : client_series_) {
    const uint64_t count = std::min<uint64_t>(series.total, series.ring.size());
    summaries.push_back(ClientMetricSummary{name, series.Mean(), count, series.total, series.sum});
  }
  return summaries;
}

void ModelMetrics::AddParameterWaiters(int64_t delta) {
  parameter_waiters_->Increment(static_cast<double>(delta));
}

int64_t ModelMetrics::watchers() const { return static_cast<int64_t>(watchers_->Value()); }

int64_t ModelMetrics::parameter_waiters() const {
  return static_cast<int64_t>(parameter_waiters_->Value());
}

void ModelMetrics::NoteSubmitter(absl::string_view peer) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&submitters_mu_);
  auto it = submitters_.find(peer);
  if (it != submitters_.end()) {
    it->second = now;
  } else if (submitters_.size() < kMaxSubmitters) {
    submitters_.emplace(std::string(peer), now);
  }
}

int64_t ModelMetrics::RecentSubmitters(absl::Duration window) {
  const absl::Time cutoff = absl::Now() - window;
  absl::MutexLock lock(&submitters_mu_);
  for (auto it = submitters_.begin(); it != submitters_.end();) {
    it = it->second < cutoff ? submitters_.erase(it) : std::next(it);
  }
  return static_cast<int64_t>(submitters_.size());
}

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)) {}

ServerMetrics::~ServerMetrics() {
  // The endpoint's threads read the registry: stop them first.
  if (http_ != nullptr) mg_stop(http_);
}

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Create(
    const MetricsOptions& options) {
  std::unique_ptr<ServerMetrics> metrics(new ServerMetrics());
  if (options.listen_address.empty()) return metrics;
  if (absl::Status valid = ValidateListenAddress(options.listen_address); !valid.ok()) {
    return valid;
  }
  static std::once_flag init_once;
  std::call_once(init_once, [] { mg_init_library(0); });
  // No document_root: civetweb serves no files, only the handler below.
  // Two threads, as prometheus-cpp's endpoint had; idle connections are
  // dropped after 10 s.
  const char* civet_options[] = {"listening_ports",
                                 options.listen_address.c_str(),
                                 "num_threads",
                                 "2",
                                 "request_timeout_ms",
                                 "10000",
                                 "enable_keep_alive",
                                 "no",
                                 nullptr};
  mg_callbacks callbacks{};
  // civetweb would print its errors (a bind failure) to stderr: they are
  // returned below instead.
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = nullptr;
  init.configuration_options = civet_options;
  char error_text[256] = {};
  unsigned error_code = 0;
  mg_error_data error{};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  metrics->http_ = mg_start2(&init, &error);
  if (metrics->http_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("metrics endpoint cannot listen on ",
                                               options.listen_address, ": ", error_text));
  }
  mg_set_request_handler(metrics->http_, "/", &ServerMetrics::HandleHttp, metrics.get());
  mg_server_port ports[4] = {};
  const int count = mg_get_server_ports(metrics->http_, 4, ports);
  if (count <= 0 || ports[0].port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics endpoint bound no port for ", options.listen_address));
  }
  metrics->port_ = ports[0].port;
  return metrics;
}

void ServerMetrics::SetHttpHandler(HttpHandler handler) {
  HttpHandler previous;
  {
    absl::MutexLock lock(&handler_mu_);  // Waits for the running calls.
    previous = std::exchange(handler_, std::move(handler));
  }
  // `previous` (and what it captured) is destroyed here, outside the lock.
}

HttpResponse ServerMetrics::Serve(const HttpRequest& request) const {
  if (request.path == "/metrics") {
    if (request.method != "GET" && request.method != "HEAD") {
      return {405, "text/plain; charset=utf-8", "expected GET /metrics\n"};
    }
    return {200, "text/plain; version=0.0.4; charset=utf-8", Scrape()};
  }
  absl::ReaderMutexLock lock(&handler_mu_);
  if (!handler_) return {404, "text/plain; charset=utf-8", "not found: expected GET /metrics\n"};
  return handler_(request);
}

int ServerMetrics::HandleHttp(mg_connection* connection, void* cbdata) {
  const auto* self = static_cast<const ServerMetrics*>(cbdata);
  const mg_request_info* info = mg_get_request_info(connection);
  HttpRequest request;
  request.method = info->request_method != nullptr ? info->request_method : "";
  request.path = info->local_uri != nullptr ? info->local_uri : "";
  request.query = info->query_string != nullptr ? info->query_string : "";
  if (const char* authorization = mg_get_header(connection, "Authorization");
      authorization != nullptr) {
    request.authorization = authorization;
  }
  const HttpResponse response = self->Serve(request);
  const char* reason = response.status == 200   ? "OK"
                       : response.status == 400 ? "Bad Request"
                       : response.status == 401 ? "Unauthorized"
                       : response.status == 403 ? "Forbidden"
                       : response.status == 404 ? "Not Found"
                       : response.status == 405 ? "Method Not Allowed"
                                                : "Error";
  // no-store: the page polls; nosniff: bodies are what the type says; the
  // page's address may carry ?token=, so it is never sent on as a referrer.
  const std::string head = absl::StrCat(
      "HTTP/1.1 ", response.status, " ", reason, "\r\nContent-Type: ", response.content_type,
      "\r\nContent-Length: ", response.body.size(),
      "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
      "Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"
      "Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; "
      "img-src 'self' data:; frame-ancestors 'none'\r\n"
      "Connection: close\r\n\r\n");
  mg_write(connection, head.data(), head.size());
  if (request.method != "HEAD" && !response.body.empty()) {
    mg_write(connection, response.body.data(), response.body.size());
  }
  return static_cast<int>(response.status);  // Handled (1..999: the status sent).
}

ModelMetrics* ServerMetrics::ForModel(absl::string_view model) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it != models_.end()) return it->second.get();

  std::unique_ptr<ModelMetrics> m(new ModelMetrics());
  const std::string name(model);
  Families& f = *families_;
  for (int r = 0; r < kNumRpcs; ++r) {
    const std::string rpc(kRpcNames[r]);
    for (int c = 0; c < kNumStatusCodes; ++c) {
      m->rpc_requests_[r][c] =
          &f.rpc_requests.Add({{"model", name}, {"rpc", rpc}, {"code", StatusCodeName(c)}});
    }
    m->rpc_latency_[r] = &f.rpc_latency.Add({{"model", name}, {"rpc", rpc}}, LatencyBuckets());
  }
  m->forward_rows_ = &f.forward_rows.Add({{"model", name}});
  m->forward_batch_rows_ = &f.forward_batch_rows.Add({{"model", name}}, BatchRowBuckets());
  m->submissions_applied_ = &f.submissions_applied.Add({{"model", name}});
  m->submitted_rows_ = &f.submitted_rows.Add({{"model", name}});
  for (int i = 0; i < kNumRejectReasons; ++i) {
    m->rejected_[i] =
        &f.rejected.Add({{"model", name}, {"reason", std::string(kRejectReasonNames[i])}});
  }
  m->optimizer_steps_ = &f.optimizer_steps.Add({{"model", name}});
  m->version_ = &f.version.Add({{"model", name}});
  m->staleness_ = &f.staleness.Add({{"model", name}}, StalenessBuckets());
  m->surrogate_loss_ = &f.surrogate_loss.Add({{"model", name}}, LossBuckets());
  m->gradient_norm_ = &f.gradient_norm.Add({{"model", name}});
  m->learning_rate_ = &f.learning_rate.Add({{"model", name}});
  m->queue_depth_ = &f.queue_depth.Add({{"model", name}});
  m->watchers_ = &f.watchers.Add({{"model", name}});
  m->watch_updates_ = &f.watch_updates.Add({{"model", name}});
  m->model_ = name;
  m->client_metric_family_ = &f.client_metric;
  for (int i = 0; i < kNumMetricDropReasons; ++i) {
    m->client_metrics_dropped_[i] = &f.client_metrics_dropped.Add(
        {{"model", name}, {"reason", std::string(kMetricDropReasonNames[i])}});
  }
  m->parameter_waiters_ = &f.parameter_waiters.Add({{"model", name}});

  ModelMetrics* raw = m.get();
  models_.emplace(name, std::move(m));
  return raw;
}

ModelMetrics* ServerMetrics::UnknownModel() { return ForModel(""); }

void ServerMetrics::RecordAuthFailure(absl::string_view reason, absl::string_view principal) {
  // Family::Add finds the existing series (it locks the family); refusals
  // are not the hot path, and the label values are bounded (see metrics.h).
  families_->auth_failures
      .Add({{"reason", std::string(reason)}, {"principal", std::string(principal)}})
      .Increment();
}

void ServerMetrics::RecordReload(absl::string_view what, bool ok) {
  families_->reloads.Add({{"what", std::string(what)}, {"result", ok ? "ok" : "error"}})
      .Increment();
}

void ServerMetrics::SetConnections(int64_t open) {
  families_->connections.Add({}).Set(static_cast<double>(open));
}

void ServerMetrics::RecordConnectionRefused(absl::string_view reason) {
  families_->connections_refused.Add({{"reason", std::string(reason)}}).Increment();
}

std::string ServerMetrics::Scrape() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace deltaserve::server
