// WeightHub: fans one model's published snapshots out to its watchers.
//
// Latest-wins: the hub keeps only the newest snapshot. Publish() (learner
// thread) stores it and pokes every subscriber's callback; a subscriber pulls
// latest() when it is ready to send, so a slow watcher skips intermediate
// versions and never slows other watchers. The hub knows nothing of gRPC:
// encoding a version for the wire is the service's (server/service/
// encoded_update.h).
#ifndef DELTASERVE_SERVER_CORE_WEIGHT_HUB_H_
#define DELTASERVE_SERVER_CORE_WEIGHT_HUB_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/core/snapshot.h"

namespace deltaserve::server {

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

   private:
    friend class WeightHub;
    struct Slot {
      absl::Mutex mu;
      std::function<void()> on_change ABSL_GUARDED_BY(mu);
    };
    Subscription(WeightHub* hub, std::shared_ptr<Slot> slot) : hub_(hub), slot_(std::move(slot)) {}
    WeightHub* hub_;
    std::shared_ptr<Slot> slot_;
  };

  // `model` names the model in every ParameterUpdate. `initial` (version 0)
  // may be null only if Publish() is called before any other method.
  WeightHub(std::string model, std::shared_ptr<const Snapshot> initial);

  const std::string& model() const { return model_; }

  WeightHub(const WeightHub&) = delete;
  WeightHub& operator=(const WeightHub&) = delete;

  // Makes `snapshot` the latest (ignored unless newer than the current one)
  // and calls every subscriber's on_change. Never blocks on a watcher as long
  // as the callbacks don't block.
  void Publish(std::shared_ptr<const Snapshot> snapshot) ABSL_LOCKS_EXCLUDED(mu_);

  // After Close() subscribers' callbacks are called once more and closed()
  // is true: watchers finish their streams. Publish() still updates latest().
  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);

  // The newest snapshot.
  std::shared_ptr<const Snapshot> latest() const ABSL_LOCKS_EXCLUDED(mu_);

  // `on_change` is called (from Publish/Close callers' threads) whenever a
  // newer version or Close() happens. It must not block and must not call
  // Subscribe or destroy its own Subscription.
  std::unique_ptr<Subscription> Subscribe(std::function<void()> on_change) ABSL_LOCKS_EXCLUDED(mu_);

  size_t subscriber_count() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Unsubscribe(const Subscription::Slot* slot) ABSL_LOCKS_EXCLUDED(mu_);
  void NotifyAll() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string model_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> latest_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Subscription::Slot>> slots_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_WEIGHT_HUB_H_
