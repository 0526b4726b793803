// History (server/core/history.h): retention, downsampling, ordering and
// persistence.
#include "deltaserve/server/core/history.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>

#include "deltaserve/tests/persist/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using ::testing::ElementsAre;

void ExpectSorted(const std::vector<HistoryPoint>& points) {
  for (size_t i = 1; i < points.size(); ++i) {
    ASSERT_LT(points[i - 1].unix_ms, points[i].unix_ms) << "at " << i;
  }
}

TEST(HistoryTest, ReadsPointsOldestFirstAfterSince) {
  History history;
  for (int i = 1; i <= 5; ++i) history.Record("m", "loss", 1000 * i, i * 0.5);
  auto all = history.Read("m", 0);
  ASSERT_EQ(all.size(), 1u);
  ASSERT_EQ(all["loss"].size(), 5u);
  EXPECT_EQ(all["loss"][0].unix_ms, 1000);
  EXPECT_EQ(all["loss"][4].value, 2.5);
  auto newer = history.Read("m", 3000);
  ASSERT_EQ(newer["loss"].size(), 2u);
  EXPECT_EQ(newer["loss"][0].unix_ms, 4000);
  EXPECT_TRUE(history.Read("other", 0).empty());
  EXPECT_THAT(history.Series("m"), ElementsAre("loss"));
  EXPECT_TRUE(history.Series("other").empty());
}

TEST(HistoryTest, DropsNonFiniteValuesAndKeepsTimeMonotonic) {
  History history;
  history.Record("m", "x", 5000, 1.0);
  history.Record("m", "x", 6000, std::numeric_limits<double>::quiet_NaN());
  history.Record("m", "x", 7000, std::numeric_limits<double>::infinity());
  history.Record("m", "x", 4000, 2.0);  // The clock went back: counts as 5000.
  auto points = history.Read("m", 0)["x"];
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[1].unix_ms, 5000);
  EXPECT_EQ(points[1].value, 2.0);
}

TEST(HistoryTest, ModelsListsTheDefaultFirst) {
  History history;
  history.Record("b", "x", 1, 1.0);
  history.Record("c", "x", 1, 1.0);
  history.Record("a", "x", 1, 1.0);
  EXPECT_THAT(history.Models(), ElementsAre("a", "b", "c"));
  history.SetDefaultModel("c");
  EXPECT_THAT(history.Models(), ElementsAre("c", "a", "b"));
}

TEST(HistoryTest, BoundsSeriesPerModel) {
  History history;
  for (size_t i = 0; i < kMaxHistorySeries + 10; ++i) {
    history.Record("m", "s" + std::to_string(i), 1, 1.0);
  }
  EXPECT_EQ(history.Series("m").size(), kMaxHistorySeries);
}

// A 40-day run at one point a second: memory (points kept) stays bounded,
// the read is sorted and reaches back 30 days, and the recent minutes are at
// full resolution.
TEST(HistoryTest, LongRunIsBoundedAndDownsampled) {
  History history;
  const int64_t start = 1'700'000'000'000;
  const int64_t seconds = 40 * 24 * 3600;
  for (int64_t s = 0; s < seconds; ++s) history.Record("m", "v", start + s * 1000, 1.0);
  auto points = history.Read("m", 0)["v"];
  ExpectSorted(points);
  EXPECT_LE(points.size(), kHistoryPointsPerSeries + kHistoryLevels.size());
  const int64_t end = start + (seconds - 1) * 1000;
  EXPECT_EQ(points.back().unix_ms, end);
  // The last 600 points are the raw ones, a second apart.
  ASSERT_GT(points.size(), 600u);
  for (size_t i = points.size() - 599; i < points.size(); ++i) {
    EXPECT_EQ(points[i].unix_ms - points[i - 1].unix_ms, 1000) << i;
  }
  // The oldest point is about 30 days back (the 1 h level's 720 buckets).
  EXPECT_LT(points.front().unix_ms, end - int64_t{29} * 24 * 3600 * 1000);
  EXPECT_GT(points.front().unix_ms, end - int64_t{31} * 24 * 3600 * 1000);
  for (const HistoryPoint& p : points) EXPECT_EQ(p.value, 1.0);
}

