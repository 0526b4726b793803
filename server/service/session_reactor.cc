#include "deltaserve/server/service/session_reactor.h"

#include <utility>
#include <vector>

#include "deltaserve/base/check.h"
#include "deltaserve/proto/grpc_status.h"
#include "deltaserve/server/service/call_paths.h"
#include "deltaserve/server/service/convert.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;

const grpc::Status& ServerClosing() {
  static const auto* status =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       "server shutting down: Session ended; open a new one on the next server");
  return *status;
}

// `response` answers with `status`'s code and message (step 3).
void SetError(const absl::Status& status, v1::SessionResponse* response) {
  ToCallError(status, response->mutable_error());
}

}  // namespace

// ---- SessionRegistry ----

bool SessionRegistry::Add(SessionReactor* session) {
  absl::MutexLock lock(&mu_);
  sessions_.insert(session);
  return !closed_;
}

void SessionRegistry::Remove(SessionReactor* session) {
  absl::MutexLock lock(&mu_);
  sessions_.erase(session);
}

void SessionRegistry::CloseAll() {
  std::vector<SessionReactor*> open;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    open.assign(sessions_.begin(), sessions_.end());
    // Pinned under mu_: none of them can be deleted before its Close().
    for (SessionReactor* session : open) session->Pin();
  }
  for (SessionReactor* session : open) session->Close();
}

bool SessionRegistry::AwaitAllGone(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(
      absl::Condition(
          +[](const absl::flat_hash_set<SessionReactor*>* s) { return s->empty(); }, &sessions_),
      deadline);
}

size_t SessionRegistry::open() const {
  absl::MutexLock lock(&mu_);
  return sessions_.size();
}

// ---- SessionReactor ----

SessionReactor::SessionReactor(const ModelRegistry* models, ModelMetrics* unknown_model,
                               SessionRegistry* registry, size_t max_in_flight, std::string peer)
    : models_(models),
      unknown_model_(unknown_model),
      registry_(registry),
      max_in_flight_(max_in_flight == 0 ? 1 : max_in_flight),
      start_(Clock::now()),
      peer_(std::move(peer)) {
  const bool open = registry_->Add(this);  // Step 1.
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!open) EndLocked(ServerClosing());
  });
}

void SessionReactor::Advance(absl::FunctionRef<void()> update) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    update();
    actions = DecideLocked();
    if (actions.count() == 0) {
      if (!DeletableLocked()) return;
    } else {
      starting_ += actions.count();
    }
  }
  // While starting_ > 0 nothing deletes the reactor; once it is 0 and the
  // lock released, `this` is not touched again.
  while (actions.count() != 0) {
    if (actions.write != nullptr) StartWrite(actions.write);
    if (actions.read) StartRead(&read_buffer_);
    if (actions.finish.has_value()) Finish(*actions.finish);
    absl::MutexLock lock(&mu_);
    starting_ -= actions.count();
    DELTASERVE_DCHECK(starting_ >= 0);
    actions = DecideLocked();
    if (actions.count() == 0) {
      if (!DeletableLocked()) return;
      break;
    }
    starting_ += actions.count();
  }
  delete this;  // Step 7: OnDone has run and nothing holds the reactor.
}

SessionReactor::Actions SessionReactor::DecideLocked() {
  Actions actions;
  if (finished_) return actions;
  if (ending_.has_value()) {  // Step 5.
    if (!writing_ && starting_ == 0) {
      finished_ = true;
      finish_code_ = ending_->error_code();
      actions.finish = *ending_;
    }
    return actions;
  }
  if (!writing_ && !writes_.empty()) {  // Step 4.
    writing_ = true;
    actions.write = &writes_.front();
  }
  if (!reading_ && !read_closed_ && !dispatching_ &&
      unanswered_ + writes_.size() < max_in_flight_) {
    reading_ = true;
    actions.read = true;
  }
  if (read_closed_ && unanswered_ == 0 && writes_.empty() && starting_ == 0) {  // Step 6.
    finished_ = true;
    finish_code_ = grpc::StatusCode::OK;
    actions.finish = grpc::Status::OK;
  }
  return actions;
}

void SessionReactor::OnReadDone(bool ok) {  // Step 2.
  const Clock::time_point start = Clock::now();
  grpc::ByteBuffer bytes;
  bool dispatch = false;
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    DELTASERVE_DCHECK(reading_ && !dispatching_, "OnReadDone without a read in flight");
    reading_ = false;
    if (!ok) {
      read_closed_ = true;
    } else if (!ending_.has_value()) {
      bytes.Swap(&read_buffer_);
      ++unanswered_;
      dispatching_ = true;
      dispatch = true;
    }
  });
  if (!dispatch) return;
  Dispatch(bytes, start);
  // Only now the next read: an answer computed inline is queued by now, so
  // its write starts first and the read's flow-control update goes out with
  // it (asked for before, it went alone: two sendmsg per call, not one).
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    DELTASERVE_DCHECK(dispatching_);
    dispatching_ = false;
  });
}

