#include "deltaserve/server/relay/relay.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/proto/grpc_status.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/server/service/call_paths.h"
#include "deltaserve/server/service/tls.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace deltaserve::server {

namespace v1 = ::deltaserve::v1;

namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(200);

// An upstream error as the relay's answer: the same code; UNAVAILABLE says
// which upstream could not be reached, every other message is the upstream's
// word for word.
absl::Status FromUpstream(const std::string& upstream, const grpc::Status& status) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.code() == absl::StatusCode::kUnavailable) {
    return absl::UnavailableError(
        absl::StrCat("relay: upstream ", upstream, " unavailable: ", converted.message()));
  }
  return converted;
}

// Errors that retrying will not fix (a bad token or certificate, a server
// that is not deltaserve).
bool Permanent(absl::StatusCode code) {
  return code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kUnimplemented;
}

}  // namespace

// Forwards submissions over the upstream's unary channel with the callback
// API: no thread waits for an answer.
class UpstreamSubmitter final : public SubmitForwarder,
                                public std::enable_shared_from_this<UpstreamSubmitter> {
 public:
  UpstreamSubmitter(std::shared_ptr<v1::Trainer::Stub> stub, std::string upstream,
                    size_t max_in_flight, absl::Duration timeout)
      : stub_(std::move(stub)),
        upstream_(std::move(upstream)),
        max_in_flight_(max_in_flight),
        timeout_(timeout) {}

  void Submit(const v1::SubmitDeltaRequest& request, Done done) override {
    auto call = std::make_unique<Call>();
    {
      absl::MutexLock lock(&mu_);
      if (closed_) {
        return std::move(done)(absl::UnavailableError("relay: shutting down"));
      }
      if (in_flight_.size() >= max_in_flight_) {
        return std::move(done)(absl::ResourceExhaustedError(absl::StrCat(
            "relay: ", max_in_flight_, " submissions already forwarded to upstream ", upstream_,
            " and not answered (--upstream_max_in_flight); retry with backoff")));
      }
      in_flight_.insert(&call->context);
    }
    call->request = request;  // request_id and all, as the client sent it.
    call->done = std::move(done);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    Call* raw = call.release();  // Owned by the callback from here.
    std::shared_ptr<UpstreamSubmitter> self = shared_from_this();
    stub_->async()->SubmitDelta(&raw->context, &raw->request, &raw->response,
                                [self, raw](grpc::Status status) {
                                  std::unique_ptr<Call> owned(raw);
                                  {
                                    absl::MutexLock lock(&self->mu_);
                                    self->in_flight_.erase(&owned->context);
                                  }
                                  if (status.ok()) {
                                    std::move(owned->done)(std::move(owned->response));
                                  } else {
                                    std::move(owned->done)(FromUpstream(self->upstream_, status));
                                  }
                                });
  }

  // Refuses new submissions and cancels those in flight (their callers get
  // CANCELLED).
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (grpc::ClientContext* context : in_flight_) context->TryCancel();
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::SubmitDeltaRequest request;
    v1::SubmitDeltaResponse response;
    Done done;
  };

  const std::shared_ptr<v1::Trainer::Stub> stub_;
  const std::string upstream_;
  const size_t max_in_flight_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<grpc::ClientContext*> in_flight_ ABSL_GUARDED_BY(mu_);
};

struct Relay::Mirror {
  std::string name;
  ServedModel* model = nullptr;
  // The upstream's ModelInfo as last read (at start, then at each
  // reconnect): optimizer_steps and learning_rate of mirrored versions.
  v1::ModelInfo info;
  // Watch thread only (before it starts: Start's).
  std::shared_ptr<const Snapshot> current;
  bool live = true;                        // Guarded by Relay::mu_.
  grpc::ClientContext* context = nullptr;  // Guarded by Relay::mu_: the open stream's.
  std::thread thread;
};

Relay::Relay(RelayOptions options, std::unique_ptr<client::TrainerClient> client,
             std::shared_ptr<UpstreamSubmitter> submitter)
    : options_(std::move(options)), client_(std::move(client)), submitter_(std::move(submitter)) {}

