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
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace deltaserve::server {

// Counts live streams and, as a flood ebbs, returns freed heap to the OS with
// malloc_trim(0): once the count has reached `flood`, each time Closed()
// brings it to a quarter of the peak, then of the count at the last trim, and
// at last to none (4,000 streams closing: 6 trims, at 1,000, 250, 62, 15, 3
// and 0). Then the flood is over until the count reaches `flood` again. Each
// trim runs `delay` later on a thread of its own (gRPC frees a call's buffers
// and a closing connection's after the stream's OnDone; milliseconds of work,
// during which other threads' allocations wait for the arena being trimmed);
// triggers within one delay make one trim. Thread-safe.
class FloodHeapRelease {
 public:
  static constexpr size_t kDefaultFlood = 256;

  explicit FloodHeapRelease(size_t flood = kDefaultFlood, absl::Duration delay = absl::Seconds(1));
  ~FloodHeapRelease();
  FloodHeapRelease(const FloodHeapRelease&) = delete;
  FloodHeapRelease& operator=(const FloodHeapRelease&) = delete;

  // The process's instance, used by the WatchParameters reactors.
  static FloodHeapRelease& Streams();

  void Opened() ABSL_LOCKS_EXCLUDED(mu_);
  void Closed() ABSL_LOCKS_EXCLUDED(mu_);

  // Times it has trimmed.
  uint64_t trims() const ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until trims() >= n (true) or `timeout` passes (false).
  bool AwaitTrims(uint64_t n, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void TrimLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const size_t flood_;
  const absl::Duration delay_;
  mutable absl::Mutex mu_;
  size_t live_ ABSL_GUARDED_BY(mu_) = 0;
  size_t peak_ ABSL_GUARDED_BY(mu_) = 0;     // Since the last flood ended.
  size_t trim_at_ ABSL_GUARDED_BY(mu_) = 0;  // Trim when live_ falls to this.
  uint64_t trims_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time due_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();  // The next trim.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  mutable absl::CondVar changed_;  // due_, stop_ or trims_ changed.
  std::thread trimmer_;
};

// Makes glibc keep freed heap for reuse instead of handing it back to the
// OS after every free, for the deltaserve binary (server/main.cc calls it
// first thing). By default glibc trims a thread's arena whenever its top
// grows past 128 KB (madvise(MADV_DONTNEED): a TLB shootdown across the
// cores), and serves blocks over 128 KB with a fresh mmap each time; a
// learner whose per-step buffers are a few hundred KB then gives them back
// and faults them in again on every step (TD3's server: one madvise and
// ~11 page faults per step, 4x the faults of a run with this setting).
// Afterwards blocks up to `mmap_threshold` come from the arenas and an
// arena's top is trimmed only past `trim_threshold`; RSS then stays near its
// peak instead of dropping between steps, and FloodHeapRelease's explicit
// malloc_trim still returns what a flood of streams left. False where the C
// library is not glibc (nothing changed).
inline constexpr size_t kHeapMmapThreshold = size_t{32} << 20;
inline constexpr size_t kHeapTrimThreshold = size_t{64} << 20;
bool KeepHeapForReuse(size_t mmap_threshold = kHeapMmapThreshold,
                      size_t trim_threshold = kHeapTrimThreshold);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_HEAP_RELEASE_H_
