// Tells ThreadSanitizer about Abseil's synchronization, for a TSan build
// that links Debian's (uninstrumented) libabsl_synchronization.
//
// absl::Mutex, CondVar and Notification live in that shared library, built
// without -fsanitize=thread, so TSan never sees their lock and unlock: every
// access guarded by an absl::Mutex would be reported as a data race (a false
// positive; tests/sanitizers/tsan_probe.cc, built without this file, is a
// short program that gets them). Suppressing those reports would hide real races in the same code,
// so instead this file, linked into the TSan test binary (before the library), interposes the
// library's entry points: each definition below forwards to the library's own (dlsym(RTLD_NEXT))
// and adds the happens-before edge the operation implies, with __tsan_acquire/__tsan_release on the
// object's address:
//   - acquiring a Mutex (Lock, TryLock when it succeeds, LockWhen..., Reader*)
//     acquires; releasing it (Unlock, ReaderUnlock) releases;
//   - Await* and CondVar::Wait* release the Mutex before waiting and acquire
//     it once they hold it again; the Condition of Await*/LockWhen* is
//     evaluated as a critical section of its own (GuardedCondition), since
//     Abseil may evaluate it on another thread, inside the library;
//   - Notification::Notify releases; WaitForNotification* acquires once
//     notified. (HasBeenNotified() is inline in the header and reads an atomic
//     the library stores: a test that relies on it alone, without a Wait*,
//     would still get a false report. None does today.)
// Only the functions deltaserve and its tests call through the library are
// covered; a TSan report that points into an Abseil primitive not listed
// here means one is missing. The symbol names are those of Debian 12's
// Abseil 20220623 (inline namespace absl::debian3): a different Abseil fails
// to link or to find the symbol, loudly, rather than silently doing nothing.
#if !defined(__SANITIZE_THREAD__) && defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#ifndef __SANITIZE_THREAD__
#error "tsan_absl_shim.cc is for -fsanitize=thread builds only"
#endif

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

// The library's definition of `mangled` (the next one after this binary's).
template <typename Fn>
Fn Real(const char* mangled) {
  void* fn = dlsym(RTLD_NEXT, mangled);
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_absl_shim: %s not found in the loaded Abseil: %s\n", mangled,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

#define REAL(type, mangled)                     \
  static const auto real = Real<type>(mangled); \
  (void)0

void Acquire(const void* addr) { __tsan_acquire(const_cast<void*>(addr)); }
void Release(const void* addr) { __tsan_release(const_cast<void*>(addr)); }

// A Condition evaluated as a critical section of `mu`. Abseil evaluates a
// waiter's Condition while holding the Mutex, but not necessarily on the
// waiter's thread (an unlocking thread evaluates the conditions of those
// waiting) and at points inside the library this file cannot see; acquiring
// before and releasing after each evaluation orders it with every other
// critical section, as the real lock does.
struct GuardedCondition {
  GuardedCondition(const absl::Condition& cond, const absl::Mutex* mu) : cond(&cond), mu(mu) {}
  static bool Eval(GuardedCondition* self) {
    Acquire(self->mu);
    // Through dlsym like the rest, so that this object needs no Abseil at
    // link time (CMake's try-compile programs link it too).
    REAL(bool (*)(const absl::Condition*), "_ZNK4absl7debian39Condition4EvalEv");
    const bool met = real(self->cond);
    Release(self->mu);
    return met;
  }
  absl::Condition Wrapped() { return absl::Condition(&GuardedCondition::Eval, this); }
  const absl::Condition* cond;
  const absl::Mutex* mu;
};

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

}  // namespace

// ---- absl::Mutex: acquire after taking it, release before giving it up.

void Mutex::Lock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  Acquire(this);
}

void Mutex::ReaderLock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  Acquire(this);
}

bool Mutex::TryLock() {
  REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::Unlock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  Release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(this);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  real(this, GuardedCondition(cond, this).Wrapped());
  Acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&),
       "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  real(this, GuardedCondition(cond, this).Wrapped());
  Acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool met = real(this, GuardedCondition(cond, this).Wrapped(), timeout);
  Acquire(this);  // Held on return either way.
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool met = real(this, GuardedCondition(cond, this).Wrapped(), deadline);
  Acquire(this);
  return met;
}

void Mutex::Await(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Release(this);
  real(this, GuardedCondition(cond, this).Wrapped());
  Acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Release(this);
  const bool met = real(this, GuardedCondition(cond, this).Wrapped(), timeout);
  Acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Release(this);
  const bool met = real(this, GuardedCondition(cond, this).Wrapped(), deadline);
  Acquire(this);
  return met;
}

// ---- absl::CondVar: the Mutex is released while waiting.

void CondVar::Wait(Mutex* mu) {
  REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(this, mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(bool (*)(CondVar*, Mutex*, Duration),
       "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  const bool timed_out = real(this, mu, timeout);
  Acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(bool (*)(CondVar*, Mutex*, Time),
       "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  const bool timed_out = real(this, mu, deadline);
  Acquire(mu);
  return timed_out;
}

// ---- absl::Notification: Notify happens before every successful wait.

void Notification::Notify() {
  REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  Release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  REAL(void (*)(const Notification*), "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  Acquire(this);
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(bool (*)(const Notification*, Duration),
       "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) Acquire(this);
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  REAL(bool (*)(const Notification*, Time),
       "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) Acquire(this);
  return notified;
}