Relay::~Relay() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Relay>> Relay::Start(v1::ServerConfig config, ServerOptions options,
                                                    RelayOptions relay) {
  DELTASERVE_RETURN_IF_ERROR(CheckListenExposure(options.listen_address, !options.auth_file.empty(),
                                                 options.allow_unauthenticated));
  if (!options.state_dir.empty()) {
    return absl::FailedPreconditionError(
        "a relay (--upstream) keeps no state: drop --state_dir (the upstream keeps the model's)");
  }
  if (relay.upstream.empty()) return absl::InvalidArgumentError("upstream: expected an address");
  if (relay.max_in_flight_submits == 0) {
    return absl::InvalidArgumentError("upstream_max_in_flight: expected at least 1");
  }
  absl::StatusOr<client::ChannelSecurity> security = client::ChannelSecurity::Load(relay.security);
  if (!security.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("upstream: ", security.status().message()));
  }
  std::shared_ptr<v1::Trainer::Stub> stub = v1::Trainer::NewStub(client::CreateChannel(
      relay.upstream, relay.max_message_bytes, *security, relay.max_reconnect_backoff));
  std::shared_ptr<v1::Trainer::Stub> watch_stub = v1::Trainer::NewStub(client::CreateWatchChannel(
      relay.upstream, relay.max_message_bytes, client::kDefaultWatchWindowBytes, *security,
      relay.max_reconnect_backoff));
  client::ClientOptions client_options;
  client_options.timeout = relay.submit_timeout;
  client_options.max_message_bytes = relay.max_message_bytes;
  client_options.max_reconnect_backoff = relay.max_reconnect_backoff;
  auto trainer_client = std::make_unique<client::TrainerClient>(stub, client_options, watch_stub);
  auto submitter = std::make_shared<UpstreamSubmitter>(
      stub, relay.upstream, relay.max_in_flight_submits, relay.submit_timeout);
  std::unique_ptr<Relay> self(new Relay(relay, std::move(trainer_client), submitter));
  const std::string& upstream = self->options_.upstream;

  // The models and their current versions, retried while the upstream
  // cannot be reached.
  const absl::Time deadline = absl::Now() + relay.wait_for_upstream;
  absl::Duration backoff = kFirstBackoff;
  std::vector<client::Parameters> first;
  std::vector<v1::ModelInfo> listed;
  for (;;) {
    absl::Status status;
    absl::StatusOr<std::vector<v1::ModelInfo>> models = self->client_->ListModels();
    status = models.status();
    if (status.ok()) {
      listed = *std::move(models);
      first.clear();
      for (const v1::ModelInfo& info : listed) {
        absl::StatusOr<client::Parameters> parameters =
            self->client_->GetParameters(info.spec().name());
        if (!parameters.ok()) {
          status = parameters.status();
          break;
        }
        first.push_back(*std::move(parameters));
      }
    }
    if (status.ok()) break;
    if (Permanent(status.code())) {
      return absl::Status(status.code(),
                          absl::StrCat("upstream ", upstream, ": ", status.message()));
    }
    if (absl::Now() + backoff > deadline) {
      return absl::UnavailableError(
          absl::StrCat("upstream ", upstream, " did not list its models ", "within ",
                       absl::FormatDuration(relay.wait_for_upstream), ": ", status.message()));
    }
    LogWarning("upstream ", upstream, ": ", status.message(), "; retrying");
    absl::SleepFor(backoff);
    backoff = std::min(2 * backoff, relay.max_reconnect_backoff);
  }
  if (listed.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("upstream ", upstream, " serves no models"));
  }

  config.clear_models();
  for (const v1::ModelInfo& info : listed) {
    *config.add_models() = info.spec();
    auto mirror = std::make_unique<Mirror>();
    mirror->name = info.spec().name();
    mirror->info = info;
    self->mirrors_.push_back(std::move(mirror));
  }
  Relay* raw = self.get();
  options.prepare_models = [raw, &first](ModelRegistry* models) -> absl::Status {
    for (size_t i = 0; i < raw->mirrors_.size(); ++i) {
      Mirror* mirror = raw->mirrors_[i].get();
      DELTASERVE_ASSIGN_OR_RETURN(mirror->model, models->Find(mirror->name));
      mirror->model->upstream = raw->submitter_;
      if (!raw->Apply(mirror, std::move(first[i]))) {
        return absl::FailedPreconditionError(
            absl::StrCat("upstream ", raw->options_.upstream, ": model \"", mirror->name,
                         "\": its parameters do not fit its spec"));
      }
    }
    return absl::OkStatus();
  };
  DELTASERVE_ASSIGN_OR_RETURN(self->server_, DeltaServer::Start(config, options));
  {
    absl::MutexLock lock(&self->mu_);
    self->live_ = self->mirrors_.size();
  }
  for (const auto& mirror : self->mirrors_) {
    Mirror* m = mirror.get();
    m->thread = std::thread([raw, m] { raw->WatchLoop(m); });
  }
  LogInfo("relay of ", upstream, ": mirroring ", self->mirrors_.size(), " model(s)");
  return self;
}

