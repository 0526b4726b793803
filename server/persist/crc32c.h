// CRC32C (Castagnoli), as used by iSCSI, ext4 and LevelDB: the checksum of
// every journal record and checkpoint (docs/operations.md). Portable
// slicing-by-8 in software, so it needs no particular CPU.
#ifndef DELTASERVE_SERVER_PERSIST_CRC32C_H_
#define DELTASERVE_SERVER_PERSIST_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace deltaserve::persist {

// CRC32C of `data`, continuing from `crc` (the CRC32C of the bytes before
// it; 0 to start): Crc32c(b, Crc32c(a)) == Crc32c(a ‖ b).
uint32_t Crc32c(absl::string_view data, uint32_t crc = 0);

}  // namespace deltaserve::persist

#endif  // DELTASERVE_SERVER_PERSIST_CRC32C_H_
