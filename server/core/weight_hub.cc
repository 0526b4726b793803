#include "server/core/weight_hub.h"

#include <algorithm>
#include <utility>

namespace deltaserve::server {

WeightHub::Subscription::~Subscription() {
  hub_->Unsubscribe(slot_.get());
  absl::MutexLock lock(&slot_->mu);  // Waits out a running on_change.
  slot_->on_change = nullptr;
}

WeightHub::WeightHub(std::string model, std::shared_ptr<const Snapshot> initial)
    : model_(std::move(model)), latest_(std::move(initial)) {}

void WeightHub::Publish(std::shared_ptr<const Snapshot> snapshot) {
  {
    absl::MutexLock lock(&mu_);
    if (latest_ != nullptr && snapshot->version <= latest_->version) return;
    latest_ = std::move(snapshot);
  }
  NotifyAll();
}

void WeightHub::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  NotifyAll();
}

bool WeightHub::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

std::shared_ptr<const Snapshot> WeightHub::latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

std::unique_ptr<WeightHub::Subscription> WeightHub::Subscribe(std::function<void()> on_change) {
  auto slot = std::make_shared<Subscription::Slot>();
  {
    absl::MutexLock slot_lock(&slot->mu);
    slot->on_change = std::move(on_change);
  }
  absl::MutexLock lock(&mu_);
  slots_.push_back(slot);
  return std::unique_ptr<Subscription>(new Subscription(this, std::move(slot)));
}

size_t WeightHub::subscriber_count() const {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

void WeightHub::Unsubscribe(const Subscription::Slot* slot) {
  absl::MutexLock lock(&mu_);
  slots_.erase(std::remove_if(slots_.begin(), slots_.end(),
                              [slot](const auto& s) { return s.get() == slot; }),
               slots_.end());
}

void WeightHub::NotifyAll() {
  std::vector<std::shared_ptr<Subscription::Slot>> slots;
  {
    absl::MutexLock lock(&mu_);
    slots = slots_;
  }
  // Outside mu_: a callback may call latest() or closed().
  for (const auto& slot : slots) {
    absl::MutexLock lock(&slot->mu);
    if (slot->on_change) slot->on_change();
  }
}

}  // namespace deltaserve::server
