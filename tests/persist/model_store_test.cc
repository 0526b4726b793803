// The state directory's formats and recovery rules (server/persist/):
// every corruption a crash or a bad disk can produce, made on purpose.
#include "deltaserve/server/persist/model_store.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "deltaserve/server/persist/crc32c.h"
#include "deltaserve/server/persist/journal.h"
#include "deltaserve/tests/persist/faulty_file_system.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::persist {
namespace {

namespace v1 = ::deltaserve::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

void FlipByte(const std::string& path, size_t offset) {
  std::string bytes = ReadAll(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x40);
  WriteAll(path, bytes);
}

// A journal entry recognisable by its request_id.
v1::JournalEntry Entry(const std::string& id) {
  v1::JournalEntry e;
  e.mutable_submission()->set_request_id(id);
  e.mutable_submission()->set_scale(1.0f);
  return e;
}

std::string Records(uint64_t first_seq, const std::vector<std::string>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    EncodeRecord(first_seq + i, Entry(ids[i]).SerializeAsString(), &out);
  }
  return out;
}

v1::StateCheckpoint Checkpoint(uint64_t seq, uint64_t version) {
  v1::StateCheckpoint c;
  c.set_journal_seq(seq);
  c.set_version(version);
  c.add_parameters(1.5f);
  return c;
}

std::vector<std::string> Ids(const Recovered& r) {
  std::vector<std::string> ids;
  for (const v1::JournalEntry& e : r.entries) ids.push_back(e.submission().request_id());
  return ids;
}

class ModelStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<ModelStore> Open(uint32_t keep = 3) {
    auto store = ModelStore::Open(FileSystem::Default(), dir_.path() + "/m", keep);
    EXPECT_TRUE(store.ok()) << store.status();
    return *std::move(store);
  }
  std::string Path(const std::string& name) const { return dir_.path() + "/m/" + name; }
  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path() + "/m")) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  testing::TempDir dir_;
};

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);  // RFC 3720 / iSCSI check value.
  EXPECT_EQ(Crc32c(""), 0u);
  const std::string text = "the quick brown fox jumps over the lazy dog, twice over";
  EXPECT_EQ(Crc32c(text.substr(13), Crc32c(text.substr(0, 13))), Crc32c(text));
}

TEST(Journal, ParsesWhatItEncodes) {
  const std::string bytes = Records(5, {"a", "b", "c"});
  const ParsedSegment parsed = ParseSegment(bytes);
  EXPECT_EQ(parsed.stopped, "");
  EXPECT_EQ(parsed.valid_bytes, bytes.size());
  ASSERT_EQ(parsed.records.size(), 3u);
  EXPECT_EQ(parsed.records[2].seq, 7u);
}

TEST(Journal, EveryTruncationStopsAtTheLastWholeRecord) {
  const std::string two = Records(1, {"first", "second"});
  const size_t first_len = Records(1, {"first"}).size();
  for (size_t cut = 0; cut < two.size(); ++cut) {
    const ParsedSegment parsed = ParseSegment(two.substr(0, cut));
    EXPECT_EQ(parsed.records.size(), cut < first_len ? 0u : 1u) << "cut at " << cut;
    EXPECT_EQ(parsed.valid_bytes, cut < first_len ? 0u : first_len) << "cut at " << cut;
    EXPECT_EQ(parsed.stopped.empty(), cut == 0 || cut == first_len) << "cut at " << cut;
  }
}

TEST(Journal, EveryFlippedByteIsDetected) {
  const std::string one = Records(1, {"payload"});
  for (size_t at = 0; at < one.size(); ++at) {
    std::string bad = one;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    const ParsedSegment parsed = ParseSegment(bad);
    EXPECT_TRUE(parsed.records.empty()) << "flip at " << at;
    EXPECT_NE(parsed.stopped, "") << "flip at " << at;
  }
}

