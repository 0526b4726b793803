#include "server/core/heap_release.h"

#include <malloc.h>

#include "base/check.h"

namespace deltaserve::server {

FloodHeapRelease& FloodHeapRelease::Streams() {
  static FloodHeapRelease* const streams = new FloodHeapRelease();
  return *streams;
}

void FloodHeapRelease::Opened() {
  absl::MutexLock lock(&mu_);
  ++live_;
  if (live_ > peak_) peak_ = live_;
}

void FloodHeapRelease::Closed() {
  {
    absl::MutexLock lock(&mu_);
    DELTASERVE_DCHECK(live_ > 0);
    --live_;
    if (peak_ < flood_ || live_ > peak_ / 4) return;
    peak_ = live_;
    ++trims_;
  }
  malloc_trim(0);  // Not under mu_: Opened/Closed of other streams go on.
}

uint64_t FloodHeapRelease::trims() const {
  absl::MutexLock lock(&mu_);
  return trims_;
}

}  // namespace deltaserve::server
