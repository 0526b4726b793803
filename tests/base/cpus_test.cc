#include "deltaserve/base/cpus.h"

#include <sched.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "deltaserve/tests/persist/temp_dir.h"
#include "deltaserve/tests/support/one_cpu.h"
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

// A cgroup v2 tree in a temporary directory: ROOT/slice/container.
class CgroupTree : public ::testing::Test {
 protected:
  void Write(const std::string& cgroup, const std::string& cpu_max) {
    std::filesystem::create_directories(dir_.path() + cgroup);
    std::ofstream(dir_.path() + cgroup + "/cpu.max") << cpu_max << "\n";
  }
  std::optional<int> Allowed(const std::string& cgroup) {
    return CpusAllowedByCgroups(dir_.path(), cgroup);
  }
  deltaserve::testing::TempDir dir_;
};

TEST_F(CgroupTree, TheContainersOwnQuota) {
  Write("/slice", "max 100000");
  Write("/slice/container", "150000 100000");
  EXPECT_EQ(Allowed("/slice/container"), 2);
}

TEST_F(CgroupTree, AQuotaAboveTheContainerCapsIt) {
  Write("/slice", "50000 100000");
  Write("/slice/container", "max 100000");
  EXPECT_EQ(Allowed("/slice/container"), 1);
  Write("/slice/container", "400000 100000");
  EXPECT_EQ(Allowed("/slice/container"), 1);  // The smallest wins.
}

TEST_F(CgroupTree, NoQuotaAnywhereOrNoFilesIsNoLimit) {
  Write("/slice", "max 100000");
  Write("/slice/container", "max 100000");
  EXPECT_EQ(Allowed("/slice/container"), std::nullopt);
  EXPECT_EQ(Allowed("/elsewhere/unknown"), std::nullopt);
  EXPECT_EQ(Allowed("/"), std::nullopt);
}

TEST(UsableCpus, FollowsTheAffinityMask) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  const int before = UsableCpus();
  EXPECT_GE(before, 1);
  EXPECT_LE(before, CPU_COUNT(&all));
  // Pinned to one CPU: one usable, whatever the host has.
  int pinned = 0;
  {
    deltaserve::testing::PinnedToOneCpu one;
    pinned = UsableCpus();
  }
  EXPECT_EQ(pinned, 1);
  EXPECT_EQ(UsableCpus(), before) << "the affinity was not restored";
}

}  // namespace
}  // namespace deltaserve::base
