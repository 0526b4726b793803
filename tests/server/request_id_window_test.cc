#include "deltaserve/server/core/request_id_window.h"

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using Window = RequestIdWindow<int>;

std::vector<std::pair<std::string, int>> Contents(const Window& window) {
  std::vector<std::pair<std::string, int>> out;
  window.ForEachOldestFirst(
      [&](absl::string_view id, const int& result) { out.emplace_back(std::string(id), result); });
  return out;
}

TEST(RequestIdWindow, FindsWhatItRemembersAndNothingElse) {
  Window window(4);
  window.Remember("a", 1);
  window.Remember("b", 2);
  ASSERT_NE(window.Find("a"), nullptr);
  EXPECT_EQ(*window.Find("a"), 1);
  EXPECT_EQ(*window.Find("b"), 2);
  EXPECT_EQ(window.Find("c"), nullptr);
  EXPECT_EQ(window.Find("ab"), nullptr);
  EXPECT_EQ(window.Find(""), nullptr);
}

TEST(RequestIdWindow, ForgetsTheOldestBeyondItsCapacity) {
  Window window(3);
  for (int i = 0; i < 5; ++i) window.Remember(absl::StrCat("id", i), i);
  EXPECT_EQ(window.size(), 3u);
  EXPECT_EQ(window.Find("id0"), nullptr);
  EXPECT_EQ(window.Find("id1"), nullptr);
  for (int i = 2; i < 5; ++i) {
    ASSERT_NE(window.Find(absl::StrCat("id", i)), nullptr) << i;
    EXPECT_EQ(*window.Find(absl::StrCat("id", i)), i);
  }
  EXPECT_EQ(Contents(window),
            (std::vector<std::pair<std::string, int>>{{"id2", 2}, {"id3", 3}, {"id4", 4}}));
}

TEST(RequestIdWindow, ARememberedIdKeepsItsFirstResultAndEvictsNothing) {
  Window window(2);
  window.Remember("a", 1);
  window.Remember("b", 2);
  window.Remember("a", 99);
  EXPECT_EQ(*window.Find("a"), 1);
  EXPECT_EQ(*window.Find("b"), 2);
  EXPECT_EQ(window.size(), 2u);
}

TEST(RequestIdWindow, CapacityZeroRemembersNothing) {
  Window window(0);
  window.Remember("a", 1);
  EXPECT_EQ(window.Find("a"), nullptr);
  EXPECT_EQ(window.size(), 0u);
}

TEST(RequestIdWindow, ClearForgetsEverythingAndTheWindowWorksAfterwards) {
  Window window(2);
  window.Remember("a", 1);
  window.Remember("b", 2);
  window.Remember("c", 3);  // Wrapped: the ring's oldest is not slot 0.
  window.Clear();
  EXPECT_EQ(window.size(), 0u);
  EXPECT_EQ(window.Find("b"), nullptr);
  EXPECT_EQ(window.Find("c"), nullptr);
  window.Remember("d", 4);
  window.Remember("e", 5);
  window.Remember("f", 6);
  EXPECT_EQ(Contents(window), (std::vector<std::pair<std::string, int>>{{"e", 5}, {"f", 6}}));
}

TEST(RequestIdWindow, IdsOfEveryLengthAndByteAreTheirOwn) {
  // Ids that share prefixes, differ in one byte, hold NULs, up to 128 bytes.
  Window window(1000);
  std::vector<std::string> ids;
  for (size_t length = 1; length <= 128; length += 7) {
    std::string id(length, 'x');
    ids.push_back(id);
    id.back() = '\0';
    ids.push_back(id);
    id.front() = 'y';
    ids.push_back(id);
  }
  for (size_t i = 0; i < ids.size(); ++i) window.Remember(ids[i], static_cast<int>(i));
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_NE(window.Find(ids[i]), nullptr) << i;
    EXPECT_EQ(*window.Find(ids[i]), static_cast<int>(i)) << i;
  }
}

// Against a plain model (map + deque of the newest `capacity` ids), over a
// long random sequence with many repeats, while the ring fills, wraps and
// wraps again: the same answers and the same contents in the same order.
TEST(RequestIdWindow, AgreesWithAPlainModelOverARandomSequence) {
  constexpr size_t kCapacity = 37;
  Window window(kCapacity);
  std::map<std::string, int> model;
  std::deque<std::string> order;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> pick(0, 120);
  for (int step = 0; step < 20000; ++step) {
    const std::string id = absl::StrCat("request-", pick(rng));
    const int* found = window.Find(id);
    auto it = model.find(id);
    ASSERT_EQ(found != nullptr, it != model.end()) << "step " << step << " id " << id;
    if (found != nullptr) {
      ASSERT_EQ(*found, it->second) << "step " << step;
      continue;  // As the learner: a known id is answered, not remembered.
    }
    window.Remember(id, step);
    model.emplace(id, step);
    order.push_back(id);
    if (order.size() > kCapacity) {
      model.erase(order.front());
      order.pop_front();
    }
    ASSERT_EQ(window.size(), order.size());
  }
  std::vector<std::pair<std::string, int>> expected;
  for (const std::string& id : order) expected.emplace_back(id, model.at(id));
  EXPECT_EQ(Contents(window), expected);
}

}  // namespace
}  // namespace deltaserve::server
