#include "deltaserve/server/core/weight_hub.h"

#include <algorithm>
#include <utility>

#include "deltaserve/server/core/errors.h"

namespace deltaserve::server {

WeightHub::Subscription::~Subscription() {
  hub_->Unsubscribe(slot_.get());
  absl::MutexLock lock(&slot_->mu);  // Waits out a running on_change.
  slot_->on_change = nullptr;
}

WeightHub::WeightHub(std::string model, std::shared_ptr<const Snapshot> initial)
    : model_(std::move(model)), latest_(std::move(initial)) {
  notifier_ = std::thread([this] { NotifierLoop(); });
}

WeightHub::~WeightHub() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  notifier_.join();
}

void WeightHub::Publish(std::shared_ptr<const Snapshot> snapshot) {
  absl::MutexLock lock(&mu_);
  if (latest_ != nullptr && snapshot->version <= latest_->version) return;
  latest_ = std::move(snapshot);
  ++changes_;  // The notifier wakes when mu_ is released.
}

void WeightHub::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  ++changes_;
}

bool WeightHub::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

std::shared_ptr<const Snapshot> WeightHub::latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

absl::StatusOr<std::unique_ptr<WeightHub::Subscription>> WeightHub::Subscribe(
    std::function<void()> on_change, size_t max_subscribers) {
  auto slot = std::make_shared<Subscription::Slot>();
  {
    absl::MutexLock slot_lock(&slot->mu);
    slot->on_change = std::move(on_change);
  }
  absl::MutexLock lock(&mu_);
  if (max_subscribers != 0 && slots_.size() >= max_subscribers) {
    return TooManyWatchers(model_, max_subscribers);
  }
  slots_.push_back(slot);
  return std::unique_ptr<Subscription>(new Subscription(this, std::move(slot)));
}

size_t WeightHub::subscriber_count() const {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

bool WeightHub::AwaitNoSubscribers(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return slots_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
}

void WeightHub::Unsubscribe(const Subscription::Slot* slot) {
  absl::MutexLock lock(&mu_);
  slots_.erase(std::remove_if(slots_.begin(), slots_.end(),
                              [slot](const auto& s) { return s.get() == slot; }),
               slots_.end());
}

// With no subscriber a change waits (undelivered) until one subscribes: a
// model nobody watches does not wake the notifier at every step.
bool WeightHub::NotifierHasWork() const {
  return stopping_ || (changes_ != delivered_ && !slots_.empty());
}

void WeightHub::NotifierLoop() {
  for (;;) {
    std::vector<std::shared_ptr<Subscription::Slot>> slots;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WeightHub::NotifierHasWork));
      if (changes_ == delivered_) return;  // Stopping, nothing pending.
      delivered_ = changes_;
      slots = slots_;
    }
    // Outside mu_: a callback may call latest() or closed().
    for (const auto& slot : slots) {
      absl::MutexLock lock(&slot->mu);
      if (slot->on_change) slot->on_change();
    }
  }
}

}  // namespace deltaserve::server
