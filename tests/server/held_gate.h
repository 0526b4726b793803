// HeldGate: a LearnerGate (server/core/trainer.h) a test closes to hold a
// learner before its next batch, so submissions stay queued until it opens.
#ifndef DELTASERVE_TESTS_SERVER_HELD_GATE_H_
#define DELTASERVE_TESTS_SERVER_HELD_GATE_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/server/core/trainer.h"

namespace deltaserve::server::testing {

class HeldGate final : public LearnerGate {
 public:
  // Closed: the learner waits in Pass() until Open() or Abandon().
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  void Open() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = false;
  }
  // Lets the learner through once while staying closed: it takes one batch
  // (everything queued by then) and is held again before the next.
  void PassOnce() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++passes_;
  }

  void Pass() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](HeldGate* gate) ABSL_EXCLUSIVE_LOCKS_REQUIRED(gate->mu_) {
          return !gate->closed_ || gate->passes_ > 0 || gate->abandoned_;
        },
        this));
    if (closed_ && passes_ > 0) --passes_;
  }
  void Abandon() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    abandoned_ = true;
  }

 private:
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  int passes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_HELD_GATE_H_
