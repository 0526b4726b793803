// Invariant checks the code states about itself.
//
//   DELTASERVE_CHECK(cond[, "message"]): always on (the message, if any, is a
//     string literal). On failure prints
//     "deltaserve: CHECK failed: <cond> at <file>:<line>" (and the optional
//     message) to stderr and aborts. For invariants whose violation would
//     corrupt state that outlives the process (a journal, a checkpoint).
//   DELTASERVE_DCHECK(cond[, message]): the same in builds without NDEBUG
//     (Debug, and the sanitizer builds under tests/sanitizers, which run the
//     unit and integration tests with them on); compiled out, with `cond`
//     unevaluated, in Release. Cheap checks only: an integer compare, a thread
//     id compare.
//   ThreadOwner: "only the thread that owns this may touch it". The first
//     DCHECK_OWNED (or an explicit Bind) binds it to the calling thread; a
//     later call from any other thread fails. Release(): ownership may move
//     (e.g. Create() hands the state to the learner thread). Costs one word
//     and nothing in Release builds.
//
// Abseil 20220623 has no absl/log (CHECK/DCHECK came in 20230125); these
// are the project's own.
#ifndef DELTASERVE_BASE_CHECK_H_
#define DELTASERVE_BASE_CHECK_H_

#include <atomic>
#include <thread>

#include "absl/base/optimization.h"
#include "absl/strings/string_view.h"

namespace deltaserve::internal {

// Prints the failed condition and where, then aborts. Never returns.
[[noreturn]] void CheckFailed(const char* condition, const char* file, int line,
                              absl::string_view message);

}  // namespace deltaserve::internal

#define DELTASERVE_CHECK(cond, ...)                                                   \
  do {                                                                                \
    if (ABSL_PREDICT_FALSE(!(cond))) {                                                \
      ::deltaserve::internal::CheckFailed(#cond, __FILE__, __LINE__, "" __VA_ARGS__); \
    }                                                                                 \
  } while (false)

#ifdef NDEBUG
#define DELTASERVE_DCHECK_IS_ON() false
#define DELTASERVE_DCHECK(cond, ...) \
  do {                               \
    if (false) (void)(cond);         \
  } while (false)
#else
#define DELTASERVE_DCHECK_IS_ON() true
#define DELTASERVE_DCHECK(cond, ...) DELTASERVE_CHECK(cond, __VA_ARGS__)
#endif

namespace deltaserve {

// Asserts (in DCHECK builds) that one thread at a time owns some state.
class ThreadOwner {
 public:
  // True if the calling thread owns this, binding it first if no thread does.
  bool CalledOnOwner() const {
#if DELTASERVE_DCHECK_IS_ON()
    const std::thread::id self = std::this_thread::get_id();
    std::thread::id expected{};
    if (owner_.compare_exchange_strong(expected, self, std::memory_order_relaxed)) return true;
    return expected == self;
#else
    return true;
#endif
  }
  // No thread owns this; the next CalledOnOwner() binds it.
  void Release() {
#if DELTASERVE_DCHECK_IS_ON()
    owner_.store(std::thread::id{}, std::memory_order_relaxed);
#endif
  }

 private:
#if DELTASERVE_DCHECK_IS_ON()
  mutable std::atomic<std::thread::id> owner_{};
#endif
};

}  // namespace deltaserve

// DELTASERVE_DCHECK_OWNED(owner): the calling thread owns `owner` (a ThreadOwner).
#define DELTASERVE_DCHECK_OWNED(owner) \
  DELTASERVE_DCHECK((owner).CalledOnOwner(), "called from a thread that does not own this state")

#endif  // DELTASERVE_BASE_CHECK_H_
