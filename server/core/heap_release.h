// Gives the heap back to the OS after a flood of streams ends.
//
// glibc keeps what a flood of WatchParameters streams freed in its arenas
// (one per thread that allocated, up to 8 per core): measured on loopback, a
// server with 4,000 watchers open went from 17 MB to 84 MB RSS and stayed at
// 94 MB after they all closed, with 0.75 MB of it in use; malloc_trim(0)
// brought it back to 19 MB (docs/reliability.md, "Memory after a flood").
#ifndef DELTASERVE_SERVER_CORE_HEAP_RELEASE_H_
#define DELTASERVE_SERVER_CORE_HEAP_RELEASE_H_

#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace deltaserve::server {

// Counts live streams and, once a flood is over, returns freed heap to the OS
// with malloc_trim(0): when Closed() brings the count to at most a quarter of
// the highest it reached since the last trim, and that highest was at least
// `flood` streams. The trim runs once per flood, on the thread that closed
// the stream (a few milliseconds; other threads' allocations wait for the
// arena being trimmed). Thread-safe.
class FloodHeapRelease {
 public:
  static constexpr size_t kDefaultFlood = 256;

  explicit FloodHeapRelease(size_t flood = kDefaultFlood) : flood_(flood) {}

  // The process's instance, used by the WatchParameters reactors.
  static FloodHeapRelease& Streams();

  void Opened() ABSL_LOCKS_EXCLUDED(mu_);
  void Closed() ABSL_LOCKS_EXCLUDED(mu_);

  // Times it has trimmed.
  uint64_t trims() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t flood_;
  mutable absl::Mutex mu_;
  size_t live_ ABSL_GUARDED_BY(mu_) = 0;
  size_t peak_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t trims_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_HEAP_RELEASE_H_
