// JournalWriter: the learner's end of a model's journal, with group commit.
//
// The learner, per batch of submissions it applied:
//   1. Add() each applied entry (encoded into a buffer; no I/O),
//   2. Write() them with one append to the current segment,
//   3. Commit(done): `done` runs once everything written so far is as durable
//      as the level promises —
//        kCommit    on the sync thread, after the fsync that covers it: while
//                   that fsync runs the learner goes on applying the next batch,
//                   and the next fsync covers all of it (one per group);
//        kInterval  at once (an fsync every `interval` on the sync thread);
//        kNone      at once (never fsync'd here).
// A write or fsync error is final: failure() keeps the first one, every later
// Write fails with it and every pending or later Commit gets it. An fsync is
// never retried (after a failed fsync the OS may have dropped the pages it
// could not write; PostgreSQL's lesson), so the model must stop accepting
// submissions and the server be restarted to recover from what is on disk.
#ifndef DELTASERVE_SERVER_CORE_JOURNAL_WRITER_H_
#define DELTASERVE_SERVER_CORE_JOURNAL_WRITER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/base/check.h"
#include "deltaserve/server/persist/model_store.h"
#include "deltaserve/v1/state.pb.h"

namespace deltaserve::server {

enum class Durability { kCommit, kInterval, kNone };

class JournalWriter {
 public:
  using Completion = absl::AnyInvocable<void(absl::Status) &&>;

  // Starts segment `next_seq` in `store` (which must outlive the writer) and,
  // for kCommit and kInterval, the sync thread.
  static absl::StatusOr<std::unique_ptr<JournalWriter>> Create(persist::ModelStore* store,
                                                               uint64_t next_seq,
                                                               Durability durability,
                                                               absl::Duration interval);
  // Stop()s.
  ~JournalWriter();

  // Learner only (steps 1–2, last_seq and Roll): the first call binds them
  // to its thread and a call from any other thread fails a DCHECK until
  // ReleaseLearner(). Add returns the entry's seq.
  uint64_t Add(const deltaserve::v1::JournalEntry& entry);
  absl::Status Write() ABSL_LOCKS_EXCLUDED(mu_);
  // Seq of the last entry added (0: none yet).
  uint64_t last_seq() const {
    DELTASERVE_DCHECK_OWNED(learner_);
    return next_seq_ - 1;
  }
  // After Write: later entries go to a new segment starting at last_seq()+1
  // (segments then end where a checkpoint begins, so old ones can be
  // deleted whole). On error the current segment stays in use.
  absl::Status Roll() ABSL_LOCKS_EXCLUDED(mu_);
  // The learner-only methods pass to another thread (the next one to call
  // them), e.g. from Trainer::Create to the learner thread.
  void ReleaseLearner() { learner_.Release(); }

  // Step 3. Completions run in the order they were committed.
  void Commit(Completion done) ABSL_LOCKS_EXCLUDED(mu_);

  // Completes every pending commit (an fsync first, unless kNone), then
  // stops the sync thread. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status failure() const ABSL_LOCKS_EXCLUDED(mu_);
  Durability durability() const { return durability_; }

 private:
  struct Pending {
    std::shared_ptr<persist::WritableFile> file;  // The segment its entries went to.
    Completion done;
    bool sync_dir = false;  // A segment was started since the last directory fsync.
  };

  JournalWriter(persist::ModelStore* store, uint64_t next_seq, Durability durability,
                absl::Duration interval, std::shared_ptr<persist::WritableFile> segment);

  void SyncLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // fsyncs each file of `pending` (in order, once each) and, if one asks,
  // the directory; the first error.
  absl::Status SyncFiles(const std::deque<Pending>& pending);
  void Fail(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  persist::ModelStore* const store_;
  const Durability durability_;
  const absl::Duration interval_;

  // Learner only.
  ThreadOwner learner_;
  uint64_t next_seq_;
  std::string buffer_;  // Records added since the last Write.

  mutable absl::Mutex mu_;
  std::shared_ptr<persist::WritableFile> segment_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;  // kInterval: written since the last fsync.
  // Roll started a segment whose name is not durable yet: the next fsync
  // also fsyncs the directory (on the sync thread, not the learner).
  bool dir_dirty_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread sync_thread_;  // Last: starts after everything above exists.
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_JOURNAL_WRITER_H_
