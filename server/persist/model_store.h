// ModelStore: one model's state directory (DIR/<model>/ under --state_dir).
//
//   checkpoint-<seq>.ckpt   StateCheckpoint holding every journal entry ≤ seq
//   journal-<seq>.log       journal segment whose first entry is seq
//   *.tmp                   a checkpoint being written (deleted at Recover)
//
// <seq> is 20 decimal digits, so names sort in sequence order. The learner
// appends entries to the newest segment and starts a new one whenever it
// captures a checkpoint, so segments end where checkpoints begin. Once a
// checkpoint is durable the oldest beyond `keep_checkpoints` are deleted, and
// so is every segment that only holds entries the oldest kept checkpoint
// already contains: any kept checkpoint plus the journal after it reproduces
// the newest state, which is what makes falling back to an older checkpoint
// (when the newest fails its checksum) lose nothing.
//
// Thread-safety: Recover and StartSegment are the learner's; WriteCheckpoint
// runs on the checkpoint writer thread at the same time. They touch
// different files except for pruning, which never deletes the newest segment.
#ifndef DELTASERVE_SERVER_PERSIST_MODEL_STORE_H_
#define DELTASERVE_SERVER_PERSIST_MODEL_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/server/persist/file_system.h"
#include "deltaserve/v1/state.pb.h"

namespace deltaserve::persist {

// "DSCKPT01" | u64 payload length | u32 CRC32C(payload) | payload.
std::string EncodeCheckpoint(const deltaserve::v1::StateCheckpoint& checkpoint);
// DATA_LOSS (saying what is wrong) unless `bytes` is a whole, intact checkpoint.
absl::StatusOr<deltaserve::v1::StateCheckpoint> DecodeCheckpoint(absl::string_view bytes);

std::string CheckpointFileName(uint64_t seq);
std::string SegmentFileName(uint64_t first_seq);

// What a directory holds after a crash, ready to resume from.
struct Recovered {
  // The newest checkpoint that verifies; none in a new directory (or if
  // every checkpoint is corrupt and the journal starts at seq 1).
  std::optional<deltaserve::v1::StateCheckpoint> checkpoint;
  std::string checkpoint_path;
  // Journal entries after the checkpoint, in order (seq contiguous).
  std::vector<deltaserve::v1::JournalEntry> entries;
  uint64_t next_seq = 1;  // Seq of the next entry to append.
  // What was skipped: corrupt checkpoints (renamed *.corrupt), a torn tail
  // (cut off). For the log.
  std::vector<std::string> warnings;
};

class ModelStore {
 public:
  // Creates `dir` if needed. `fs` must outlive the store.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(FileSystem* fs, std::string dir,
                                                          uint32_t keep_checkpoints);

  // Reads the newest checkpoint that verifies and the journal segments that
  // hold entries after it (older segments are not even opened), cuts a torn
  // tail off the last segment and
  // deletes leftover temporary files. DATA_LOSS, changing nothing, when
  // entries that may have been acknowledged cannot be recovered: a
  // checksum failure before the last segment's tail, or a gap in seq.
  absl::StatusOr<Recovered> Recover();

  // Creates journal-<first_seq>.log (empty); with sync_dir, also makes its
  // name durable (else the caller must SyncDir() before relying on it).
  absl::StatusOr<std::shared_ptr<WritableFile>> StartSegment(uint64_t first_seq,
                                                             bool sync_dir = true);
  // fsync of the directory.
  absl::Status SyncDir();

  struct Written {
    std::string path;
    uint64_t bytes = 0;
  };
  // Writes checkpoint-<journal_seq>.ckpt atomically (temp, fsync, rename,
  // fsync dir), then prunes old checkpoints and segments as above.
  absl::StatusOr<Written> WriteCheckpoint(const deltaserve::v1::StateCheckpoint& checkpoint);

  const std::string& dir() const { return dir_; }

 private:
  ModelStore(FileSystem* fs, std::string dir, uint32_t keep)
      : fs_(fs), dir_(std::move(dir)), keep_checkpoints_(keep) {}

  absl::Status Prune();

  FileSystem* const fs_;
  const std::string dir_;
  const uint32_t keep_checkpoints_;
};

}  // namespace deltaserve::persist

#endif  // DELTASERVE_SERVER_PERSIST_MODEL_STORE_H_
