// The learner's memory of applied request_ids: the last `capacity` ids with
// the result each got, so that a retried submission is answered with its
// original result instead of being applied twice (trainer.h, step 0).
//
// Every submission a client library sends carries an id, so this sits on
// the learner's path once per submission; each Find or Remember costs one
// hash of the id and, once warm, no allocation:
//   - entries live in a ring of at most `capacity` slots, oldest overwritten
//     first; a slot's string keeps its buffer, so remembering an id copies
//     its bytes without allocating (ids are at most kMaxRequestIdBytes);
//   - the index is a hash set of 4-byte slot numbers (hashes and ids are
//     read from the ring), small enough for the L2 cache at the default
//     10,000 ids, where a map keyed by strings would not be;
//   - each slot keeps its id's hash: forgetting the oldest never rehashes.
// Not thread-safe: the learner owns it.
#ifndef DELTASERVE_SERVER_CORE_REQUEST_ID_WINDOW_H_
#define DELTASERVE_SERVER_CORE_REQUEST_ID_WINDOW_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace deltaserve::server {

template <typename Result>
class RequestIdWindow {
 public:
  // Remembers at most `capacity` ids (0: none, Remember does nothing;
  // slots are numbered in 32 bits, so at most 2^32 − 1).
  explicit RequestIdWindow(size_t capacity)
      : capacity_(capacity), index_(0, SlotHash{&ring_}, SlotEq{&ring_}) {}

  RequestIdWindow(const RequestIdWindow&) = delete;
  RequestIdWindow& operator=(const RequestIdWindow&) = delete;

  // The result remembered for `id`, or null. Valid until the next Remember
  // or Clear.
  const Result* Find(absl::string_view id) const {
    auto it = index_.find(Probe{id, absl::Hash<absl::string_view>{}(id)});
    return it == index_.end() ? nullptr : &ring_[*it].result;
  }

  // Remembers `result` under `id`, forgetting the oldest id beyond
  // capacity. An id already remembered keeps its first result (callers
  // Find first: a duplicate is answered, not applied).
  void Remember(absl::string_view id, const Result& result) {
    if (capacity_ == 0) return;
    const Probe probe{id, absl::Hash<absl::string_view>{}(id)};
    if (index_.contains(probe)) return;
    uint32_t slot;
    if (ring_.size() < capacity_) {
      slot = static_cast<uint32_t>(ring_.size());
      ring_.emplace_back();
    } else {
      slot = static_cast<uint32_t>(oldest_);
      index_.erase(slot);
      oldest_ = (oldest_ + 1) % capacity_;
    }
    Slot& s = ring_[slot];
    s.id.assign(id.data(), id.size());
    s.hash = probe.hash;
    s.result = result;
    index_.insert(slot);
  }

  // Forgets every id.
  void Clear() {
    index_.clear();
    ring_.clear();
    oldest_ = 0;
  }

  size_t size() const { return ring_.size(); }

  // Calls f(id, result) for every remembered id, oldest first.
  template <typename F>
  void ForEachOldestFirst(F&& f) const {
    for (size_t i = 0; i < ring_.size(); ++i) {
      const Slot& s = ring_[(oldest_ + i) % ring_.size()];
      f(absl::string_view(s.id), s.result);
    }
  }

 private:
  struct Slot {
    std::string id;
    size_t hash = 0;
    Result result{};
  };
  // A lookup by id, its hash computed once.
  struct Probe {
    absl::string_view id;
    size_t hash;
  };
  // The index holds slot numbers; these read hashes and ids from the ring
  // (which may reallocate while it fills: they hold the vector, not slots).
  struct SlotHash {
    using is_transparent = void;
    const std::vector<Slot>* ring;
    size_t operator()(uint32_t slot) const { return (*ring)[slot].hash; }
    size_t operator()(const Probe& p) const { return p.hash; }
  };
  struct SlotEq {
    using is_transparent = void;
    const std::vector<Slot>* ring;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(const Probe& p, uint32_t slot) const {
      const Slot& s = (*ring)[slot];
      return s.hash == p.hash && s.id == p.id;
    }
    bool operator()(uint32_t slot, const Probe& p) const { return (*this)(p, slot); }
  };

  const size_t capacity_;
  std::vector<Slot> ring_;  // Grows to capacity_, then a ring.
  size_t oldest_ = 0;       // Once full: the slot Remember overwrites next.
  absl::flat_hash_set<uint32_t, SlotHash, SlotEq> index_;
};

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_REQUEST_ID_WINDOW_H_
