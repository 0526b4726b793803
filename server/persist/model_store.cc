#include "deltaserve/server/persist/model_store.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/persist/crc32c.h"
#include "deltaserve/server/persist/journal.h"

namespace deltaserve::persist {
namespace v1 = ::deltaserve::v1;
namespace {

constexpr absl::string_view kCheckpointMagic = "DSCKPT01";
constexpr size_t kCheckpointHeaderBytes = 8 + 8 + 4;
constexpr absl::string_view kCheckpointPrefix = "checkpoint-";
constexpr absl::string_view kCheckpointSuffix = ".ckpt";
constexpr absl::string_view kSegmentPrefix = "journal-";
constexpr absl::string_view kSegmentSuffix = ".log";

// The seq in "<prefix><20 digits><suffix>", or nullopt for any other name.
std::optional<uint64_t> SeqOf(absl::string_view name, absl::string_view prefix,
                              absl::string_view suffix) {
  if (!absl::ConsumePrefix(&name, prefix) || !absl::ConsumeSuffix(&name, suffix)) return {};
  uint64_t seq;
  if (name.size() != 20 || !absl::SimpleAtoi(name, &seq)) return {};
  return seq;
}

struct Listed {
  std::vector<std::pair<uint64_t, std::string>> checkpoints;  // (seq, name), ascending.
  std::vector<std::pair<uint64_t, std::string>> segments;     // (first seq, name), ascending.
  std::vector<std::string> temporaries;
};

absl::StatusOr<Listed> List(FileSystem& fs, const std::string& dir) {
  DELTASERVE_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDir(dir));
  Listed listed;
  for (std::string& name : names) {
    if (auto seq = SeqOf(name, kCheckpointPrefix, kCheckpointSuffix)) {
      listed.checkpoints.emplace_back(*seq, std::move(name));
    } else if (auto first = SeqOf(name, kSegmentPrefix, kSegmentSuffix)) {
      listed.segments.emplace_back(*first, std::move(name));
    } else if (absl::EndsWith(name, ".tmp")) {
      listed.temporaries.push_back(std::move(name));
    }
  }
  // Names sort by seq (fixed width), and ListDir sorts names.
  return listed;
}

}  // namespace

std::string CheckpointFileName(uint64_t seq) {
  return absl::StrFormat("%s%020d%s", kCheckpointPrefix, seq, kCheckpointSuffix);
}

std::string SegmentFileName(uint64_t first_seq) {
  return absl::StrFormat("%s%020d%s", kSegmentPrefix, first_seq, kSegmentSuffix);
}

std::string EncodeCheckpoint(const v1::StateCheckpoint& checkpoint) {
  const std::string payload = checkpoint.SerializeAsString();
  std::string out(kCheckpointMagic);
  const uint64_t length = payload.size();
  const uint32_t crc = Crc32c(payload);
  out.append(reinterpret_cast<const char*>(&length), sizeof(length));  // Little-endian hosts.
  out.append(reinterpret_cast<const char*>(&crc), sizeof(crc));
  out += payload;
  return out;
}

