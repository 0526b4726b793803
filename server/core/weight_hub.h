// WeightHub: fans one model's published snapshots out to its watchers.
//
// Latest-wins: the hub keeps only the newest snapshot. Publish() (learner
// thread) stores it and wakes the hub's own notifier thread, which pokes
// every subscriber's callback; a subscriber pulls latest() when it is ready
// to send, so a slow watcher skips intermediate versions. The learner does no
// per-watcher work: Publish is O(1) whatever the number of watchers, and
// pokes coalesce (a subscriber is poked at least once after each change, not
// once per version). The hub knows nothing of gRPC: encoding a version for
// the wire is the service's (server/service/encoded_update.h).
//
// The hub also parks long-polls (GetParametersRequest.min_version above the
// version): AwaitVersion keeps a callback until the model reaches the asked
// version; the notifier thread then calls it with the newest snapshot (not
// the one that first reached it: never a backlog), and Close() calls every
// parked one with UNAVAILABLE. The learner still does no per-waiter work.
//
// A subscriber may also ask for one poke at a later time
// (Subscription::PokeAt): the notifier thread keeps those deadlines and calls
// the subscriber's callback once each is due. The watch streams pace their
// writes with it without a thread or a gRPC timer of their own.
#ifndef DELTASERVE_SERVER_CORE_WEIGHT_HUB_H_
#define DELTASERVE_SERVER_CORE_WEIGHT_HUB_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/snapshot.h"

namespace deltaserve::server {

class WatchReactor;

class WeightHub {
 public:
  // Keeps a subscriber registered while alive. Destroying it unregisters the
  // callback and waits for a running call of it to return, so the callback's
  // owner may be freed right after.
  class Subscription {
   public:
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    // Has the notifier thread call on_change once more at `when` (soon after;
    // at once if it has passed), and not for changes before then: until the
    // time of the latest PokeAt, a change is left to the poke (which finds it
    // in latest()), except Close(), which pokes at once. So a subscriber
    // that waits on purpose costs the notifier nothing per change (300 paced
    // watch streams called at every step kept the notifier busy and cost
    // the learner its rate on 2 cores). Never waits; may be called from
    // on_change. Calls pending when the Subscription is destroyed are
    // dropped.
    void PokeAt(absl::Time when);

   private:
    friend class WeightHub;
    friend class WatchReactor;  // Only to name Slot::mu in its lock order.
    struct Slot {
      absl::Mutex mu;
      std::function<void()> on_change ABSL_GUARDED_BY(mu);
      // The latest PokeAt's `when` (absl::ToUnixNanos): no change pokes
      // before it. Atomic: PokeAt may run inside on_change, under mu.
      std::atomic<int64_t> quiet_until_ns{std::numeric_limits<int64_t>::min()};
    };
    Subscription(WeightHub* hub, std::shared_ptr<Slot> slot) : hub_(hub), slot_(std::move(slot)) {}
    WeightHub* hub_;
    std::shared_ptr<Slot> slot_;
  };

  // `model` names the model in every ParameterUpdate. `initial` (version 0)
  // may be null only if Publish() is called before any other method. Starts
  // the notifier thread.
  WeightHub(std::string model, std::shared_ptr<const Snapshot> initial);

  // Delivers what is still pending, then stops the notifier thread. Every
  // Subscription must be gone by then.
  ~WeightHub();

  const std::string& model() const { return model_; }

  WeightHub(const WeightHub&) = delete;
  WeightHub& operator=(const WeightHub&) = delete;

  // Makes `snapshot` the latest (ignored unless newer than the current one,
  // Snapshot's NewerThan: a relay's new generation counts as newer)
  // and has the notifier thread call every subscriber's on_change. Never
  // waits for a subscriber.
  void Publish(std::shared_ptr<const Snapshot> snapshot) ABSL_LOCKS_EXCLUDED(mu_);

  // After Close() subscribers' callbacks are called once more and closed()
  // is true: watchers finish their streams. Publish() still updates latest().
  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);

