#include "deltaserve/base/cpus.h"

#include <sched.h>

#include "gtest/gtest.h"

namespace deltaserve::base {
namespace {

TEST(CpusFromCgroupMax, RoundsAQuotaUpToWholeCpus) {
  EXPECT_EQ(CpusFromCgroupMax("150000 100000"), 2);
  EXPECT_EQ(CpusFromCgroupMax("200000 100000\n"), 2);
  EXPECT_EQ(CpusFromCgroupMax("50000 100000"), 1);
  EXPECT_EQ(CpusFromCgroupMax("1 100000"), 1);
}

TEST(CpusFromCgroupMax, NoQuotaOrAnUnreadableLineIsNoLimit) {
  EXPECT_EQ(CpusFromCgroupMax("max 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupMax(""), std::nullopt);
  EXPECT_EQ(CpusFromCgroupMax("100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupMax("0 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupMax("-5 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupMax("100000 0"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupMax("1 2 3"), std::nullopt);
}

TEST(UsableCpus, FollowsTheAffinityMask) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  const int allowed = CPU_COUNT(&all);
  EXPECT_GE(UsableCpus(), 1);
  EXPECT_LE(UsableCpus(), allowed);

  // Only the first allowed CPU: one usable, whatever the host has.
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int pinned = UsableCpus();
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
  EXPECT_EQ(pinned, 1);
}

}  // namespace
}  // namespace deltaserve::base
