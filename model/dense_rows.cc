// Built with -ffp-contract=off (model/CMakeLists.txt): every `acc += x * w`
// is a multiply then an add, each correctly rounded, in every code path below
// — GCC would otherwise fuse some of them into one rounding and not others,
// depending on the tile shape, and a row's bits would depend on its tile.
#include "model/dense_rows.h"

#include <algorithm>
#include <cstring>

namespace deltaserve::model {
namespace {

// kDenseLanes floats as one value; GCC and Clang lower its arithmetic to
// whatever vector registers the instruction set has (two SSE registers, one
// AVX register), element by element. Values of this type are never passed to
// or returned from a function (their ABI differs between instruction sets).
typedef float Lanes __attribute__((vector_size(kDenseLanes * sizeof(float))));
static_assert(kDenseLanes == 8, "Tile's lane sum is written for 8 lanes");

// Z for rows × units_in_tile outputs starting at unit j0; see dense_rows.h for
// the order of every sum. `rows` and `units_in_tile` are small constants, so
// the accumulators live in registers and each load of W (A) serves every row
// (unit) of the tile.
template <int kRows, int kUnits>
void Tile(const float* a, std::ptrdiff_t a_stride, const float* w, const float* b, int fan_in,
          int j0, float* z, std::ptrdiff_t z_stride) {
  const int body = fan_in - fan_in % kDenseLanes;
  Lanes acc[kRows][kUnits];
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < kUnits; ++j) acc[r][j] = Lanes{};
  }
  for (int k = 0; k < body; k += kDenseLanes) {
    Lanes wk[kUnits];
    for (int j = 0; j < kUnits; ++j) {
      std::memcpy(&wk[j], w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in + k, sizeof(Lanes));
    }
    for (int r = 0; r < kRows; ++r) {
      Lanes ak;
      std::memcpy(&ak, a + r * a_stride + k, sizeof(Lanes));
      for (int j = 0; j < kUnits; ++j) acc[r][j] += ak * wk[j];
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const float* ar = a + r * a_stride;
    for (int j = 0; j < kUnits; ++j) {
      const float* wj = w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in;
      float tail = 0.0f;
      for (int k = body; k < fan_in; ++k) tail += ar[k] * wj[k];
      const Lanes& s = acc[r][j];
      const float lanes = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      z[r * z_stride + j0 + j] = b[j0 + j] + (lanes + tail);
    }
  }
}

// All units of kRows rows: tiles of kUnits units, then the remaining units
// one at a time.
template <int kRows, int kUnits>
void Rows(const float* a, std::ptrdiff_t a_stride, const float* w, const float* b, int fan_in,
          int units, float* z, std::ptrdiff_t z_stride) {
  int j = 0;
  for (; j + kUnits <= units; j += kUnits) {
    Tile<kRows, kUnits>(a, a_stride, w, b, fan_in, j, z, z_stride);
  }
  for (; j < units; ++j) Tile<kRows, 1>(a, a_stride, w, b, fan_in, j, z, z_stride);
}

}  // namespace

void DenseRows(const float* a, std::ptrdiff_t a_stride, std::ptrdiff_t rows, const float* w,
               const float* b, int fan_in, int units, float* z, std::ptrdiff_t z_stride) {
  // Blocks of units whose weights (≤ kBlockBytes, at least 8 units) stay in
  // the L2 cache while every tile of rows passes over them: each weight comes
  // from memory once per call, not once per tile.
  constexpr std::size_t kBlockBytes = 128 * 1024;
  const std::size_t row_bytes = static_cast<std::size_t>(fan_in) * sizeof(float);
  const int block =
      std::max<int>(8, static_cast<int>(kBlockBytes / std::max<std::size_t>(row_bytes, 1)) / 8 * 8);
  for (int j0 = 0; j0 < units; j0 += block) {
    const int block_units = std::min(block, units - j0);
    const float* wb = w + static_cast<std::ptrdiff_t>(j0) * fan_in;
    std::ptrdiff_t r = 0;
    // kDenseTileRows × 2 and 1 × 8 accumulators: 8 independent sums in
    // flight either way, so a lone row is not held up by one chain's latency.
    for (; r + kDenseTileRows <= rows; r += kDenseTileRows) {
      Rows<kDenseTileRows, 2>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                              z + r * z_stride + j0, z_stride);
    }
    for (; r < rows; ++r) {
      Rows<1, 8>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units, z + r * z_stride + j0,
                 z_stride);
    }
  }
}

}  // namespace deltaserve::model
