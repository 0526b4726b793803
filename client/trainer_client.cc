#include "deltaserve/client/trainer_client.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/client/convert.h"
#include "deltaserve/client/session.h"
#include "deltaserve/proto/client_metrics.h"
#include "deltaserve/proto/wire.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace deltaserve::client {
namespace {

namespace v1 = ::deltaserve::v1;

grpc::ChannelArguments BaseChannelArguments(int max_message_bytes,
                                            absl::Duration max_reconnect_backoff) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  // Reconnect 200 ms after a failed attempt (gRPC: 1 s), then at most
  // max_reconnect_backoff apart (gRPC: 120 s); gRPC takes int milliseconds.
  const int backoff_ms = static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(max_reconnect_backoff), 1, INT32_MAX));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(200, backoff_ms));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, backoff_ms);
  // Ping an idle connection every 30 s (also while only a watch is open) so
  // a vanished server ends the watch instead of leaving it hanging.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  return args;
}

}  // namespace

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& target, int max_message_bytes,
                                             const ChannelSecurity& security,
                                             absl::Duration max_reconnect_backoff) {
  return security.CreateChannel(target,
                                BaseChannelArguments(max_message_bytes, max_reconnect_backoff));
}

std::shared_ptr<grpc::Channel> CreateWatchChannel(const std::string& target, int max_message_bytes,
                                                  int window_bytes, const ChannelSecurity& security,
                                                  absl::Duration max_reconnect_backoff) {
  grpc::ChannelArguments args = BaseChannelArguments(max_message_bytes, max_reconnect_backoff);
  // Different arguments than CreateChannel's → a connection of its own (gRPC
  // shares subchannels only between equal arguments); the marker keeps it
  // separate also when window_bytes is 0.
  args.SetInt("deltaserve.watch_channel", 1);
  if (window_bytes > 0) {
    // Without BDP probing the stream window stays at lookahead_bytes, so the
    // server's writes wait for this reader instead of filling megabytes.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, window_bytes);
  }
  return security.CreateChannel(target, args);
}

// ---- WatchHandle ----

WatchHandle::~WatchHandle() {
  Cancel();
  if (thread_.joinable()) thread_.join();
}

void WatchHandle::Cancel() { context_.TryCancel(); }

absl::Status WatchHandle::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](std::optional<absl::Status>* s) { return s->has_value(); }, &final_status_));
  return *final_status_;
}

std::optional<absl::Status> WatchHandle::WaitWithTimeout(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(
      absl::Condition(
          +[](std::optional<absl::Status>* s) { return s->has_value(); }, &final_status_),
      timeout);
  return final_status_;
}

// ---- TrainerClient ----

TrainerClient::TrainerClient(std::shared_ptr<v1::Trainer::StubInterface> stub,
                             ClientOptions options,
                             std::shared_ptr<v1::Trainer::StubInterface> watch_stub,
                             std::shared_ptr<v1::Admin::StubInterface> admin_stub)
    : stub_(std::move(stub)),
      watch_stub_(watch_stub != nullptr ? std::move(watch_stub) : stub_),
      admin_stub_(std::move(admin_stub)),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<TrainerClient>> TrainerClient::Connect(const std::string& target,
                                                                      ClientOptions options) {
  if (target.empty()) {
    return absl::InvalidArgumentError(
        "empty target; expected \"host:port\" or \"unix:/path/to/socket\"");
  }
  if (options.timeout <= absl::ZeroDuration() || options.timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("timeout must be finite and positive, got ",
                                                   absl::FormatDuration(options.timeout)));
  }
  if (options.max_reconnect_backoff <= absl::ZeroDuration() ||
      options.max_reconnect_backoff == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_reconnect_backoff must be finite and positive, got ",
                     absl::FormatDuration(options.max_reconnect_backoff)));
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes must be > 0, got ", options.max_message_bytes));
  }
  if (options.watch_window_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("watch_window_bytes must be >= 0, got ", options.watch_window_bytes));
  }
  DELTASERVE_ASSIGN_OR_RETURN(const ChannelSecurity security,
                              ChannelSecurity::Load(options.security));
  std::shared_ptr<grpc::Channel> channel =
      CreateChannel(target, options.max_message_bytes, security, options.max_reconnect_backoff);
  std::shared_ptr<v1::Trainer::StubInterface> stub = v1::Trainer::NewStub(channel);
  std::shared_ptr<v1::Trainer::StubInterface> watch_stub = v1::Trainer::NewStub(
      CreateWatchChannel(target, options.max_message_bytes, options.watch_window_bytes, security,
                         options.max_reconnect_backoff));
  return std::make_unique<TrainerClient>(std::move(stub), std::move(options), std::move(watch_stub),
                                         v1::Admin::NewStub(channel));
}

