// Built with -ffp-contract=off (model/CMakeLists.txt): every `acc += x * w`
// is a multiply then an add, each correctly rounded, in every code path below
// — GCC would otherwise fuse some of them into one rounding and not others,
// depending on the tile shape, and a row's bits would depend on its tile.
#include "model/dense_rows.h"

#include <algorithm>

namespace deltaserve::model {
namespace {

// A group of kDenseLanes lanes is held as kParts vectors of kVecFloats
// floats, the width of the instruction set's vector registers (lanes 0–3 in
// the first of two SSE vectors, 4–7 in the second), so that the compiler
// keeps every accumulator in a register; the arithmetic is element by
// element either way, so the width changes no result. Vectors are never
// passed to or returned from a function (their ABI differs between
// instruction sets).
#if defined(__AVX__)
constexpr int kVecFloats = 8;
#else
constexpr int kVecFloats = 4;
#endif
constexpr int kParts = kDenseLanes / kVecFloats;
typedef float Vec __attribute__((vector_size(kVecFloats * sizeof(float))));
// The same, read from any float address (an unaligned load; may alias floats).
typedef float UnalignedVec
    __attribute__((vector_size(kVecFloats * sizeof(float)), aligned(alignof(float)), may_alias));
static_assert(kDenseLanes == 8 && kDenseLanes % kVecFloats == 0,
              "Tile's lane sum is written for 8 lanes");

// Tile shapes, by how many vector registers the instruction set has: rows ×
// units of a tile of several rows, and units of a lone row's tile. Enough
// independent sums to hide an add's latency, few enough that accumulators,
// loads of W and one load of A fit in registers. Shapes only decide which
// values share a load; results are the same for every shape (dense_rows.h).
#if defined(__AVX512F__)  // 32 registers.
constexpr int kTileRows = 4, kTileUnits = 2, kRowUnits = 8;
#elif defined(__AVX__)  // 16 registers of 8 floats.
constexpr int kTileRows = 4, kTileUnits = 2, kRowUnits = 4;
#else                   // 16 registers of 4 floats: a lane group takes two.
constexpr int kTileRows = 2, kTileUnits = 2, kRowUnits = 2;
#endif

// Z for kRows × kUnits outputs starting at unit j0; see dense_rows.h for the
// order of every sum. The shape is a small constant, so the accumulators
// live in registers and each load of W (A) serves every row (unit) of the
// tile.
template <int kRows, int kUnits>
void Tile(const float* a, std::ptrdiff_t a_stride, const float* w, const float* b, int fan_in,
          int j0, float* z, std::ptrdiff_t z_stride) {
  const int body = fan_in - fan_in % kDenseLanes;
  Vec acc[kRows][kUnits][kParts];
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < kUnits; ++j) {
      for (int p = 0; p < kParts; ++p) acc[r][j][p] = Vec{};
    }
  }
  for (int k = 0; k < body; k += kDenseLanes) {
    // Loads by value, never through an address of these arrays, so that
    // they (and acc) stay in registers.
    Vec wk[kUnits][kParts];
    for (int j = 0; j < kUnits; ++j) {
      for (int p = 0; p < kParts; ++p) {
        wk[j][p] = *reinterpret_cast<const UnalignedVec*>(
            w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in + k + p * kVecFloats);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      for (int p = 0; p < kParts; ++p) {
        const Vec ak =
            *reinterpret_cast<const UnalignedVec*>(a + r * a_stride + k + p * kVecFloats);
        for (int j = 0; j < kUnits; ++j) acc[r][j][p] += ak * wk[j][p];
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const float* ar = a + r * a_stride;
    for (int j = 0; j < kUnits; ++j) {
      const float* wj = w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in;
      float tail = 0.0f;
      for (int k = body; k < fan_in; ++k) tail += ar[k] * wj[k];
      // With no whole lane group (fan_in < kDenseLanes) every lane is +0 and
      // their sum is +0: the same value, without the adds, for every row.
      float lanes = 0.0f;
      if (body > 0) {
        float s[kDenseLanes];
        for (int l = 0; l < kDenseLanes; ++l) s[l] = acc[r][j][l / kVecFloats][l % kVecFloats];
        lanes = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      }
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
    for (; r + kTileRows <= rows; r += kTileRows) {
      Rows<kTileRows, kTileUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                                  z + r * z_stride + j0, z_stride);
    }
    for (; r < rows; ++r) {
      Rows<1, kRowUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                         z + r * z_stride + j0, z_stride);
    }
  }
}

}  // namespace deltaserve::model
