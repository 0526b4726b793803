// KeepHeapForReuse (server/core/heap_release.h): after it, a thread that
// allocates and frees the same few-hundred-KB buffers over and over (what a
// learner step does) reuses its heap instead of faulting fresh pages in
// each time. Counted in page faults of that thread, not in time.
#include <sys/resource.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "deltaserve/server/core/heap_release.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

long MinorFaultsOfThisThread() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// Minor page faults of `rounds` rounds after the first, each allocating,
// touching and freeing three 200 KB buffers (over glibc's default 128 KB
// mmap threshold) and one of 64 KB, on a thread of its own.
long FaultsOfRepeatedBuffers(int rounds) {
  long faults = 0;
  std::thread([&] {
    constexpr std::array<size_t, 4> kSizes = {200 << 10, 200 << 10, 200 << 10, 64 << 10};
    long before = 0;
    for (int round = 0; round <= rounds; ++round) {
      if (round == 1) before = MinorFaultsOfThisThread();
      std::array<void*, kSizes.size()> blocks{};
      for (size_t i = 0; i < kSizes.size(); ++i) {
        blocks[i] = std::malloc(kSizes[i]);
        ASSERT_NE(blocks[i], nullptr);
        std::memset(blocks[i], round & 0xff, kSizes[i]);
        asm volatile("" : : "r"(blocks[i]) : "memory");  // Keep the writes.
      }
      for (void* block : blocks) std::free(block);
    }
    faults = MinorFaultsOfThisThread() - before;
  }).join();
  return faults;
}

// The sanitizers bring their own allocator (mallopt does not reach it), so
// there the test says so and is reported as skipped; the release build of
// make test runs it.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DELTASERVE_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DELTASERVE_SANITIZER_ALLOCATOR 1
#endif
#endif

TEST(KeepHeapForReuse, RepeatedBuffersAreNotFaultedInAgain) {
#ifdef DELTASERVE_SANITIZER_ALLOCATOR
  GTEST_SKIP() << "built with a sanitizer: its allocator replaces glibc's malloc, which "
                  "KeepHeapForReuse configures (the release build runs this test)";
#endif
  ASSERT_TRUE(KeepHeapForReuse()) << "mallopt refused the thresholds (is this glibc?)";
  constexpr int kRounds = 50;
  const long faults = FaultsOfRepeatedBuffers(kRounds);
  // Without it: each round maps the 600 KB afresh, ~150 pages, ~7,500 in all.
  EXPECT_LT(faults, kRounds) << "minor page faults over " << kRounds << " rounds";
}

}  // namespace
}  // namespace deltaserve::server
