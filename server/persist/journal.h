// The journal's record format (one segment file = a sequence of records):
//
//   u32 length | u32 crc | u64 seq | payload[length]      (little-endian)
//
// crc = CRC32C(length ‖ seq ‖ payload). A record is written by one append
// and made durable by a later fsync; a crash can leave the last records of a
// segment incomplete or garbled (a torn write: never acknowledged, because
// their fsync had not returned). ParseSegment stops at the first record that
// is incomplete or fails its checksum and says where.
#ifndef DELTASERVE_SERVER_PERSIST_JOURNAL_H_
#define DELTASERVE_SERVER_PERSIST_JOURNAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace deltaserve::persist {

inline constexpr size_t kRecordHeaderBytes = 16;
// A payload longer than this is treated as a corrupt length field.
inline constexpr uint32_t kMaxRecordPayloadBytes = 1u << 30;

// Appends the record (header and payload) to `out`.
void EncodeRecord(uint64_t seq, absl::string_view payload, std::string* out);

struct Record {
  uint64_t seq = 0;
  absl::string_view payload;  // Points into the parsed content.
};

struct ParsedSegment {
  std::vector<Record> records;  // The valid prefix, in file order.
  uint64_t valid_bytes = 0;     // Length of that prefix.
  // Empty if the whole content parsed; otherwise why parsing stopped at
  // valid_bytes ("incomplete header", "checksum mismatch", ...).
  std::string stopped;
};

ParsedSegment ParseSegment(absl::string_view content);

}  // namespace deltaserve::persist

#endif  // DELTASERVE_SERVER_PERSIST_JOURNAL_H_
