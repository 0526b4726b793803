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

void WeightHub::Subscription::PokeAt(absl::Time when) {
  // First: the notifier may skip a change from here on, and the poke that
  // then delivers it is scheduled next.
  slot_->quiet_until_ns.store(absl::ToUnixNanos(when), std::memory_order_relaxed);
  hub_->SchedulePoke(slot_, when);
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
  // The server closes hubs first; should one not be, no waiter is lost.
  std::vector<WaitDone> left;
  {
    absl::MutexLock lock(&mu_);
    left = TakeWaiters(/*all=*/true);
  }
  for (WaitDone& done : left) done(ShuttingDown(model_));
}

void WeightHub::Publish(std::shared_ptr<const Snapshot> snapshot) {
  absl::MutexLock lock(&mu_);
  if (latest_ != nullptr && !NewerThan(*snapshot, *latest_)) return;
  latest_ = std::move(snapshot);
  ++changes_;  // The notifier wakes when mu_ is released.
}

void WeightHub::Close() {
  std::vector<WaitDone> parked;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    ++changes_;
    parked = TakeWaiters(/*all=*/true);
  }
  // Here, not on the notifier: once Close returns every waiter has its answer.
  for (WaitDone& done : parked) done(ShuttingDown(model_));
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

absl::StatusOr<WeightHub::Wait> WeightHub::AwaitVersion(uint64_t min_version, WaitDone done,
                                                        size_t max_waiters) {
  absl::MutexLock lock(&mu_);
  if (latest_ != nullptr && latest_->version >= min_version) return Wait{latest_, 0};
  if (closed_) return ShuttingDown(model_);
  if (max_waiters != 0 && waiters_.size() >= max_waiters) {
    return TooManyParameterWaiters(model_, max_waiters);
  }
  const uint64_t ticket = next_ticket_++;
  waiters_.emplace(ticket, Waiter{min_version, std::move(done)});
  return Wait{nullptr, ticket};
}

bool WeightHub::CancelWait(uint64_t ticket) {
  absl::MutexLock lock(&mu_);
  return waiters_.erase(ticket) == 1;
}

size_t WeightHub::waiter_count() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

std::vector<WeightHub::WaitDone> WeightHub::TakeWaiters(bool all) {
  std::vector<WaitDone> taken;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (all || (latest_ != nullptr && latest_->version >= it->second.min_version)) {
      taken.push_back(std::move(it->second.done));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  return taken;
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

void WeightHub::SchedulePoke(std::shared_ptr<Subscription::Slot> slot, absl::Time when) {
  absl::MutexLock lock(&mu_);
  timed_.push(TimedPoke{when, std::move(slot)});  // The notifier re-evaluates its deadline.
}

std::vector<std::shared_ptr<WeightHub::Subscription::Slot>> WeightHub::TakeDuePokes(
    absl::Time now) {
  std::vector<std::shared_ptr<Subscription::Slot>> due;
  while (!timed_.empty() && timed_.top().when <= now) {
    due.push_back(timed_.top().slot);
    timed_.pop();
  }
  return due;
}

// With no subscriber a change waits (undelivered) until one subscribes: a
// model nobody watches does not wake the notifier at every step.
bool WeightHub::NotifierHasWork() const {
  return stopping_ || (changes_ != delivered_ && (!slots_.empty() || !waiters_.empty())) ||
         (!timed_.empty() && timed_.top().when <= absl::Now());
}

void WeightHub::NotifierLoop() {
  for (;;) {
    std::vector<std::shared_ptr<Subscription::Slot>> slots;
    std::vector<WaitDone> reached;
    std::shared_ptr<const Snapshot> newest;
    std::vector<std::shared_ptr<Subscription::Slot>> due;
    bool closed = false;
    {
      absl::MutexLock lock(&mu_);
      // Wakes for a change, or at the earliest timed poke (a PokeAt that
      // makes an earlier one wakes it too: mu_ re-evaluates the condition).
      for (;;) {
        const absl::Time deadline = timed_.empty() ? absl::InfiniteFuture() : timed_.top().when;
        const auto wake = [this, deadline]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return NotifierHasWork() || (!timed_.empty() && timed_.top().when < deadline);
        };
        if (!mu_.AwaitWithDeadline(absl::Condition(&wake), deadline) || NotifierHasWork()) break;
      }
      due = TakeDuePokes(absl::Now());
      if (stopping_ && changes_ == delivered_) return;  // Stopping, nothing pending.
      if (changes_ != delivered_) {
        delivered_ = changes_;
        slots = slots_;
        reached = TakeWaiters(/*all=*/false);
        newest = latest_;
      }
      closed = closed_;
    }
    // Outside mu_: each answer is the newest version, whichever step reached it.
    for (WaitDone& done : reached) done(newest);
    // Outside mu_: a callback may call latest() or closed().
    const int64_t now_ns = absl::ToUnixNanos(absl::Now());
    for (const auto& slot : slots) {
      // A change before a slot's poke is left to the poke (PokeAt).
      if (!closed && slot->quiet_until_ns.load(std::memory_order_relaxed) > now_ns) continue;
      absl::MutexLock lock(&slot->mu);
      if (slot->on_change) slot->on_change();
    }
    for (const auto& slot : due) {  // A slot whose Subscription is gone has no on_change.
      absl::MutexLock lock(&slot->mu);
      if (slot->on_change) slot->on_change();
    }
  }
}

}  // namespace deltaserve::server