bool Relay::Apply(Mirror* mirror, client::Parameters update) {
  const std::shared_ptr<const Snapshot>& current = mirror->current;
  uint64_t generation = current != nullptr ? current->generation : 0;
  if (current != nullptr && update.version <= current->version) {
    if (update.version == current->version && update.parameters == current->parameters) {
      return true;  // The same version again (a reopened stream).
    }
    // The upstream restarted without its state: follow it down.
    ++generation;
    LogWarning("relay: model \"", mirror->name, "\" went from version ", current->version, " to ",
               update.version, " upstream (restarted?); following it");
  }
  auto next = std::make_shared<Snapshot>();
  next->version = update.version;
  next->parameters = std::move(update.parameters);
  next->input_statistics = std::move(update.input_statistics);
  next->generation = generation;
  // Steps and rate as of the last ModelInfo read, advanced by the versions
  // since (every version after it a step, as in training without imports).
  const v1::ModelInfo& info = mirror->info;
  next->optimizer_steps = update.version >= info.version()
                              ? info.optimizer_steps() + (update.version - info.version())
                              : update.version;
  next->learning_rate = info.learning_rate();
  if (absl::Status mirrored = mirror->model->trainer->Mirror(next); !mirrored.ok()) {
    LogError("relay: upstream ", options_.upstream, ": ", mirrored.message());
    return false;
  }
  mirror->current = std::move(next);
  return true;
}

void Relay::WatchLoop(Mirror* mirror) {
  absl::Duration backoff = kFirstBackoff;
  bool reconnect = false;
  bool outage_logged = false;  // Each outage is a warning once, then debug lines.
  for (;;) {
    if (reconnect) {
      absl::StatusOr<v1::ModelInfo> info = client_->GetModelInfo(mirror->name);
      if (info.ok()) mirror->info = *std::move(info);
    }
    reconnect = true;
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      mirror->context = &context;
    }
    bool fed = false;
    const absl::Status ended =
        client_->WatchParameters(&context, mirror->name, [&](client::Parameters update) {
          if (!Apply(mirror, std::move(update))) return false;
          if (!fed) {
            fed = true;
            outage_logged = false;
            backoff = kFirstBackoff;
            SetLive(mirror, true);
          }
          return true;
        });
    {
      absl::MutexLock lock(&mu_);
      mirror->context = nullptr;
      if (stopping_) return;
    }
    SetLive(mirror, false);
    const std::string why = absl::StrCat(
        "relay: watch of model \"", mirror->name, "\" on upstream ", options_.upstream, " ended (",
        ended.ok() ? std::string("its parameters do not fit") : ended.ToString(),
        "); reconnecting");
    if (outage_logged) {
      LogDebug(why);
    } else {
      LogWarning(why);
      outage_logged = true;
    }
    if (!Backoff(backoff)) return;
    backoff = std::min(2 * backoff, options_.max_reconnect_backoff);
  }
}

void Relay::SetLive(Mirror* mirror, bool live) {
  absl::MutexLock lock(&mu_);
  if (mirror->live == live) return;
  mirror->live = live;
  live_ = live ? live_ + 1 : live_ - 1;
  const bool serving = live_ == mirrors_.size();
  if (serving == reported_serving_) return;
  reported_serving_ = serving;
  LogInfo("relay: ",
          serving ? "SERVING, every model mirrored" : "NOT_SERVING, upstream unreachable");
  server_->SetServing(serving);
}

bool Relay::Backoff(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
  return !stopping_;
}

bool Relay::mirrored() const {
  absl::MutexLock lock(&mu_);
  return live_ == mirrors_.size();
}

void Relay::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (const auto& mirror : mirrors_) {
      if (mirror->context != nullptr) mirror->context->TryCancel();
    }
  }
  for (const auto& mirror : mirrors_) {
    if (mirror->thread.joinable()) mirror->thread.join();
  }
  submitter_->CancelAll();
  if (server_ != nullptr) server_->Shutdown();
}

}  // namespace deltaserve::server
