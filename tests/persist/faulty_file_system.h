// A FileSystem over the real one that fails on command: the next appends
// (after writing only part of the data, as a full disk does) or the next
// fsyncs. For tests of what a full disk or an fsync error does, and of
// which files a recovery reads. It also
// remembers how much of each file an fsync made durable, so a test can cut
// a copy of the directory to what a power loss would leave.
#ifndef DELTASERVE_TESTS_PERSIST_FAULTY_FILE_SYSTEM_H_
#define DELTASERVE_TESTS_PERSIST_FAULTY_FILE_SYSTEM_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/server/persist/file_system.h"

namespace deltaserve::testing {

class FaultyFileSystem final : public persist::FileSystem {
 public:
  std::atomic<bool> fail_appends{false};  // Appends write half, then ENOSPC.
  std::atomic<bool> fail_syncs{false};    // fdatasync → EIO.
  std::atomic<int> syncs{0};              // Successful file syncs so far.

  absl::StatusOr<std::unique_ptr<persist::WritableFile>> CreateFile(
      const std::string& path) override {
    auto file = real_->CreateFile(path);
    if (!file.ok()) return file.status();
    {
      absl::MutexLock lock(&mu_);
      durable_[path] = 0;  // Nothing of a new file survives a power loss before its fsync.
    }
    return std::unique_ptr<persist::WritableFile>(new File(this, *std::move(file)));
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    {
      absl::MutexLock lock(&mu_);
      read_.push_back(path);
    }
    return real_->ReadFile(path);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    return real_->ListDir(dir);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return real_->Rename(from, to);
  }
  absl::Status Remove(const std::string& path) override { return real_->Remove(path); }
  absl::Status Truncate(const std::string& path, uint64_t size) override {
    return real_->Truncate(path, size);
  }
  absl::Status SyncDir(const std::string& dir) override { return real_->SyncDir(dir); }
  absl::Status CreateDirs(const std::string& dir) override { return real_->CreateDirs(dir); }

  // Every fsync from now on blocks until ReleaseSyncs(); AwaitHeldSync()
  // returns once one is blocked (false after `timeout`).
  void HoldSyncs() {
    absl::MutexLock lock(&mu_);
    held_ = true;
  }
  void ReleaseSyncs() {
    absl::MutexLock lock(&mu_);
    held_ = false;
  }
  bool AwaitHeldSync(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto waiting = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return syncs_waiting_ > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&waiting), timeout);
  }

  // Every path ReadFile was asked for, in order; TakeReads() also forgets them.
  std::vector<std::string> TakeReads() {
    absl::MutexLock lock(&mu_);
    return std::exchange(read_, {});
  }

  // Bytes of each file written through this file system that its last
  // successful fsync covered (files are named by their full path).
  std::map<std::string, uint64_t> durable_sizes() {
    absl::MutexLock lock(&mu_);
    return durable_;
  }

 private:
  class File final : public persist::WritableFile {
   public:
    File(FaultyFileSystem* fs, std::unique_ptr<persist::WritableFile> real)
        : fs_(fs), real_(std::move(real)) {}
    absl::Status Append(absl::string_view data) override {
      if (!fs_->fail_appends) {
        absl::Status appended = real_->Append(data);
        if (appended.ok()) written_ += data.size();
        return appended;
      }
      (void)real_->Append(data.substr(0, data.size() / 2));
      return absl::ResourceExhaustedError("write " + path() + ": No space left on device");
    }
    absl::Status Sync() override {
      {
        // Held: count this fsync as waiting and block until Release.
        absl::MutexLock lock(&fs_->mu_);
        ++fs_->syncs_waiting_;
        fs_->mu_.Await(absl::Condition(
            +[](FaultyFileSystem* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) { return !f->held_; },
            fs_));
        --fs_->syncs_waiting_;
      }
      if (fs_->fail_syncs) return absl::InternalError("fdatasync " + path() + ": I/O error");
      const uint64_t covered = written_;  // Appends that returned before this Sync.
      absl::Status synced = real_->Sync();
      if (synced.ok()) {
        ++fs_->syncs;
        absl::MutexLock lock(&fs_->mu_);
        fs_->durable_[path()] = covered;
      }
      return synced;
    }
    const std::string& path() const override { return real_->path(); }

   private:
    FaultyFileSystem* const fs_;
    std::unique_ptr<persist::WritableFile> real_;
    std::atomic<uint64_t> written_{0};
  };

  absl::Mutex mu_;
  std::map<std::string, uint64_t> durable_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> read_ ABSL_GUARDED_BY(mu_);
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int syncs_waiting_ ABSL_GUARDED_BY(mu_) = 0;

  persist::FileSystem* const real_ = persist::FileSystem::Default();
};

}  // namespace deltaserve::testing

#endif  // DELTASERVE_TESTS_PERSIST_FAULTY_FILE_SYSTEM_H_