absl::StatusOr<v1::CheckpointResponse> TrainerClient::Checkpoint(const std::string& model) const {
  if (admin_stub_ == nullptr) return absl::FailedPreconditionError("no Admin stub");
  v1::CheckpointRequest request;
  request.set_model(model);
  v1::CheckpointResponse response;
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  DELTASERVE_RETURN_IF_ERROR(FromGrpcStatus(admin_stub_->Checkpoint(&context, request, &response)));
  return response;
}

absl::StatusOr<uint64_t> TrainerClient::ImportParameters(
    const std::string& model, const std::vector<float>& parameters) const {
  return ImportParameters(model, parameters, nullptr);
}

absl::StatusOr<uint64_t> TrainerClient::ImportParameters(
    const std::string& model, const std::vector<float>& parameters,
    const model::RunningMeanStd* input_statistics) const {
  if (admin_stub_ == nullptr) return absl::FailedPreconditionError("no Admin stub");
  v1::ImportParametersRequest request;
  request.set_model(model);
  request.mutable_parameters()->Add(parameters.begin(), parameters.end());
  if (input_statistics != nullptr) {
    wire::InputStatisticsToProto(*input_statistics, request.mutable_input_statistics());
  }
  v1::ImportParametersResponse response;
  grpc::ClientContext context;
  SetDeadline(context, options_.timeout);
  DELTASERVE_RETURN_IF_ERROR(
      FromGrpcStatus(admin_stub_->ImportParameters(&context, request, &response)));
  return response.version();
}

std::string NewRequestId() {
  thread_local absl::BitGen bits;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bits),
                         absl::Uniform<uint64_t>(bits));
}

void TrainerClient::SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<v1::ModelInfo> TrainerClient::GetModelInfo(const std::string& model) const {
  v1::GetModelInfoRequest request;
  request.set_model(model);
  v1::ModelInfo info;
  DELTASERVE_RETURN_IF_ERROR(Unary(&v1::Trainer::StubInterface::GetModelInfo, request, &info));
  return info;
}

absl::StatusOr<ForwardResult> TrainerClient::Forward(const Eigen::Ref<const model::Matrix>& inputs,
                                                     const std::string& model) const {
  const v1::ForwardRequest request = internal::ForwardRequestFor(inputs, model);
  v1::ForwardResponse response;
  DELTASERVE_RETURN_IF_ERROR(Unary(&v1::Trainer::StubInterface::Forward, request, &response));
  return internal::ForwardResultFrom(response);
}

absl::StatusOr<InputGradientResult> TrainerClient::InputGradient(
    const Eigen::Ref<const model::Matrix>& inputs, const Eigen::Ref<const model::Matrix>& deltas,
    const std::string& model) const {
  const v1::InputGradientRequest request = internal::InputGradientRequestFor(inputs, deltas, model);
  v1::InputGradientResponse response;
  DELTASERVE_RETURN_IF_ERROR(Unary(&v1::Trainer::StubInterface::InputGradient, request, &response));
  return internal::InputGradientResultFrom(response);
}

absl::StatusOr<SubmitDeltaResult> TrainerClient::SubmitDelta(const DeltaSubmission& submission,
                                                             const std::string& model) const {
  DELTASERVE_RETURN_IF_ERROR(wire::ValidateMetrics(submission.metrics));
  const v1::SubmitDeltaRequest request = internal::SubmitRequestFor(submission, model);
  v1::SubmitDeltaResponse response;
  absl::Status status;
  // Retries 100 ms, then 200 ms later: the second comes after the channel's
  // first reconnect (160-240 ms after a failed connect, kDefaultMaxReconnectBackoff).
  absl::Duration backoff = absl::Milliseconds(100);
  for (int attempt = 0;; ++attempt) {
    status = Unary(&v1::Trainer::StubInterface::SubmitDelta, request, &response);
    const bool retryable = absl::IsDeadlineExceeded(status) || absl::IsUnavailable(status);
    if (!retryable || attempt >= options_.submit_retries) break;
    absl::SleepFor(backoff);
    backoff *= 2;
  }
  DELTASERVE_RETURN_IF_ERROR(status);
  return internal::SubmitResultFrom(response);
}

absl::StatusOr<std::unique_ptr<Session>> TrainerClient::OpenSession(size_t max_in_flight) const {
  if (max_in_flight == 0) {
    return absl::InvalidArgumentError("max_in_flight: expected >= 1, got 0");
  }
  v1::Trainer::StubInterface::async_interface* async = stub_->async();
  if (async == nullptr) {
    return absl::UnimplementedError("this stub has no callback API: cannot open a Session");
  }
  return std::unique_ptr<Session>(new Session(async, max_in_flight, options_.timeout));
}

