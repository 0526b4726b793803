#include "server/watch_reactor.h"

#include "server/errors.h"
#include "server/grpc_status.h"

namespace deltaserve::server {

WatchReactor::WatchReactor(WeightHub* hub) : hub_(hub) {
  subscription_ = hub_->Subscribe([this] { Advance(); });  // Step 3.
  Advance();                                               // Step 1.
}

void WatchReactor::Advance() {
  absl::MutexLock lock(&mu_);
  if (finished_ || in_flight_ != nullptr) return;  // Step 2: wait for OnWriteDone.
  if (cancelled_) {                                // Step 5.
    finished_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client"));
    return;
  }
  if (hub_->closed()) {  // Step 6.
    finished_ = true;
    Finish(ToGrpcStatus(ShuttingDown(hub_->model())));
    return;
  }
  std::shared_ptr<const EncodedUpdate> latest = hub_->Latest();
  if (sent_any_ && latest->version <= sent_version_) return;
  sent_any_ = true;
  sent_version_ = latest->version;
  in_flight_ = std::move(latest);
  StartWrite(&in_flight_->bytes);
}

void WatchReactor::OnWriteDone(bool ok) {  // Step 4.
  {
    absl::MutexLock lock(&mu_);
    in_flight_.reset();
    if (!ok) cancelled_ = true;
  }
  Advance();
}

void WatchReactor::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  Advance();
}

void WatchReactor::OnDone() {  // Step 7. No lock held: see WeightHub::Subscription.
  subscription_.reset();
  delete this;
}

}  // namespace deltaserve::server
