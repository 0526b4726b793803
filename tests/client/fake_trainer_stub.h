// FakeTrainerStub: a deltaserve.v1.Trainer stub with canned answers that
// records each request and each call's deadline, for TrainerClient tests.
// Only the synchronous methods are implemented; the async ones return null.
#ifndef DELTASERVE_TESTS_CLIENT_FAKE_TRAINER_STUB_H_
#define DELTASERVE_TESTS_CLIENT_FAKE_TRAINER_STUB_H_

#include <chrono>
#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "grpcpp/support/sync_stream.h"

namespace deltaserve::client::testing {

// Replays `updates`, then finishes with `status`.
class FakeParameterReader : public grpc::ClientReaderInterface<deltaserve::v1::ParameterUpdate> {
 public:
  FakeParameterReader(std::vector<deltaserve::v1::ParameterUpdate> updates, grpc::Status status)
      : updates_(std::move(updates)), status_(std::move(status)) {}

  bool Read(deltaserve::v1::ParameterUpdate* update) override {
    if (next_ >= updates_.size()) return false;
    *update = updates_[next_++];
    return true;
  }
  bool NextMessageSize(uint32_t* size) override {
    if (next_ >= updates_.size()) return false;
    *size = static_cast<uint32_t>(updates_[next_].ByteSizeLong());
    return true;
  }
  void WaitForInitialMetadata() override {}
  grpc::Status Finish() override { return status_; }

 private:
  std::vector<deltaserve::v1::ParameterUpdate> updates_;
  grpc::Status status_;
  size_t next_ = 0;
};

class FakeTrainerStub : public deltaserve::v1::Trainer::StubInterface {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  // Canned answers; `status` is returned by every call (the response is
  // still copied out, as a real stub would leave it untouched on error).
  grpc::Status status = grpc::Status::OK;
  deltaserve::v1::ModelInfo model_info;
  deltaserve::v1::ForwardResponse forward_response;
  deltaserve::v1::SubmitDeltaResponse submit_response;
  deltaserve::v1::ParameterUpdate parameters;
  std::vector<deltaserve::v1::ParameterUpdate> watch_updates;
  grpc::Status watch_status = grpc::Status::OK;

  // What the client sent.
  deltaserve::v1::GetModelInfoRequest last_info_request;
  deltaserve::v1::ForwardRequest last_forward_request;
  deltaserve::v1::SubmitDeltaRequest last_submit_request;
  std::vector<deltaserve::v1::SubmitDeltaRequest> submit_requests;  // Every one, in order.
  // If not empty, SubmitDelta answers with these statuses first, one per
  // call (then with `status`).
  std::deque<grpc::Status> scripted_submit_statuses;
  deltaserve::v1::GetParametersRequest last_parameters_request;
  deltaserve::v1::WatchParametersRequest last_watch_request;

  // context->deadline() of every call, in call order (max() = none).
  std::vector<TimePoint> Deadlines() const {
    absl::MutexLock lock(&mu_);
    return deadlines_;
  }

  grpc::Status GetModelInfo(grpc::ClientContext* context,
                            const deltaserve::v1::GetModelInfoRequest& request,
                            deltaserve::v1::ModelInfo* response) override {
    Record(context);
    last_info_request = request;
    if (status.ok()) *response = model_info;
    return status;
  }
  grpc::Status Forward(grpc::ClientContext* context, const deltaserve::v1::ForwardRequest& request,
                       deltaserve::v1::ForwardResponse* response) override {
    Record(context);
    last_forward_request = request;
    if (status.ok()) *response = forward_response;
    return status;
  }
  grpc::Status SubmitDelta(grpc::ClientContext* context,
                           const deltaserve::v1::SubmitDeltaRequest& request,
                           deltaserve::v1::SubmitDeltaResponse* response) override {
    Record(context);
    last_submit_request = request;
    submit_requests.push_back(request);
    grpc::Status answer = status;
    if (!scripted_submit_statuses.empty()) {
      answer = scripted_submit_statuses.front();
      scripted_submit_statuses.pop_front();
    }
    if (answer.ok()) *response = submit_response;
    return answer;
  }
  grpc::Status GetParameters(grpc::ClientContext* context,
                             const deltaserve::v1::GetParametersRequest& request,
                             deltaserve::v1::ParameterUpdate* response) override {
    Record(context);
    last_parameters_request = request;
    if (status.ok()) *response = parameters;
    return status;
  }

 private:
  void Record(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    deadlines_.push_back(context->deadline());
  }

  grpc::ClientReaderInterface<deltaserve::v1::ParameterUpdate>* WatchParametersRaw(
      grpc::ClientContext* context,
      const deltaserve::v1::WatchParametersRequest& request) override {
    Record(context);
    last_watch_request = request;
    return new FakeParameterReader(watch_updates, watch_status);
  }

