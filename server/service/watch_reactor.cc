#include "deltaserve/server/service/watch_reactor.h"

#include <optional>
#include <utility>

#include "deltaserve/base/check.h"
#include "deltaserve/proto/grpc_status.h"
#include "deltaserve/server/core/errors.h"
#include "deltaserve/server/core/heap_release.h"

namespace deltaserve::server {

WatchReactor::WatchReactor(WeightHub* hub, EncodedUpdateCache* encoder, ModelMetrics* metrics,
                           size_t max_watchers)
    : hub_(hub), encoder_(encoder), metrics_(metrics), start_(std::chrono::steady_clock::now()) {
  metrics_->AddWatchers(+1);
  FloodHeapRelease::Streams().Opened();
  absl::StatusOr<std::unique_ptr<WeightHub::Subscription>> subscription =
      hub_->Subscribe([this] { Advance(); }, max_watchers);  // Step 3.
  if (!subscription.ok()) {
    grpc::Status refused;
    {
      absl::MutexLock lock(&mu_);
      refused = MarkFinished(ToGrpcStatus(subscription.status()));
    }
    Finish(std::move(refused));
    return;
  }
  subscription_ = *std::move(subscription);
  Advance();  // Step 1.
}

void WatchReactor::Advance() {
  std::optional<grpc::Status> finish;
  const grpc::ByteBuffer* write = nullptr;
  std::optional<absl::Time> poke_at;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || in_flight_ != nullptr) return;  // Step 2: wait for OnWriteDone.
    if (cancelled_) {                                // Step 5.
      finish =
          MarkFinished(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client"));
    } else if (hub_->closed()) {  // Step 6.
      finish = MarkFinished(ToGrpcStatus(ShuttingDown(hub_->model())));
    } else {
      std::shared_ptr<const Snapshot> newest = hub_->latest();
      if (sent_any_ && newest->generation == sent_generation_ && newest->version <= sent_version_) {
        return;
      }
      const absl::Time now = absl::Now();
      const absl::Time next = pacer_.next_write(hub_->subscriber_count());
      if (sent_any_ && now < next) {  // Step 2a: too soon for this reader.
        if (!(poke_at_ > now && poke_at_ <= next)) {
          poke_at_ = next;
          poke_at = poke_at_;
        }
      } else {
        std::shared_ptr<const EncodedUpdate> latest = encoder_->Encode(newest);
        sent_any_ = true;
        sent_version_ = latest->version;
        sent_generation_ = latest->generation;
        in_flight_ = std::move(latest);  // Keeps the bytes alive until OnWriteDone.
        write = &in_flight_->bytes;
        pacer_.Started(now);
      }
    }
  }
  // Not under mu_: OnWriteDone (which takes it) may run inline from here.
  if (finish) {
    Finish(*std::move(finish));  // May delete this (OnDone) before it returns.
    return;
  }
  if (poke_at) subscription_->PokeAt(*poke_at);  // Step 3a: Advance() again then.
  if (write != nullptr) {
    metrics_->RecordWatchUpdate();
    StartWrite(write);
  }
}

grpc::Status WatchReactor::MarkFinished(grpc::Status status) {
  DELTASERVE_DCHECK(!finished_ && in_flight_ == nullptr, "Finish twice, or with a write in flight");
  finished_ = true;
  finish_code_ = status.error_code();
  return status;
}

void WatchReactor::OnWriteDone(bool ok) {  // Step 4.
  {
    absl::MutexLock lock(&mu_);
    DELTASERVE_DCHECK(in_flight_ != nullptr, "OnWriteDone without a write in flight");
    in_flight_.reset();
    pacer_.Done(absl::Now());
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
  grpc::StatusCode code;
  {
    absl::MutexLock lock(&mu_);
    DELTASERVE_DCHECK(finished_, "OnDone before Finish");
    code = finish_code_;
  }
  metrics_->AddWatchers(-1);
  FloodHeapRelease::Streams().Closed();
  metrics_->RecordRpc(
      Rpc::kWatchParameters, static_cast<int>(code),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  delete this;
}

}  // namespace deltaserve::server
