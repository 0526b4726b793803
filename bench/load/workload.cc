#include "deltaserve/bench/load/workload.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deltaserve/client/trainer_client.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace deltaserve::load {
namespace {

namespace v1 = ::deltaserve::v1;

constexpr absl::Duration kErrorBackoff = absl::Milliseconds(50);
constexpr absl::Duration kReconnectBackoff = absl::Milliseconds(100);

absl::StatusCode CodeOf(const grpc::Status& status) {
  return static_cast<absl::StatusCode>(status.error_code());
}

void SetDeadline(grpc::ClientContext* context, absl::Time deadline) {
  context->set_deadline(absl::ToChronoTime(deadline));
}

// Sets SubmitDeltaRequest.request_id when the generated message has the
// field (it is newer than some trees this tool builds against).
void SetRequestId(const std::string& id, v1::SubmitDeltaRequest* request) {
  static const google::protobuf::FieldDescriptor* const field =
      v1::SubmitDeltaRequest::descriptor()->FindFieldByName("request_id");
  if (field == nullptr || id.empty()) return;
  request->GetReflection()->SetString(request, field, id);
}

// Whether a SubmitDeltaResponse says it was a replay of an earlier request_id.
bool IsDuplicate(const v1::SubmitDeltaResponse& response) {
  static const google::protobuf::FieldDescriptor* const field =
      v1::SubmitDeltaResponse::descriptor()->FindFieldByName("duplicate");
  return field != nullptr && response.GetReflection()->GetBool(response, field);
}

// The K forwards a simulator has acted on since its last submission.
struct PendingSubmission {
  v1::SubmitDeltaRequest request;
  int forwards = 0;
  uint64_t min_version = UINT64_MAX;
};

// The target the simulated black box wants: t[j][c] = ½·sin(Σ_k x[j][k] + c).
float Target(const float* row, int input_dim, int column) {
  float sum = 0.0f;
  for (int k = 0; k < input_dim; ++k) sum += row[k];
  return 0.5f * std::sin(sum + static_cast<float>(column));
}

// Appends the batch (X, y) of one Forward and δ = y − target(X) to `pending`.
void AddBatch(const v1::Matrix& inputs, const v1::Matrix& outputs, uint64_t version,
              PendingSubmission* pending) {
  v1::SubmitDeltaRequest& request = pending->request;
  const int input_dim = static_cast<int>(inputs.cols());
  const int output_dim = static_cast<int>(outputs.cols());
  for (uint32_t j = 0; j < inputs.rows(); ++j) {
    const float* x = inputs.data().data() + j * input_dim;
    const float* y = outputs.data().data() + j * output_dim;
    for (int k = 0; k < input_dim; ++k) request.mutable_inputs()->add_data(x[k]);
    for (int c = 0; c < output_dim; ++c) {
      request.mutable_outputs()->add_data(y[c]);
      request.mutable_deltas()->add_data(y[c] - Target(x, input_dim, c));
    }
  }
  for (v1::Matrix* m :
       {request.mutable_inputs(), request.mutable_outputs(), request.mutable_deltas()}) {
    m->set_rows(m->rows() + inputs.rows());
  }
  request.mutable_inputs()->set_cols(inputs.cols());
  request.mutable_outputs()->set_cols(outputs.cols());
  request.mutable_deltas()->set_cols(outputs.cols());
  pending->min_version = std::min(pending->min_version, version);
  ++pending->forwards;
}

bool ShapeIs(const v1::Matrix& m, int rows, int cols) {
  return m.rows() == static_cast<uint32_t>(rows) && m.cols() == static_cast<uint32_t>(cols) &&
         m.data_size() == rows * cols;
}

// One Forward of random inputs; on success adds the batch to `pending`.
// Returns false after an error the caller should back off from.
bool ForwardOnce(v1::Trainer::Stub& stub, const WorkloadOptions& options, std::mt19937_64& rng,
                 LoadStats* stats, PendingSubmission* pending) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  v1::ForwardRequest request;
  request.set_model(options.model);
  request.mutable_inputs()->set_rows(options.rows);
  request.mutable_inputs()->set_cols(options.input_dim);
  for (int i = 0; i < options.rows * options.input_dim; ++i) {
    request.mutable_inputs()->add_data(uniform(rng));
  }
  grpc::ClientContext context;
  const absl::Time start = absl::Now();
  SetDeadline(&context, start + options.timeout);
  v1::ForwardResponse response;
  const grpc::Status status = stub.Forward(&context, request, &response);
  stats->forward.Record(CodeOf(status), absl::Now() - start);
  if (!status.ok()) return false;
  if (!ShapeIs(response.outputs(), options.rows, options.output_dim)) {
    stats->forward.RecordBadResponse();
    return false;
  }
  AddBatch(request.inputs(), response.outputs(), response.version(), pending);
  return true;
}

// Sends `pending` as one SubmitDelta. ABORTED (too stale) is expected and
// only counted. Returns false after an error the caller should back off from.
bool SubmitOnce(v1::Trainer::Stub& stub, const WorkloadOptions& options, uint64_t sequence,
                int client_id, PendingSubmission* pending, VersionClock* clock, LoadStats* stats) {
  v1::SubmitDeltaRequest& request = pending->request;
  request.set_model(options.model);
  request.set_version(pending->min_version);
  request.set_objective(v1::MINIMIZE);
  if (!options.request_id_prefix.empty()) {
    SetRequestId(absl::StrCat(options.request_id_prefix, "-", client_id, "-", sequence), &request);
  }
  grpc::ClientContext context;
  const absl::Time start = absl::Now();
  SetDeadline(&context, start + options.timeout);
  v1::SubmitDeltaResponse response;
  const grpc::Status status = stub.SubmitDelta(&context, request, &response);
  const absl::Time done = absl::Now();
  stats->submit.Record(CodeOf(status), done - start);
  if (!status.ok()) return CodeOf(status) == absl::StatusCode::kAborted;
  if (response.version() < request.version()) stats->submit.RecordBadResponse();
  if (IsDuplicate(response)) stats->duplicates.fetch_add(1, std::memory_order_relaxed);
  if (response.stepped()) clock->Stepped(response.version(), done);
  return true;
}

}  // namespace

