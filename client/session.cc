#include "deltaserve/client/session.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/client/convert.h"
#include "deltaserve/proto/client_metrics.h"
#include "deltaserve/proto/grpc_status.h"

namespace deltaserve::client {
namespace {

namespace v1 = ::deltaserve::v1;

// The future's value, or DEADLINE_EXCEEDED once `timeout` has passed.
template <typename T>
absl::StatusOr<T> AwaitAnswer(std::future<absl::StatusOr<T>> future, absl::Duration timeout) {
  if (future.wait_for(absl::ToChronoNanoseconds(timeout)) != std::future_status::ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("Session: no answer within ", absl::FormatDuration(timeout)));
  }
  return future.get();
}

template <typename T>
absl::AnyInvocable<void(absl::StatusOr<T>) &&> Fulfil(std::promise<absl::StatusOr<T>>& promise) {
  return [promise = std::move(promise)](absl::StatusOr<T> result) mutable {
    promise.set_value(std::move(result));
  };
}

}  // namespace

// The stream's life: the constructor takes a hold (so that calls issued from
// application threads may StartWrite until the hold is removed), starts the
// first read and the call. Each answer is routed to its call's callback and
// the next read starts. The hold is removed once no more writes can come:
// after WritesDone (Close) or once the server has ended the stream (a failed
// read); then OnDone fails whatever is still unanswered with the stream's
// status.
Session::Session(v1::Trainer::StubInterface::async_interface* stub, size_t max_in_flight,
                 absl::Duration sync_timeout)
    : max_in_flight_(max_in_flight), sync_timeout_(sync_timeout) {
  stub->Session(&context_, this);
  AddHold();
  StartRead(&response_);
  StartCall();
}

Session::~Session() {
  context_.TryCancel();
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { closing_ = true; });
  done_.WaitForNotification();
}

void Session::Forward(const Eigen::Ref<const model::Matrix>& inputs, ForwardCallback done,
                      const std::string& model) {
  v1::SessionRequest request;
  *request.mutable_forward() = internal::ForwardRequestFor(inputs, model);
  Issue(std::move(request), std::move(done));
}

std::future<absl::StatusOr<ForwardResult>> Session::Forward(
    const Eigen::Ref<const model::Matrix>& inputs, const std::string& model) {
  std::promise<absl::StatusOr<ForwardResult>> promise;
  std::future<absl::StatusOr<ForwardResult>> future = promise.get_future();
  Forward(inputs, Fulfil(promise), model);
  return future;
}

absl::StatusOr<ForwardResult> Session::ForwardSync(const Eigen::Ref<const model::Matrix>& inputs,
                                                   const std::string& model) {
  return AwaitAnswer(Forward(inputs, model), sync_timeout_);
}

void Session::SubmitDelta(const DeltaSubmission& submission, SubmitCallback done,
                          const std::string& model) {
  if (absl::Status valid = wire::ValidateMetrics(submission.metrics); !valid.ok()) {
    std::move(done)(valid);  // Refused here: nothing is sent.
    return;
  }
  v1::SessionRequest request;
  *request.mutable_submit() = internal::SubmitRequestFor(submission, model);
  Issue(std::move(request), std::move(done));
}

std::future<absl::StatusOr<SubmitDeltaResult>> Session::SubmitDelta(
    const DeltaSubmission& submission, const std::string& model) {
  std::promise<absl::StatusOr<SubmitDeltaResult>> promise;
  std::future<absl::StatusOr<SubmitDeltaResult>> future = promise.get_future();
  SubmitDelta(submission, Fulfil(promise), model);
  return future;
}

absl::StatusOr<SubmitDeltaResult> Session::SubmitDeltaSync(const DeltaSubmission& submission,
                                                           const std::string& model) {
  return AwaitAnswer(SubmitDelta(submission, model), sync_timeout_);
}

void Session::InputGradient(const Eigen::Ref<const model::Matrix>& inputs,
                            const Eigen::Ref<const model::Matrix>& deltas,
                            InputGradientCallback done, const std::string& model) {
  v1::SessionRequest request;
  *request.mutable_input_gradient() = internal::InputGradientRequestFor(inputs, deltas, model);
  Issue(std::move(request), std::move(done));
}

std::future<absl::StatusOr<InputGradientResult>> Session::InputGradient(
    const Eigen::Ref<const model::Matrix>& inputs, const Eigen::Ref<const model::Matrix>& deltas,
    const std::string& model) {
  std::promise<absl::StatusOr<InputGradientResult>> promise;
  std::future<absl::StatusOr<InputGradientResult>> future = promise.get_future();
  InputGradient(inputs, deltas, Fulfil(promise), model);
  return future;
}

absl::StatusOr<InputGradientResult> Session::InputGradientSync(
    const Eigen::Ref<const model::Matrix>& inputs, const Eigen::Ref<const model::Matrix>& deltas,
    const std::string& model) {
  return AwaitAnswer(InputGradient(inputs, deltas, model), sync_timeout_);
}

