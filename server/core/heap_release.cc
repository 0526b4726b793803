#include "deltaserve/server/core/heap_release.h"

#include <malloc.h>

#include "absl/time/clock.h"
#include "deltaserve/base/check.h"

namespace deltaserve::server {

bool KeepHeapForReuse(size_t mmap_threshold, size_t trim_threshold) {
#ifdef __GLIBC__
  return mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1 &&
         mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  return false;
#endif
}

FloodHeapRelease::FloodHeapRelease(size_t flood, absl::Duration delay)
    : flood_(flood), delay_(delay), trimmer_([this] { TrimLoop(); }) {}

FloodHeapRelease::~FloodHeapRelease() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    changed_.SignalAll();
  }
  trimmer_.join();
}

FloodHeapRelease& FloodHeapRelease::Streams() {
  static FloodHeapRelease* const streams = new FloodHeapRelease();
  return *streams;
}

void FloodHeapRelease::Opened() {
  absl::MutexLock lock(&mu_);
  ++live_;
  if (live_ > peak_) {
    peak_ = live_;
    trim_at_ = peak_ / 4;
  }
}

void FloodHeapRelease::Closed() {
  absl::MutexLock lock(&mu_);
  DELTASERVE_DCHECK(live_ > 0);
  --live_;
  if (peak_ < flood_ || live_ > trim_at_) return;
  trim_at_ = live_ / 4;                        // The next quarter, down to none.
  if (live_ == 0) peak_ = 0;                   // The flood is over.
  if (due_ != absl::InfiniteFuture()) return;  // Already asked for.
  due_ = absl::Now() + delay_;
  changed_.SignalAll();
}

void FloodHeapRelease::TrimLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    if (absl::Now() < due_) {
      changed_.WaitWithDeadline(&mu_, due_);  // Stopped, a trim asked for, or one due.
      continue;
    }
    due_ = absl::InfiniteFuture();
    mu_.Unlock();
    malloc_trim(0);  // Not under mu_: Opened/Closed of other streams go on.
    mu_.Lock();
    ++trims_;
    changed_.SignalAll();
  }
}

uint64_t FloodHeapRelease::trims() const {
  absl::MutexLock lock(&mu_);
  return trims_;
}

bool FloodHeapRelease::AwaitTrims(uint64_t n, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  while (trims_ < n) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) return trims_ >= n;
  }
  return true;
}

}  // namespace deltaserve::server
