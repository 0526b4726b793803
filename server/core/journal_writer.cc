#include "deltaserve/server/core/journal_writer.h"

#include <utility>

#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/persist/journal.h"

namespace deltaserve::server {

absl::StatusOr<std::unique_ptr<JournalWriter>> JournalWriter::Create(persist::ModelStore* store,
                                                                     uint64_t next_seq,
                                                                     Durability durability,
                                                                     absl::Duration interval) {
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<persist::WritableFile> segment,
                              store->StartSegment(next_seq));
  return std::unique_ptr<JournalWriter>(
      new JournalWriter(store, next_seq, durability, interval, std::move(segment)));
}

JournalWriter::JournalWriter(persist::ModelStore* store, uint64_t next_seq, Durability durability,
                             absl::Duration interval,
                             std::shared_ptr<persist::WritableFile> segment)
    : store_(store),
      durability_(durability),
      interval_(interval),
      next_seq_(next_seq),
      segment_(std::move(segment)) {
  if (durability_ != Durability::kNone) sync_thread_ = std::thread([this] { SyncLoop(); });
}

JournalWriter::~JournalWriter() { Stop(); }

uint64_t JournalWriter::Add(const deltaserve::v1::JournalEntry& entry) {
  DELTASERVE_DCHECK_OWNED(learner_);
  const uint64_t seq = next_seq_++;
  persist::EncodeRecord(seq, entry.SerializeAsString(), &buffer_);
  return seq;
}

absl::Status JournalWriter::Write() {
  DELTASERVE_DCHECK_OWNED(learner_);
  std::shared_ptr<persist::WritableFile> segment;
  {
    absl::MutexLock lock(&mu_);
    DELTASERVE_RETURN_IF_ERROR(failure_);
    segment = segment_;
  }
  if (buffer_.empty()) return absl::OkStatus();
  absl::Status written = segment->Append(buffer_);
  buffer_.clear();
  absl::MutexLock lock(&mu_);
  if (!written.ok()) {
    Fail(written);
    return written;
  }
  dirty_ = true;
  return absl::OkStatus();
}

absl::Status JournalWriter::Roll() {
  DELTASERVE_DCHECK_OWNED(learner_);
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<persist::WritableFile> next,
                              store_->StartSegment(next_seq_, /*sync_dir=*/false));
  absl::MutexLock lock(&mu_);
  // The old segment stays open while a Pending refers to it, until its fsync.
  if (durability_ == Durability::kInterval && dirty_) {
    pending_.push_back(Pending{segment_, nullptr});
  }
  segment_ = std::move(next);
  dir_dirty_ = true;
  return absl::OkStatus();
}

void JournalWriter::Commit(Completion done) {
  absl::Status failure;
  {
    absl::MutexLock lock(&mu_);
    failure = failure_;
    if (failure.ok() && durability_ == Durability::kCommit) {
      pending_.push_back(Pending{segment_, std::move(done), std::exchange(dir_dirty_, false)});
      return;
    }
  }
  std::move(done)(failure);
}

void JournalWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (sync_thread_.joinable()) sync_thread_.join();
}

absl::Status JournalWriter::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

void JournalWriter::Fail(absl::Status status) {
  if (!failure_.ok()) return;
  failure_ = std::move(status);
  LogError("journal of ", store_->dir(), ": ", failure_.message(),
           "; the model accepts no more submissions until the server is restarted");
}

absl::Status JournalWriter::SyncFiles(const std::deque<Pending>& pending) {
  const persist::WritableFile* last = nullptr;
  bool sync_dir = false;
  for (const Pending& p : pending) {
    sync_dir = sync_dir || p.sync_dir;
    if (p.file.get() == last) continue;
    last = p.file.get();
    DELTASERVE_RETURN_IF_ERROR(p.file->Sync());
  }
  return sync_dir ? store_->SyncDir() : absl::OkStatus();
}

// 1. Wait for commits to cover (kCommit), or for the interval (kInterval).
// 2. Take what is pending (plus, for kInterval, the current segment if it
//    was written), fsync it outside the lock.
// 3. Run the completions with the fsync's status; an error is final.
void JournalWriter::SyncLoop() {
  while (true) {
    std::deque<Pending> batch;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      if (durability_ == Durability::kCommit) {
        mu_.Await(absl::Condition(&ready));
      } else {
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
        if (dirty_ || dir_dirty_) {
          pending_.push_back(Pending{segment_, nullptr, std::exchange(dir_dirty_, false)});
        }
      }
      dirty_ = false;
      batch.swap(pending_);
      stopping = stopping_;
    }
    absl::Status synced = batch.empty() ? absl::OkStatus() : SyncFiles(batch);
    {
      absl::MutexLock lock(&mu_);
      if (!synced.ok()) Fail(synced);
      synced = failure_;
    }
    for (Pending& p : batch) {
      if (p.done) std::move(p.done)(synced);
    }
    if (stopping) {
      absl::MutexLock lock(&mu_);
      if (pending_.empty()) return;
    }
  }
}

}  // namespace deltaserve::server