  // The newest snapshot.
  std::shared_ptr<const Snapshot> latest() const ABSL_LOCKS_EXCLUDED(mu_);

  // `on_change` is called from the notifier thread after a newer version or
  // Close() (at least once after each; several may coalesce into one call;
  // changes made while nobody was subscribed may give one call soon after
  // subscribing).
  // It should not block (it delays the other subscribers' pokes) and must
  // not call Subscribe or destroy its own Subscription. RESOURCE_EXHAUSTED
  // if `max_subscribers` (0 = no limit) are already subscribed.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(std::function<void()> on_change,
                                                          size_t max_subscribers = 0)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t subscriber_count() const ABSL_LOCKS_EXCLUDED(mu_);

  // A parked long-poll's end: the newest snapshot (version >= the one asked
  // for), or UNAVAILABLE (the hub was closed).
  using WaitDone = std::function<void(absl::StatusOr<std::shared_ptr<const Snapshot>>)>;

  // What AwaitVersion did: `ready` is set when latest() had already reached
  // the version (`done` is then dropped, never called); otherwise `ticket`
  // names the parked waiter for CancelWait.
  struct Wait {
    std::shared_ptr<const Snapshot> ready;
    uint64_t ticket = 0;  // > 0 when parked.
  };

  // Returns latest() if its version is >= `min_version`. Otherwise parks
  // `done`, which is called exactly once, without the hub's lock: from the
  // notifier thread with the newest snapshot once the version is reached,
  // or from Close() (or the destructor) with UNAVAILABLE — unless
  // CancelWait(ticket) took it back first. `done` must not block.
  // UNAVAILABLE if closed; RESOURCE_EXHAUSTED if `max_waiters` (0 = no
  // limit) are already parked.
  absl::StatusOr<Wait> AwaitVersion(uint64_t min_version, WaitDone done, size_t max_waiters = 0)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Takes back a parked waiter: true if it was still parked (its `done` will
  // never be called); false if `done` has been called or is being called.
  bool CancelWait(uint64_t ticket) ABSL_LOCKS_EXCLUDED(mu_);

  // Waiters parked now.
  size_t waiter_count() const ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until no subscription is left (true) or `deadline` passes (false).
  bool AwaitNoSubscribers(absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Unsubscribe(const Subscription::Slot* slot) ABSL_LOCKS_EXCLUDED(mu_);
  // Notifier thread: waits for a change, pokes every subscriber, repeats
  // until the destructor, delivering what is pending before it exits.
  void NotifierLoop() ABSL_LOCKS_EXCLUDED(mu_);
  bool NotifierHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SchedulePoke(std::shared_ptr<Subscription::Slot> slot, absl::Time when)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Removes and returns the timed pokes due at `now`.
  std::vector<std::shared_ptr<Subscription::Slot>> TakeDuePokes(absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes and returns every waiter (all = true) or those latest_ satisfies.
  std::vector<WaitDone> TakeWaiters(bool all) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Waiter {
    uint64_t min_version;
    WaitDone done;
  };
  struct TimedPoke {
    absl::Time when;
    std::shared_ptr<Subscription::Slot> slot;
    bool operator>(const TimedPoke& other) const { return when > other.when; }
  };

  friend class WatchReactor;  // Only to name mu_ in its lock order.

  const std::string model_;

  // A subscriber's callback runs under its Slot::mu and may call latest() or
  // closed().
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(Subscription::Slot::mu);
  std::shared_ptr<const Snapshot> latest_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Subscription::Slot>> slots_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);  // By ticket.
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;    // Publishes and Close so far.
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;  // changes_ the notifier has poked for.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Timed pokes (PokeAt), earliest first.
  std::priority_queue<TimedPoke, std::vector<TimedPoke>, std::greater<TimedPoke>> timed_
      ABSL_GUARDED_BY(mu_);

  std::thread notifier_;  // Last: starts after everything above exists.
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_WEIGHT_HUB_H_
