#include "deltaserve/model/validate.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace deltaserve::model {

// A float is finite unless its exponent bits are all set (inf, nan). The
// scan takes the largest exponent field of each block — an integer
// reduction the compiler vectorises, unlike a loop that returns at the
// first bad value — and only a block that holds a bad value is searched
// again for its first one, so the error is the same as a plain scan's.
absl::Status CheckFinite(absl::string_view what, absl::Span<const float> values) {
  constexpr uint32_t kExponent = 0x7f800000u;
  constexpr size_t kBlock = 256;
  const float* data = values.data();  // Not Span::operator[]: its bounds check stops vectorising.
  for (size_t begin = 0; begin < values.size(); begin += kBlock) {
    const size_t len = std::min(kBlock, values.size() - begin);
    const float* block = data + begin;
    uint32_t largest = 0;
    for (size_t i = 0; i < len; ++i) {
      uint32_t bits;
      std::memcpy(&bits, block + i, sizeof bits);
      largest = std::max(largest, bits & kExponent);
    }
    if (largest != kExponent) continue;
    for (size_t i = 0; i < len; ++i) {
      if (!std::isfinite(block[i])) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": expected finite values, got ",
                                                       block[i], " at index ", begin + i));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::model