TEST(Checkpoint, RoundTripsAndRejectsAnyDamage) {
  const std::string bytes = EncodeCheckpoint(Checkpoint(9, 4));
  auto decoded = DecodeCheckpoint(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->version(), 4u);
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::string bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    EXPECT_EQ(DecodeCheckpoint(bad).status().code(), absl::StatusCode::kDataLoss) << at;
  }
  EXPECT_EQ(DecodeCheckpoint(bytes.substr(0, bytes.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(ModelStoreTest, EmptyDirectoryRecoversNothing) {
  auto store = Open();
  auto r = store->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->checkpoint.has_value());
  EXPECT_THAT(r->entries, IsEmpty());
  EXPECT_EQ(r->next_seq, 1u);
}

TEST_F(ModelStoreTest, CheckpointPlusTheJournalAfterIt) {
  auto store = Open();
  ASSERT_TRUE(store->WriteCheckpoint(Checkpoint(2, 2)).ok());
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a", "b", "c", "d"}));
  auto r = store->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->checkpoint.has_value());
  EXPECT_EQ(r->checkpoint->version(), 2u);
  EXPECT_THAT(Ids(*r), ElementsAre("c", "d"));
  EXPECT_EQ(r->next_seq, 5u);
}

TEST_F(ModelStoreTest, TornTailIsCutAndTheRestKept) {
  auto store = Open();
  const std::string whole = Records(1, {"a", "b"});
  WriteAll(Path(SegmentFileName(1)), whole + Records(3, {"torn"}).substr(0, 11));
  auto r = store->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(*r), ElementsAre("a", "b"));
  EXPECT_EQ(r->next_seq, 3u);
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_THAT(r->warnings[0], HasSubstr("never acknowledged"));
  EXPECT_EQ(ReadAll(Path(SegmentFileName(1))), whole);  // Cut on disk too.
}

TEST_F(ModelStoreTest, BitFlipInTheLastSegmentDropsFromThatRecord) {
  auto store = Open();
  const std::string a = Records(1, {"a"});
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a", "b", "c"}));
  FlipByte(Path(SegmentFileName(1)), a.size() + kRecordHeaderBytes + 2);  // Inside b.
  auto r = store->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(*r), ElementsAre("a"));
  EXPECT_THAT(r->warnings.at(0), HasSubstr("checksum mismatch"));
}

TEST_F(ModelStoreTest, BitFlipBeforeTheLastSegmentRefusesToRecover) {
  auto store = Open();
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a", "b"}));
  WriteAll(Path(SegmentFileName(3)), Records(3, {"c"}));
  FlipByte(Path(SegmentFileName(1)), kRecordHeaderBytes + 1);
  const std::string before = ReadAll(Path(SegmentFileName(1)));
  auto r = store->Recover();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("newer segments follow"));
  EXPECT_EQ(ReadAll(Path(SegmentFileName(1))), before);  // Nothing changed.
}

TEST_F(ModelStoreTest, GapInTheJournalRefusesToRecover) {
  auto store = Open();
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a"}));
  WriteAll(Path(SegmentFileName(3)), Records(3, {"c"}));
  auto r = store->Recover();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("entries are missing"));
}

TEST_F(ModelStoreTest, CorruptNewestCheckpointFallsBackToTheOlderOneLosingNothing) {
  auto store = Open();
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a", "b", "c", "d"}));
  ASSERT_TRUE(store->WriteCheckpoint(Checkpoint(1, 1)).ok());
  ASSERT_TRUE(store->WriteCheckpoint(Checkpoint(3, 3)).ok());
  FlipByte(Path(CheckpointFileName(3)), 24);
  auto r = store->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->checkpoint->version(), 1u);
  EXPECT_THAT(Ids(*r), ElementsAre("b", "c", "d"));  // Replays past the corrupt one.
  EXPECT_THAT(r->warnings.at(0), HasSubstr("falling back"));
  EXPECT_TRUE(std::filesystem::exists(Path(CheckpointFileName(3) + ".corrupt")));
}