void SessionReactor::Dispatch(const grpc::ByteBuffer& bytes, Clock::time_point start) {
  v1::SessionRequest request;
  if (absl::Status parsed = ParseRequest(bytes, &request); !parsed.ok()) {
    Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      DELTASERVE_DCHECK(unanswered_ > 0);
      --unanswered_;
      EndLocked(ToGrpcStatus(parsed));
    });
    return;
  }
  const uint64_t id = request.id();
  switch (request.call_case()) {
    case v1::SessionRequest::kForward:
      StartForward(
          *models_, unknown_model_, request.forward(),
          AnswerTo(id, Rpc::kSessionForward, start, &v1::SessionResponse::mutable_forward));
      return;
    case v1::SessionRequest::kSubmit:
      StartSubmit(
          *models_, unknown_model_, request.submit(), peer_,
          AnswerTo(id, Rpc::kSessionSubmitDelta, start, &v1::SessionResponse::mutable_submit));
      return;
    case v1::SessionRequest::kInputGradient:
      StartInputGradient(*models_, unknown_model_, request.input_gradient(),
                         AnswerTo(id, Rpc::kSessionInputGradient, start,
                                  &v1::SessionResponse::mutable_input_gradient));
      return;
    case v1::SessionRequest::CALL_NOT_SET:
      break;
  }
  v1::SessionResponse response;
  response.set_id(id);
  SetError(absl::InvalidArgumentError("call: expected a SessionRequest with `forward`, `submit` or "
                                      "`input_gradient` set, got none"),
           &response);
  Answer(std::move(response));
}

template <typename Result>
absl::AnyInvocable<void(ModelMetrics*, absl::StatusOr<Result>) &&> SessionReactor::AnswerTo(
    uint64_t id, Rpc rpc, Clock::time_point start, Result* (v1::SessionResponse::*slot)()) {
  return [this, id, rpc, start, slot](ModelMetrics* metrics, absl::StatusOr<Result> result) {
    metrics->RecordRpc(rpc, static_cast<int>(result.status().code()),
                       std::chrono::duration<double>(Clock::now() - start).count());
    v1::SessionResponse response;
    response.set_id(id);
    if (result.ok()) {
      *(response.*slot)() = *std::move(result);
    } else {
      SetError(result.status(), &response);
    }
    Answer(std::move(response));
  };
}

void SessionReactor::Answer(v1::SessionResponse response) {  // Step 3.
  grpc::ByteBuffer bytes;
  SerializeResponse(response, &bytes);
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    DELTASERVE_DCHECK(unanswered_ > 0, "an answer to a call that is not unanswered");
    --unanswered_;
    if (!ending_.has_value() && !finished_) writes_.push_back(std::move(bytes));
  });
}

void SessionReactor::OnWriteDone(bool ok) {  // Step 4.
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    DELTASERVE_DCHECK(writing_ && !writes_.empty(), "OnWriteDone without a write in flight");
    writing_ = false;
    if (!writes_.empty()) writes_.pop_front();
    if (!ok) EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "Session: the client is gone"));
  });
}

void SessionReactor::OnCancel() {  // Step 5.
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "Session cancelled by the client"));
  });
}

void SessionReactor::EndLocked(grpc::Status status) {
  if (!ending_.has_value()) ending_ = std::move(status);
  // Unsent answers are dropped; the one being written stays until it is done.
  while (writes_.size() > (writing_ ? 1u : 0u)) writes_.pop_back();
}

void SessionReactor::Pin() {
  absl::MutexLock lock(&mu_);
  ++pins_;
}

void SessionReactor::Close() {
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EndLocked(ServerClosing());
    DELTASERVE_DCHECK(pins_ > 0, "Close() without Pin()");
    --pins_;
  });
}

void SessionReactor::OnDone() {  // Step 7.
  registry_->Remove(this);
  grpc::StatusCode code;
  {
    absl::MutexLock lock(&mu_);
    code = finish_code_;
  }
  unknown_model_->RecordRpc(Rpc::kSession, static_cast<int>(code),
                            std::chrono::duration<double>(Clock::now() - start_).count());
  Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    DELTASERVE_DCHECK(finished_ && !done_, "OnDone before Finish, or twice");
    done_ = true;
  });
}

}  // namespace deltaserve::server
