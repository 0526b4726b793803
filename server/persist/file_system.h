// The few file operations persistence needs, behind an interface so that
// tests can make any of them fail (a full disk, an fsync error) on purpose.
// Default() is POSIX; every error names the path and the errno text.
#ifndef DELTASERVE_SERVER_PERSIST_FILE_SYSTEM_H_
#define DELTASERVE_SERVER_PERSIST_FILE_SYSTEM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace deltaserve::persist {

// A file open for appending. Append and Sync may be called from different
// threads at once (one appender, one syncer); Sync makes durable at least
// every byte whose Append returned before Sync was called.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes all of `data` at the end, or fails (the file may then hold part
  // of it: a torn write, which readers detect by checksum).
  virtual absl::Status Append(absl::string_view data) = 0;
  // fdatasync. After a failure the file must not be trusted again (the OS
  // may have dropped the unwritten pages): callers stop using it.
  virtual absl::Status Sync() = 0;
  virtual const std::string& path() const = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // The process-wide POSIX file system.
  static FileSystem* Default();

  // Creates (or truncates) `path` for writing.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> CreateFile(const std::string& path) = 0;
  // NOT_FOUND if `path` does not exist.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Names (not paths) of the entries of `dir`, sorted; NOT_FOUND if missing.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  virtual absl::Status Remove(const std::string& path) = 0;
  // Cuts `path` to `size` bytes and fsyncs it.
  virtual absl::Status Truncate(const std::string& path, uint64_t size) = 0;
  // fsync of a directory: makes creations, renames and removals in it durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // mkdir -p.
  virtual absl::Status CreateDirs(const std::string& dir) = 0;
};

// Writes `data` to `path` so that after a crash at any moment `path` holds
// either its old content or all of `data`: a temporary file next to it,
// fsync, rename over `path`, fsync of the directory.
absl::Status WriteFileAtomically(FileSystem& fs, const std::string& path, absl::string_view data);

// "dir/name" (dir without a trailing slash).
std::string JoinPath(absl::string_view dir, absl::string_view name);

}  // namespace deltaserve::persist

#endif  // DELTASERVE_SERVER_PERSIST_FILE_SYSTEM_H_