TEST_F(ModelStoreTest, NoValidCheckpointAndNoJournalFromTheStartRefuses) {
  auto store = Open();
  ASSERT_TRUE(store->WriteCheckpoint(Checkpoint(5, 5)).ok());
  WriteAll(Path(SegmentFileName(6)), Records(6, {"f"}));
  FlipByte(Path(CheckpointFileName(5)), 25);
  EXPECT_EQ(store->Recover().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ModelStoreTest, KeepsTheNewestCheckpointsAndTheJournalTheOldestNeeds) {
  auto store = Open(/*keep=*/2);
  for (uint64_t first : {1, 3, 5, 7}) {
    WriteAll(Path(SegmentFileName(first)), Records(first, {"x", "y"}));
  }
  for (uint64_t seq : {2, 4, 6}) ASSERT_TRUE(store->WriteCheckpoint(Checkpoint(seq, seq)).ok());
  // Checkpoints 4 and 6 kept; 4 needs entries from 5 on.
  EXPECT_THAT(Files(), ElementsAre(CheckpointFileName(4), CheckpointFileName(6), SegmentFileName(5),
                                   SegmentFileName(7)));
}

// A restart reads the newest checkpoint and the journal after it, not the
// segments the older kept checkpoints need (they can be most of the
// directory: restarts took up to a minute reading them). Damage in such a
// segment cannot lose anything the newest checkpoint holds, so it is no
// reason to refuse to start.
TEST_F(ModelStoreTest, SegmentsTheCheckpointHoldsAreNotRead) {
  testing::FaultyFileSystem fs;  // Only its record of reads is used here.
  auto store = ModelStore::Open(&fs, dir_.path() + "/m", /*keep_checkpoints=*/3);
  ASSERT_TRUE(store.ok()) << store.status();
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a", "b"}));
  WriteAll(Path(SegmentFileName(3)), Records(3, {"c", "d"}));
  WriteAll(Path(SegmentFileName(5)), Records(5, {"e", "f"}));
  ASSERT_TRUE((*store)->WriteCheckpoint(Checkpoint(2, 2)).ok());
  ASSERT_TRUE((*store)->WriteCheckpoint(Checkpoint(4, 4)).ok());
  WriteAll(Path(SegmentFileName(1)), "not a journal at all");  // Damage the old ones.
  FlipByte(Path(SegmentFileName(3)), kRecordHeaderBytes + 1);
  fs.TakeReads();
  auto r = (*store)->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->checkpoint->version(), 4u);
  EXPECT_THAT(Ids(*r), ElementsAre("e", "f"));
  EXPECT_THAT(r->warnings, IsEmpty());
  std::vector<std::string> read;
  for (const std::string& path : fs.TakeReads()) {
    read.push_back(std::filesystem::path(path).filename().string());
  }
  EXPECT_THAT(read, ElementsAre(CheckpointFileName(4), SegmentFileName(5)));
  EXPECT_EQ(r->next_seq, 7u);
}

// The segment the checkpoint ends inside is still read: its tail is needed.
TEST_F(ModelStoreTest, TheSegmentTheCheckpointEndsInsideIsRead) {
  auto store = Open();
  WriteAll(Path(SegmentFileName(1)), Records(1, {"a", "b", "c"}));
  WriteAll(Path(SegmentFileName(4)), Records(4, {"d"}));
  ASSERT_TRUE(store->WriteCheckpoint(Checkpoint(2, 2)).ok());
  auto r = store->Recover();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(*r), ElementsAre("c", "d"));
}

TEST_F(ModelStoreTest, LeftoverTemporaryFilesAreRemoved) {
  auto store = Open();
  WriteAll(Path(CheckpointFileName(9) + ".tmp"), "half a checkpoint");
  ASSERT_TRUE(store->Recover().ok());
  EXPECT_THAT(Files(), IsEmpty());
}

}  // namespace
}  // namespace deltaserve::persist