void RunControl::Stop() {
  stopped_.store(true);
  absl::MutexLock lock(&mu_);
  for (grpc::ClientContext* context : contexts_) context->TryCancel();
}

void RunControl::SleepFor(absl::Duration duration) const {
  const absl::Time until = std::min(absl::Now() + duration, end_);
  while (!Done() && absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(10), until - absl::Now()));
  }
}

bool RunControl::Register(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (Done()) return false;
  contexts_.insert(context);
  return true;
}

void RunControl::Unregister(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  contexts_.erase(context);
}

void VersionClock::Stepped(uint64_t version, absl::Time when) {
  Slot& slot = slots_[version % kSlots];
  slot.version.store(0, std::memory_order_release);
  slot.unix_nanos.store(absl::ToUnixNanos(when), std::memory_order_release);
  slot.version.store(version, std::memory_order_release);
}

std::optional<absl::Duration> VersionClock::Since(uint64_t version, absl::Time now) const {
  const Slot& slot = slots_[version % kSlots];
  if (slot.version.load(std::memory_order_acquire) != version) return std::nullopt;
  const absl::Time when = absl::FromUnixNanos(slot.unix_nanos.load(std::memory_order_acquire));
  if (slot.version.load(std::memory_order_acquire) != version) return std::nullopt;
  return std::max(absl::ZeroDuration(), now - when);
}

std::shared_ptr<grpc::Channel> NewConnection(const std::string& target,
                                             const client::ChannelSecurity& security) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(client::kDefaultMaxMessageBytes);
  args.SetMaxSendMessageSize(client::kDefaultMaxMessageBytes);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return security.CreateChannel(target, args);
}

void RunSimulator(int client_id, const WorkloadOptions& options, RunControl* control,
                  VersionClock* clock, LoadStats* stats) {
  std::unique_ptr<v1::Trainer::Stub> stub =
      v1::Trainer::NewStub(NewConnection(options.target, options.security));
  std::mt19937_64 rng(options.seed * 1'000'003 + static_cast<uint64_t>(client_id));
  PendingSubmission pending;
  uint64_t sequence = 0;
  while (!control->Done()) {
    bool ok = ForwardOnce(*stub, options, rng, stats, &pending);
    if (ok && pending.forwards >= options.submit_every && !control->Done()) {
      ok = SubmitOnce(*stub, options, ++sequence, client_id, &pending, clock, stats);
      pending = PendingSubmission();
    }
    if (!ok) control->SleepFor(kErrorBackoff);
  }
}

namespace {

// Reads one stream to its end; returns its final status.
grpc::Status WatchOnce(v1::Trainer::Stub& stub, const WorkloadOptions& options,
                       grpc::ClientContext* context, const VersionClock* clock, LoadStats* stats) {
  v1::WatchParametersRequest request;
  request.set_model(options.model);
  std::unique_ptr<grpc::ClientReader<v1::ParameterUpdate>> reader =
      stub.WatchParameters(context, request);
  stats->watch_streams.fetch_add(1, std::memory_order_relaxed);
  v1::ParameterUpdate update;
  bool first = true;
  uint64_t last_version = 0;
  while (reader->Read(&update)) {
    const bool valid = update.parameters_size() == static_cast<int>(options.parameter_count) &&
                       !update.model().empty() && (first || update.version() > last_version);
    if (!valid) stats->watch.RecordBadResponse();
    const std::optional<absl::Duration> lag = clock->Since(update.version(), absl::Now());
    if (first || !lag.has_value()) {
      stats->watch.RecordCount(absl::StatusCode::kOk);
    } else {
      stats->watch.Record(absl::StatusCode::kOk, *lag);
    }
    first = false;
    last_version = update.version();
  }
  return reader->Finish();
}

}  // namespace

void RunWatcher(const WorkloadOptions& options, RunControl* control, const VersionClock* clock,
                LoadStats* stats) {
  std::unique_ptr<v1::Trainer::Stub> stub =
      v1::Trainer::NewStub(NewConnection(options.target, options.security));
  while (!control->Done()) {
    grpc::ClientContext context;
    // Bounded even if Stop never came: the run's end plus one call timeout.
    SetDeadline(&context, options.end + options.timeout);
    if (!control->Register(&context)) break;
    const grpc::Status status = WatchOnce(*stub, options, &context, clock, stats);
    control->Unregister(&context);
    const bool ended_by_us =
        control->Done() && (CodeOf(status) == absl::StatusCode::kCancelled ||
                            CodeOf(status) == absl::StatusCode::kDeadlineExceeded);
    if (ended_by_us) break;
    // A stream the server ended (OK or not) before the run was over.
    if (status.ok()) {
      stats->watch.RecordBadResponse();
    } else {
      stats->watch.RecordCount(CodeOf(status));
    }
    control->SleepFor(kReconnectBackoff);
  }
}

}  // namespace deltaserve::load