absl::StatusOr<v1::StateCheckpoint> DecodeCheckpoint(absl::string_view bytes) {
  if (bytes.size() < kCheckpointHeaderBytes || !absl::StartsWith(bytes, kCheckpointMagic)) {
    return absl::DataLossError("not a deltaserve checkpoint (no DSCKPT01 header)");
  }
  uint64_t length;
  uint32_t crc;
  std::memcpy(&length, bytes.data() + 8, sizeof(length));
  std::memcpy(&crc, bytes.data() + 16, sizeof(crc));
  const absl::string_view payload = bytes.substr(kCheckpointHeaderBytes);
  if (payload.size() != length) {
    return absl::DataLossError(absl::StrCat(
        "checkpoint truncated: ", length, " payload bytes declared, ", payload.size(), " present"));
  }
  if (Crc32c(payload) != crc) return absl::DataLossError("checkpoint checksum mismatch");
  v1::StateCheckpoint checkpoint;
  if (!checkpoint.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError("checkpoint payload does not parse");
  }
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(FileSystem* fs, std::string dir,
                                                             uint32_t keep_checkpoints) {
  DELTASERVE_RETURN_IF_ERROR(fs->CreateDirs(dir));
  return std::unique_ptr<ModelStore>(
      new ModelStore(fs, std::move(dir), std::max<uint32_t>(keep_checkpoints, 1)));
}

absl::StatusOr<Recovered> ModelStore::Recover() {
  DELTASERVE_ASSIGN_OR_RETURN(Listed listed, List(*fs_, dir_));
  Recovered recovered;

  // 1. The newest checkpoint that verifies.
  std::vector<std::string> corrupt;
  for (auto it = listed.checkpoints.rbegin(); it != listed.checkpoints.rend(); ++it) {
    const std::string path = JoinPath(dir_, it->second);
    DELTASERVE_ASSIGN_OR_RETURN(std::string bytes, fs_->ReadFile(path));
    absl::StatusOr<v1::StateCheckpoint> checkpoint = DecodeCheckpoint(bytes);
    if (checkpoint.ok() && checkpoint->journal_seq() == it->first) {
      recovered.checkpoint = *std::move(checkpoint);
      recovered.checkpoint_path = path;
      break;
    }
    corrupt.push_back(path);
    recovered.warnings.push_back(absl::StrCat(
        path, ": ",
        checkpoint.ok() ? "journal_seq does not match its name" : checkpoint.status().message(),
        "; falling back to an older checkpoint"));
  }
  const uint64_t base = recovered.checkpoint ? recovered.checkpoint->journal_seq() : 0;

  // 2. Journal entries after it, contiguous; only the last segment may end torn.
  uint64_t expected = base + 1;
  std::optional<std::pair<std::string, uint64_t>> cut;  // (path, valid bytes)
  for (size_t i = 0; i < listed.segments.size(); ++i) {
    const std::string path = JoinPath(dir_, listed.segments[i].second);
    const bool last = i + 1 == listed.segments.size();
    // Segment i holds entries [first_i, first_{i+1}): when the next one
    // starts at or before `expected`, the checkpoint already has all of them.
    // Not reading it keeps a restart from reading (and checksumming) the
    // journal the kept older checkpoints need, which can be most of the
    // directory.
    if (!last && listed.segments[i + 1].first <= expected) continue;
    DELTASERVE_ASSIGN_OR_RETURN(std::string content, fs_->ReadFile(path));
    const ParsedSegment parsed = ParseSegment(content);
    for (const Record& record : parsed.records) {
      if (record.seq < expected) continue;  // Already in the checkpoint.
      if (record.seq != expected) {
        return absl::DataLossError(absl::StrCat(
            path, ": journal entry seq ", record.seq, " follows seq ", expected - 1,
            " (entries are missing); refusing to start without them (docs/operations.md, "
            "\"Recovery\")"));
      }
      v1::JournalEntry entry;
      if (!entry.ParseFromArray(record.payload.data(), static_cast<int>(record.payload.size()))) {
        return absl::DataLossError(
            absl::StrCat(path, ": journal entry seq ", record.seq, " does not parse"));
      }
      recovered.entries.push_back(std::move(entry));
      ++expected;
    }
    if (!parsed.stopped.empty()) {
      if (!last) {
        return absl::DataLossError(absl::StrCat(
            path, " at byte ", parsed.valid_bytes, ": ", parsed.stopped,
            ", and newer segments follow (acknowledged entries would be lost); refusing to "
            "start (docs/operations.md, \"Recovery\")"));
      }
      recovered.warnings.push_back(absl::StrCat(
          path, ": ", parsed.stopped, " at byte ", parsed.valid_bytes, "; dropped the last ",
          content.size() - parsed.valid_bytes, " bytes (a write that was never acknowledged)"));
      cut.emplace(path, parsed.valid_bytes);
    }
  }
  if (base == 0 && !listed.checkpoints.empty() && !recovered.checkpoint &&
      (listed.segments.empty() || listed.segments.front().first != 1)) {
    return absl::DataLossError(
        absl::StrCat(dir_,
                     ": no checkpoint verifies and the journal does not reach back to the start; "
                     "refusing to start (docs/operations.md, \"Recovery\")"));
  }
  recovered.next_seq = expected;

  // 3. Only now change anything on disk.
  if (cut) DELTASERVE_RETURN_IF_ERROR(fs_->Truncate(cut->first, cut->second));
  for (const std::string& path : corrupt) {
    DELTASERVE_RETURN_IF_ERROR(fs_->Rename(path, absl::StrCat(path, ".corrupt")));
  }
  for (const std::string& name : listed.temporaries) {
    DELTASERVE_RETURN_IF_ERROR(fs_->Remove(JoinPath(dir_, name)));
  }
  return recovered;
}

absl::StatusOr<std::shared_ptr<WritableFile>> ModelStore::StartSegment(uint64_t first_seq,
                                                                       bool sync_dir) {
  DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                              fs_->CreateFile(JoinPath(dir_, SegmentFileName(first_seq))));
  if (sync_dir) DELTASERVE_RETURN_IF_ERROR(fs_->SyncDir(dir_));
  return std::shared_ptr<WritableFile>(std::move(file));
}

absl::Status ModelStore::SyncDir() { return fs_->SyncDir(dir_); }

absl::StatusOr<ModelStore::Written> ModelStore::WriteCheckpoint(
    const v1::StateCheckpoint& checkpoint) {
  const std::string path = JoinPath(dir_, CheckpointFileName(checkpoint.journal_seq()));
  const std::string bytes = EncodeCheckpoint(checkpoint);
  DELTASERVE_RETURN_IF_ERROR(WriteFileAtomically(*fs_, path, bytes));
  DELTASERVE_RETURN_IF_ERROR(Prune());
  return Written{path, bytes.size()};
}

absl::Status ModelStore::Prune() {
  DELTASERVE_ASSIGN_OR_RETURN(Listed listed, List(*fs_, dir_));
  const size_t n = listed.checkpoints.size();
  if (n == 0) return absl::OkStatus();
  const size_t drop = n > keep_checkpoints_ ? n - keep_checkpoints_ : 0;
  for (size_t i = 0; i < drop; ++i) {
    DELTASERVE_RETURN_IF_ERROR(fs_->Remove(JoinPath(dir_, listed.checkpoints[i].second)));
  }
  const uint64_t oldest_kept = listed.checkpoints[drop].first;
  // Segment i holds entries [first_i, first_{i+1}); it is only needed if
  // some of them come after the oldest kept checkpoint.
  for (size_t i = 0; i + 1 < listed.segments.size(); ++i) {
    if (listed.segments[i + 1].first > oldest_kept + 1) break;
    DELTASERVE_RETURN_IF_ERROR(fs_->Remove(JoinPath(dir_, listed.segments[i].second)));
  }
  return fs_->SyncDir(dir_);
}

}  // namespace deltaserve::persist
