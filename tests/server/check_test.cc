// base/check.h: CHECK, DCHECK and ThreadOwner. Where DCHECKs are on (no
// NDEBUG: the sanitizer builds) a failed one aborts; in a build with NDEBUG
// the same failing statement runs to completion (DCHECKs compile out).
#include "deltaserve/base/check.h"

#include <cstdlib>
#include <thread>

#include "gtest/gtest.h"

namespace deltaserve {
namespace {

// Runs `f` on a thread of its own and waits for it.
template <typename F>
void OnOtherThread(F f) {
  std::thread t(f);
  t.join();
}

class CheckTest : public ::testing::Test {
 protected:
  // The death tests below start threads: fork-and-exec keeps them safe.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(CheckTest, CheckEvaluatesItsConditionOnceAndPassesWhenTrue) {
  int evaluated = 0;
  DELTASERVE_CHECK(++evaluated == 1);
  DELTASERVE_CHECK(evaluated == 1, "with a message");
  EXPECT_EQ(evaluated, 1);
}

TEST_F(CheckTest, CheckFailurePrintsConditionPlaceAndMessage) {
  EXPECT_DEATH(DELTASERVE_CHECK(1 + 1 == 3, "arithmetic"),
               "deltaserve: CHECK failed: 1 \\+ 1 == 3 at .*check_test.cc:[0-9]+: arithmetic");
  EXPECT_DEATH(DELTASERVE_CHECK(false), "deltaserve: CHECK failed: false at ");
}

TEST_F(CheckTest, DcheckIsOnExactlyWithoutNdebug) {
#ifdef NDEBUG
  EXPECT_FALSE(DELTASERVE_DCHECK_IS_ON());
#else
  EXPECT_TRUE(DELTASERVE_DCHECK_IS_ON());
#endif
}

TEST_F(CheckTest, DcheckEvaluatesItsConditionOnlyWhenOn) {
  int evaluated = 0;
  DELTASERVE_DCHECK(++evaluated > 0);
  EXPECT_EQ(evaluated, DELTASERVE_DCHECK_IS_ON() ? 1 : 0);
}

TEST_F(CheckTest, DcheckFailureAbortsExactlyWhereDchecksAreOn) {
#ifdef NDEBUG
  EXPECT_EXIT(
      {
        DELTASERVE_DCHECK(2 < 1, "order");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
#else
  EXPECT_DEATH(DELTASERVE_DCHECK(2 < 1, "order"), "CHECK failed: 2 < 1 at .*: order");
#endif
}

TEST_F(CheckTest, ThreadOwnerBindsToTheFirstCaller) {
  ThreadOwner owner;
  EXPECT_TRUE(owner.CalledOnOwner());
  EXPECT_TRUE(owner.CalledOnOwner());
  bool other = true;
  OnOtherThread([&] { other = owner.CalledOnOwner(); });
  // Without DCHECKs every thread passes (nothing is recorded).
  EXPECT_EQ(other, !DELTASERVE_DCHECK_IS_ON());
}

TEST_F(CheckTest, ThreadOwnerReleaseHandsOwnershipOver) {
  ThreadOwner owner;
  EXPECT_TRUE(owner.CalledOnOwner());
  owner.Release();
  bool taken = false;
  OnOtherThread([&] { taken = owner.CalledOnOwner(); });
  EXPECT_TRUE(taken);
  EXPECT_EQ(owner.CalledOnOwner(), !DELTASERVE_DCHECK_IS_ON());
}

TEST_F(CheckTest, DcheckOwnedFailsOnAnotherThreadExactlyWhereDchecksAreOn) {
  ThreadOwner owner;
  DELTASERVE_DCHECK_OWNED(owner);
#ifdef NDEBUG
  EXPECT_EXIT(
      {
        OnOtherThread([&] { DELTASERVE_DCHECK_OWNED(owner); });
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
#else
  EXPECT_DEATH(OnOtherThread([&] { DELTASERVE_DCHECK_OWNED(owner); }),
               "CHECK failed: .*called from a thread that does not own this state");
#endif
}

}  // namespace
}  // namespace deltaserve
