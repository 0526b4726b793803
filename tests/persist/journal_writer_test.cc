// JournalWriter's thread rule: its learner-only methods belong to one thread
// at a time, handed over with ReleaseLearner() (as Trainer::Create hands the
// journal to its learner thread). Checked by a DCHECK: where DCHECKs are on
// (no NDEBUG: the sanitizer builds) a second thread's Add aborts; with NDEBUG
// it runs to completion.
#include "deltaserve/server/core/journal_writer.h"

#include <cstdlib>
#include <memory>
#include <thread>

#include "deltaserve/server/persist/file_system.h"
#include "deltaserve/server/persist/model_store.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;

v1::JournalEntry Entry() {
  v1::JournalEntry e;
  e.mutable_submission()->set_scale(1.0f);
  return e;
}

class JournalWriterThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto store = persist::ModelStore::Open(persist::FileSystem::Default(), dir_.path() + "/m", 3);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->Recover().ok());
    auto writer = JournalWriter::Create(store_.get(), 1, Durability::kNone, absl::Seconds(1));
    ASSERT_TRUE(writer.ok()) << writer.status();
    writer_ = *std::move(writer);
  }

  testing::TempDir dir_;
  std::unique_ptr<persist::ModelStore> store_;
  std::unique_ptr<JournalWriter> writer_;
};

TEST_F(JournalWriterThreadTest, ReleaseLearnerHandsTheWriterToAnotherThread) {
  EXPECT_EQ(writer_->Add(Entry()), 1u);
  writer_->ReleaseLearner();
  uint64_t seq = 0;
  absl::Status written;
  std::thread learner([&] {
    seq = writer_->Add(Entry());
    written = writer_->Write();
  });
  learner.join();
  EXPECT_EQ(seq, 2u);
  EXPECT_TRUE(written.ok()) << written;
  writer_->ReleaseLearner();
  EXPECT_EQ(writer_->last_seq(), 2u);
}

TEST_F(JournalWriterThreadTest, AddFromASecondThreadFailsADcheckExactlyWhereDchecksAreOn) {
  writer_->Add(Entry());  // This thread is now the learner.
#ifdef NDEBUG
  EXPECT_EXIT(
      {
        std::thread intruder([&] { writer_->Add(Entry()); });
        intruder.join();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
#else
  EXPECT_DEATH(
      {
        std::thread intruder([&] { writer_->Add(Entry()); });
        intruder.join();
      },
      "CHECK failed: .*called from a thread that does not own this state");
#endif
}

}  // namespace
}  // namespace deltaserve::server