size_t Session::in_flight() const {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

std::optional<absl::Status> Session::RefusalLocked() const {
  if (final_status_.has_value()) {
    return final_status_->ok() ? absl::FailedPreconditionError("Session is closed")
                               : *final_status_;
  }
  if (closing_) return absl::FailedPreconditionError("Session is closing");
  if (read_closed_ || !hold_) {
    return absl::UnavailableError("Session stream ended; open a new Session");
  }
  return std::nullopt;
}

void Session::Issue(v1::SessionRequest request, Callback done) {
  std::optional<absl::Status> refused;
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Bounded: wait for room (or for the stream to end).
    mu_.Await(absl::Condition(
        +[](Session* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
          return s->pending_.size() < s->max_in_flight_ || s->RefusalLocked().has_value();
        },
        this));
    refused = RefusalLocked();
    if (refused.has_value()) return;
    const uint64_t id = next_id_++;
    request.set_id(id);
    pending_.emplace(id, std::move(done));
    writes_.push_back(std::move(request));
  });
  if (refused.has_value()) Fail(done, *refused);
}

void Session::Advance(absl::FunctionRef<void()> update) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    update();
    actions = DecideLocked();
    if (actions.count() == 0) return;
    starting_ += actions.count();
  }
  while (actions.count() != 0) {
    if (actions.write != nullptr) StartWrite(actions.write);
    if (actions.writes_done) StartWritesDone();
    if (actions.remove_hold) RemoveHold();  // May run OnDone: touch nothing after it.
    if (actions.remove_hold) return;
    absl::MutexLock lock(&mu_);
    starting_ -= actions.count();
    actions = DecideLocked();
    starting_ += actions.count();
  }
}

Session::Actions Session::DecideLocked() {
  Actions actions;
  if (!hold_) return actions;
  if (!writing_ && !writes_.empty() && !read_closed_) {
    writing_ = true;
    actions.write = &writes_.front();
  }
  if (closing_ && !writes_done_ && !writing_ && (writes_.empty() || read_closed_)) {
    writes_done_ = true;
    actions.writes_done = !read_closed_;
  }
  // No write can start any more: let OnDone come once the stream is over.
  if ((writes_done_ || read_closed_) && !writing_ && starting_ == 0 && actions.count() == 0) {
    hold_ = false;
    actions.remove_hold = true;
  }
  return actions;
}

void Session::OnReadDone(bool ok) {
  if (!ok) {  // The server ended the stream (or the call failed).
    Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      read_closed_ = true;
      writes_.erase(writes_.begin() + (writing_ ? 1 : 0), writes_.end());
    });
    return;
  }
  std::optional<Callback> done;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(response_.id());
    if (it != pending_.end()) {
      done = std::move(it->second);
      pending_.erase(it);
    }
  }
  if (done.has_value()) Deliver(*done, response_);
  StartRead(&response_);
}

void Session::OnWriteDone(bool ok) {
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = false;
    writes_.pop_front();
    if (!ok) {  // The stream is broken; the failed read ends it.
      read_closed_ = true;
      writes_.clear();
    }
  });
}

void Session::OnWritesDoneDone(bool /*ok*/) {}

void Session::OnDone(const grpc::Status& status) {
  const absl::Status final_status = FromGrpcStatus(status);
  std::vector<Callback> unanswered;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, done] : pending_) unanswered.push_back(std::move(done));
    pending_.clear();
  }
  const absl::Status reason =
      final_status.ok()
          ? absl::UnavailableError("Session stream ended before the call was answered")
          : final_status;
  for (Callback& done : unanswered) Fail(done, reason);
  {
    absl::MutexLock lock(&mu_);
    final_status_ = final_status;
  }
  done_.Notify();  // Last: the destructor may run once it is notified.
}

absl::Status Session::Close() {
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { closing_ = true; });
  done_.WaitForNotification();
  absl::MutexLock lock(&mu_);
  return *final_status_;
}

void Session::Fail(Callback& done, const absl::Status& status) {
  std::visit([&status](auto& callback) { std::move(callback)(status); }, done);
}

void Session::Deliver(Callback& done, v1::SessionResponse& response) {
  if (response.has_error()) {
    return Fail(done, FromCallError(response.error()));
  }
  if (auto* forward = std::get_if<ForwardCallback>(&done)) {
    if (!response.has_forward()) {
      return std::move(*forward)(absl::InternalError("Session: expected a Forward answer"));
    }
    return std::move(*forward)(internal::ForwardResultFrom(response.forward()));
  }
  if (auto* gradient = std::get_if<InputGradientCallback>(&done)) {
    if (!response.has_input_gradient()) {
      return std::move(*gradient)(absl::InternalError("Session: expected an InputGradient answer"));
    }
    return std::move(*gradient)(internal::InputGradientResultFrom(response.input_gradient()));
  }
  SubmitCallback& submit = *std::get_if<SubmitCallback>(&done);
  if (!response.has_submit()) {
    return std::move(submit)(absl::InternalError("Session: expected a SubmitDelta answer"));
  }
  std::move(submit)(internal::SubmitResultFrom(response.submit()));
}

}  // namespace deltaserve::client