// Bucket means: values 0, 1, 2, ... one a second; the 10 s bucket
// [10k, 10k+10) averages to 10k + 4.5 at time 10k + 4.5 s.
TEST(HistoryTest, CoarseLevelsAverageTheirBuckets) {
  History history;
  for (int64_t s = 0; s < 1000; ++s) history.Record("m", "v", s * 1000, static_cast<double>(s));
  auto points = history.Read("m", 0)["v"];
  ExpectSorted(points);
  // Raw: 400..999; before them 10 s buckets 0..39.
  ASSERT_EQ(points.size(), 600u + 40u);
  for (int k = 0; k < 40; ++k) {
    EXPECT_EQ(points[k].value, 10 * k + 4.5) << k;
    EXPECT_EQ(points[k].unix_ms, 10'000 * k + 4500) << k;
  }
  EXPECT_EQ(points[40].unix_ms, 400'000);
}

// Points faster than the raw ring's span: the coarser levels' newest buckets
// fill in before the raw points, with no gap of a whole bucket.
TEST(HistoryTest, FastSeriesHaveNoGapBeforeTheRawPoints) {
  History history;
  for (int64_t i = 0; i < 100'000; ++i) history.Record("m", "v", i, 1.0);  // 1 per ms
  auto points = history.Read("m", 0)["v"];
  ExpectSorted(points);
  for (size_t i = 1; i < points.size(); ++i) {
    EXPECT_LE(points[i].unix_ms - points[i - 1].unix_ms, 10'000) << i;
  }
}

TEST(HistoryTest, SavesAndLoadsAcrossInstances) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/history.pb";
  persist::FileSystem& fs = *persist::FileSystem::Default();
  History before;
  for (int64_t s = 0; s < 2000; ++s) before.Record("m", "v", s * 1000, static_cast<double>(s));
  before.Record("m", "w", 5, 7.0);
  before.Record("other", "v", 5, 7.0);
  ASSERT_TRUE(before.Save("m", fs, path).ok());
  History after;
  ASSERT_TRUE(after.Load("m", fs, path).ok());
  EXPECT_EQ(after.Models(), std::vector<std::string>{"m"});
  auto a = before.Read("m", 0);
  auto b = after.Read("m", 0);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, points] : a) {
    ASSERT_EQ(points.size(), b[name].size()) << name;
    for (size_t i = 0; i < points.size(); ++i) {
      EXPECT_EQ(points[i].unix_ms, b[name][i].unix_ms);
      EXPECT_EQ(points[i].value, b[name][i].value);
    }
  }
  // The curve continues: a later point follows the loaded ones.
  after.Record("m", "v", 2'000'000, 1.0);
  auto v = after.Read("m", 0)["v"];
  ExpectSorted(v);
  EXPECT_EQ(v.back().unix_ms, 2'000'000);
}

TEST(HistoryTest, MissingFileIsEmptyAndCorruptFileIsAnErrorAndEmpty) {
  testing::TempDir dir;
  persist::FileSystem& fs = *persist::FileSystem::Default();
  History history;
  history.Record("m", "v", 1, 1.0);
  EXPECT_TRUE(history.Load("m", fs, dir.path() + "/absent.pb").ok());
  EXPECT_TRUE(history.Read("m", 0).empty());
  const std::string path = dir.path() + "/history.pb";
  {
    std::ofstream out(path, std::ios::binary);
    out << "\xff\xff\xff garbage";
  }
  history.Record("m", "v", 1, 1.0);
  absl::Status status = history.Load("m", fs, path);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(history.Read("m", 0).empty());
}

}  // namespace
}  // namespace deltaserve::server