absl::StatusOr<Parameters> TrainerClient::GetParameters(const std::string& model,
                                                        uint64_t min_version,
                                                        absl::Duration timeout) const {
  grpc::ClientContext context;
  return GetParameters(&context, model, min_version, timeout);
}

absl::StatusOr<Parameters> TrainerClient::GetParameters(grpc::ClientContext* context,
                                                        const std::string& model,
                                                        uint64_t min_version,
                                                        absl::Duration timeout) const {
  if (timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GetParameters timeout: expected >= 0 (0: the client's), got ",
                     absl::FormatDuration(timeout)));
  }
  if (context->deadline() == std::chrono::system_clock::time_point::max()) {
    SetDeadline(*context, timeout == absl::ZeroDuration() ? options_.timeout : timeout);
  }
  v1::GetParametersRequest request;
  request.set_model(model);
  request.set_min_version(min_version);
  v1::ParameterUpdate update;
  DELTASERVE_RETURN_IF_ERROR(FromGrpcStatus(stub_->GetParameters(context, request, &update)));
  return internal::ParametersFrom(update);
}

absl::StatusOr<std::vector<v1::ModelInfo>> TrainerClient::ListModels() const {
  v1::ListModelsResponse response;
  DELTASERVE_RETURN_IF_ERROR(
      Unary(&v1::Trainer::StubInterface::ListModels, v1::ListModelsRequest(), &response));
  return std::vector<v1::ModelInfo>(response.models().begin(), response.models().end());
}

absl::StatusOr<v1::GetMetricsHistoryResponse> TrainerClient::GetMetricsHistory(
    const std::string& model, int64_t since_unix_ms) const {
  v1::GetMetricsHistoryRequest request;
  request.set_model(model);
  request.set_since_unix_ms(since_unix_ms);
  v1::GetMetricsHistoryResponse response;
  DELTASERVE_RETURN_IF_ERROR(
      Unary(&v1::Trainer::StubInterface::GetMetricsHistory, request, &response));
  return response;
}

absl::Status TrainerClient::WatchParameters(
    const std::string& model, const std::function<bool(Parameters)>& on_update) const {
  grpc::ClientContext context;
  return WatchParameters(&context, model, on_update);
}

absl::Status TrainerClient::WatchParameters(
    grpc::ClientContext* context, const std::string& model,
    const std::function<bool(Parameters)>& on_update) const {
  if (context->deadline() == std::chrono::system_clock::time_point::max()) {
    SetDeadline(*context, options_.watch_timeout);
  }
  v1::WatchParametersRequest request;
  request.set_model(model);
  std::unique_ptr<grpc::ClientReaderInterface<v1::ParameterUpdate>> reader =
      watch_stub_->WatchParameters(context, request);
  v1::ParameterUpdate update;
  bool stopped_by_callback = false;
  while (reader->Read(&update)) {
    absl::StatusOr<Parameters> parameters = internal::ParametersFrom(update);
    if (!parameters.ok()) {
      context->TryCancel();
      while (reader->Read(&update)) {
      }  // As below: Finish needs the stream read to its end.
      static_cast<void>(reader->Finish());
      return parameters.status();
    }
    if (!on_update(*std::move(parameters))) {
      stopped_by_callback = true;
      context->TryCancel();
      while (reader->Read(&update)) {
      }  // Drain what was in flight; Finish needs the stream read to its end.
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (stopped_by_callback) return absl::OkStatus();
  return FromGrpcStatus(status);
}

absl::StatusOr<std::unique_ptr<WatchHandle>> TrainerClient::Watch(
    const std::string& model, std::function<void(Parameters)> on_update) const {
  std::unique_ptr<WatchHandle> handle(new WatchHandle());
  WatchHandle* h = handle.get();
  // The stream waits for a connection instead of failing on the first
  // connection attempt that fails: gRPC 1.51 sometimes fails one that had
  // not (the channel reconnects a second later), and a watch that failed
  // to start never came back.
  h->context_.set_wait_for_ready(true);
  // The thread copies the client (a stub pointer and options), so the handle
  // does not depend on this TrainerClient staying alive.
  h->thread_ = std::thread([client = *this, h, model, on_update = std::move(on_update)] {
    const absl::Status status =
        client.WatchParameters(&h->context_, model, [&on_update](Parameters params) {
          on_update(std::move(params));
          return true;
        });
    absl::MutexLock lock(&h->mu_);
    h->final_status_ = status;
  });
  return handle;
}

}  // namespace deltaserve::client
