// Pins the calling thread to one of the CPUs it may use, for as long as the
// object lives, then restores its affinity: what taskset or a one-CPU cpuset
// does to a process, for code that sizes itself by the CPUs it may use.
#ifndef DELTASERVE_TESTS_SUPPORT_ONE_CPU_H_
#define DELTASERVE_TESTS_SUPPORT_ONE_CPU_H_

#include <sched.h>

#include "gtest/gtest.h"

namespace deltaserve::testing {

class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    pinned_ = sched_getaffinity(0, sizeof all_, &all_) == 0;
    EXPECT_TRUE(pinned_) << "sched_getaffinity failed";
    if (!pinned_) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &all_)) {
        CPU_SET(cpu, &one);
        break;
      }
    }
    pinned_ = sched_setaffinity(0, sizeof one, &one) == 0;
    EXPECT_TRUE(pinned_) << "sched_setaffinity to one CPU failed";
  }
  ~PinnedToOneCpu() {
    if (pinned_) {
      EXPECT_EQ(sched_setaffinity(0, sizeof all_, &all_), 0);
    }
  }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;

  // The CPUs the thread could use before.
  int cpus_before() const { return CPU_COUNT(&all_); }

 private:
  cpu_set_t all_;
  bool pinned_ = false;
};

}  // namespace deltaserve::testing

#endif  // DELTASERVE_TESTS_SUPPORT_ONE_CPU_H_
