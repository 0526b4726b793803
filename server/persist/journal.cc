#include "deltaserve/server/persist/journal.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "deltaserve/server/persist/crc32c.h"

namespace deltaserve::persist {
namespace {

template <typename T>
void PutLittleEndian(T value, char* out) {
  std::memcpy(out, &value, sizeof(T));  // All deltaserve targets are little-endian.
}

template <typename T>
T GetLittleEndian(const char* in) {
  T value;
  std::memcpy(&value, in, sizeof(T));
  return value;
}

// CRC32C(length ‖ seq ‖ payload).
uint32_t RecordCrc(uint32_t length, uint64_t seq, absl::string_view payload) {
  char prefix[12];
  PutLittleEndian(length, prefix);
  PutLittleEndian(seq, prefix + 4);
  return Crc32c(payload, Crc32c(absl::string_view(prefix, sizeof(prefix))));
}

}  // namespace

void EncodeRecord(uint64_t seq, absl::string_view payload, std::string* out) {
  const auto length = static_cast<uint32_t>(payload.size());
  char header[kRecordHeaderBytes];
  PutLittleEndian(length, header);
  PutLittleEndian(RecordCrc(length, seq, payload), header + 4);
  PutLittleEndian(seq, header + 8);
  out->append(header, sizeof(header));
  out->append(payload.data(), payload.size());
}

ParsedSegment ParseSegment(absl::string_view content) {
  ParsedSegment parsed;
  size_t offset = 0;
  while (offset < content.size()) {
    const size_t left = content.size() - offset;
    if (left < kRecordHeaderBytes) {
      parsed.stopped = absl::StrCat("incomplete record header (", left, " bytes)");
      break;
    }
    const char* header = content.data() + offset;
    const auto length = GetLittleEndian<uint32_t>(header);
    const auto crc = GetLittleEndian<uint32_t>(header + 4);
    const auto seq = GetLittleEndian<uint64_t>(header + 8);
    if (length > kMaxRecordPayloadBytes) {
      parsed.stopped = absl::StrCat("implausible record length ", length);
      break;
    }
    if (left - kRecordHeaderBytes < length) {
      parsed.stopped = absl::StrCat("incomplete record: ", length, " payload bytes declared, ",
                                    left - kRecordHeaderBytes, " present");
      break;
    }
    const absl::string_view payload = content.substr(offset + kRecordHeaderBytes, length);
    if (RecordCrc(length, seq, payload) != crc) {
      parsed.stopped = absl::StrCat("checksum mismatch in record seq ", seq);
      break;
    }
    parsed.records.push_back(Record{seq, payload});
    offset += kRecordHeaderBytes + length;
  }
  parsed.valid_bytes = offset;
  return parsed;
}

}  // namespace deltaserve::persist
