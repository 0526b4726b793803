#include "deltaserve/server/service/parameter_wait_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/proto/grpc_status.h"
#include "grpcpp/server_context.h"

namespace deltaserve::server {

void ParameterWaiters::Add() {
  absl::MutexLock lock(&mu_);
  ++count_;
}

void ParameterWaiters::Remove() {
  absl::MutexLock lock(&mu_);
  --count_;
}

size_t ParameterWaiters::count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

bool ParameterWaiters::AwaitNone(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
}

ParameterWaitReactor::ParameterWaitReactor(grpc::CallbackServerContext* context,
                                           grpc::ByteBuffer* response, WeightHub* hub,
                                           EncodedUpdateCache* encoder, ModelMetrics* metrics,
                                           ParameterWaiters* live, uint64_t min_version,
                                           size_t max_waiters,
                                           std::chrono::steady_clock::time_point start)
    : context_(context),
      response_(response),
      hub_(hub),
      encoder_(encoder),
      metrics_(metrics),
      live_(live),
      min_version_(min_version),
      start_(start) {
  live_->Add();
  // The hub may call Complete (and so Finish) from its notifier before this
  // returns: gRPC keeps a Finish made before the reactor is bound.
  absl::StatusOr<WeightHub::Wait> wait = hub_->AwaitVersion(
      min_version,
      [this](absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot) {
        Complete(std::move(snapshot));
      },
      max_waiters);
  if (!wait.ok()) {
    RecordAndFinish(wait.status());
    return;
  }
  if (wait->ready != nullptr) {
    Complete(std::move(wait->ready));
    return;
  }
  ticket_ = wait->ticket;
  metrics_->AddParameterWaiters(+1);
}

void ParameterWaitReactor::Complete(absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot) {
  if (snapshot.ok()) *response_ = encoder_->Encode(*snapshot)->bytes;
  RecordAndFinish(snapshot.status());
}

void ParameterWaitReactor::RecordAndFinish(const absl::Status& status) {
  metrics_->RecordRpc(
      Rpc::kGetParameters, static_cast<int>(status.code()),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  Finish(ToGrpcStatus(status));
}

void ParameterWaitReactor::OnCancel() {
  if (ticket_ == 0 || !hub_->CancelWait(ticket_)) return;  // Answered, or being answered.
  const uint64_t version = hub_->latest()->version;
  if (context_->deadline() <= std::chrono::system_clock::now()) {
    RecordAndFinish(absl::DeadlineExceededError(
        absl::StrCat("model \"", hub_->model(), "\" did not reach min_version ", min_version_,
                     " before the deadline; it is at version ", version)));
  } else {
    RecordAndFinish(absl::CancelledError(absl::StrCat(
        "GetParameters waiting for min_version ", min_version_,
        " cancelled by the client; model \"", hub_->model(), "\" is at version ", version)));
  }
}

void ParameterWaitReactor::OnDone() {
  if (ticket_ != 0) metrics_->AddParameterWaiters(-1);
  live_->Remove();
  delete this;
}

}  // namespace deltaserve::server