  // Unused asynchronous API.
  template <typename T>
  using AsyncReader = grpc::ClientAsyncResponseReaderInterface<T>;
  AsyncReader<deltaserve::v1::ModelInfo>* AsyncGetModelInfoRaw(
      grpc::ClientContext*, const deltaserve::v1::GetModelInfoRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ModelInfo>* PrepareAsyncGetModelInfoRaw(
      grpc::ClientContext*, const deltaserve::v1::GetModelInfoRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ForwardResponse>* AsyncForwardRaw(
      grpc::ClientContext*, const deltaserve::v1::ForwardRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ForwardResponse>* PrepareAsyncForwardRaw(
      grpc::ClientContext*, const deltaserve::v1::ForwardRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::SubmitDeltaResponse>* AsyncSubmitDeltaRaw(
      grpc::ClientContext*, const deltaserve::v1::SubmitDeltaRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::SubmitDeltaResponse>* PrepareAsyncSubmitDeltaRaw(
      grpc::ClientContext*, const deltaserve::v1::SubmitDeltaRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ParameterUpdate>* AsyncGetParametersRaw(
      grpc::ClientContext*, const deltaserve::v1::GetParametersRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ParameterUpdate>* PrepareAsyncGetParametersRaw(
      grpc::ClientContext*, const deltaserve::v1::GetParametersRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  grpc::ClientAsyncReaderInterface<deltaserve::v1::ParameterUpdate>* AsyncWatchParametersRaw(
      grpc::ClientContext*, const deltaserve::v1::WatchParametersRequest&, grpc::CompletionQueue*,
      void*) override {
    return nullptr;
  }
  grpc::ClientAsyncReaderInterface<deltaserve::v1::ParameterUpdate>* PrepareAsyncWatchParametersRaw(
      grpc::ClientContext*, const deltaserve::v1::WatchParametersRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  // Not faked: InputGradient and ListModels answer UNIMPLEMENTED, as a
  // server without them does.
  grpc::Status InputGradient(grpc::ClientContext*, const deltaserve::v1::InputGradientRequest&,
                             deltaserve::v1::InputGradientResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "InputGradient is not faked");
  }
  grpc::Status ListModels(grpc::ClientContext*, const deltaserve::v1::ListModelsRequest&,
                          deltaserve::v1::ListModelsResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "ListModels is not faked");
  }
  AsyncReader<deltaserve::v1::InputGradientResponse>* AsyncInputGradientRaw(
      grpc::ClientContext*, const deltaserve::v1::InputGradientRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::InputGradientResponse>* PrepareAsyncInputGradientRaw(
      grpc::ClientContext*, const deltaserve::v1::InputGradientRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ListModelsResponse>* AsyncListModelsRaw(
      grpc::ClientContext*, const deltaserve::v1::ListModelsRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::ListModelsResponse>* PrepareAsyncListModelsRaw(
      grpc::ClientContext*, const deltaserve::v1::ListModelsRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  // Not faked either: GetMetricsHistory.
  grpc::Status GetMetricsHistory(grpc::ClientContext*,
                                 const deltaserve::v1::GetMetricsHistoryRequest&,
                                 deltaserve::v1::GetMetricsHistoryResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "GetMetricsHistory is not faked");
  }
  AsyncReader<deltaserve::v1::GetMetricsHistoryResponse>* AsyncGetMetricsHistoryRaw(
      grpc::ClientContext*, const deltaserve::v1::GetMetricsHistoryRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  AsyncReader<deltaserve::v1::GetMetricsHistoryResponse>* PrepareAsyncGetMetricsHistoryRaw(
      grpc::ClientContext*, const deltaserve::v1::GetMetricsHistoryRequest&,
      grpc::CompletionQueue*) override {
    return nullptr;
  }
  // No Session: async() is null, so TrainerClient::OpenSession fails.
  using SessionStream = grpc::ClientReaderWriterInterface<deltaserve::v1::SessionRequest,
                                                          deltaserve::v1::SessionResponse>;
  using AsyncSessionStream =
      grpc::ClientAsyncReaderWriterInterface<deltaserve::v1::SessionRequest,
                                             deltaserve::v1::SessionResponse>;
  SessionStream* SessionRaw(grpc::ClientContext*) override { return nullptr; }
  AsyncSessionStream* AsyncSessionRaw(grpc::ClientContext*, grpc::CompletionQueue*,
                                      void*) override {
    return nullptr;
  }
  AsyncSessionStream* PrepareAsyncSessionRaw(grpc::ClientContext*,
                                             grpc::CompletionQueue*) override {
    return nullptr;
  }

  mutable absl::Mutex mu_;
  std::vector<TimePoint> deadlines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace deltaserve::client::testing

#endif  // DELTASERVE_TESTS_CLIENT_FAKE_TRAINER_STUB_H_
