// Built with -ffp-contract=off (model/CMakeLists.txt), so the compiler
// never fuses a multiply and an add on its own: GCC would otherwise fuse some
// and not others, depending on the tile shape, and a row's bits would depend
// on its tile. Every term of a lane sum goes through one step, the same in
// every code path of a build: a fused multiply-add (one rounding) where the
// instruction set has FMA, else a multiply then an add. The remainder's terms
// (fewer than kDenseLanes) are a multiply then an add in every build, so a
// layer narrower than one lane group keeps the plain sequential sum it had
// before FMA was used (the forward fuzzer compares such a model's answers
// with Mlp::Forward bit for bit).
//
// Compiled more than once (model/CMakeLists.txt): with the build's own flags
// as dense_rows_kernels::build, and on x86-64 also for AVX2 + FMA and for
// AVX-512, each copy in its namespace; DenseRows (dense_rows.cc) picks one
// for the CPU it runs on. Nothing here may call an inline function with
// external linkage (std::max, say): the linker would keep one copy of it,
// compiled for whichever instruction set came first.
#include "deltaserve/model/dense_rows_kernels.h"

#if defined(__FMA__)
#include <immintrin.h>
#endif

#if !defined(DELTASERVE_DENSE_ROWS_VARIANT)
#define DELTASERVE_DENSE_ROWS_VARIANT build
#endif

namespace deltaserve::model::dense_rows_kernels::DELTASERVE_DENSE_ROWS_VARIANT {
namespace {

constexpr int Min(int x, int y) { return x < y ? x : y; }
constexpr std::size_t Max(std::size_t x, std::size_t y) { return x > y ? x : y; }

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
#if defined(__FMA__)
static_assert(kVecFloats == 8, "FMA implies AVX: one 8-float vector a lane group");
#endif

// Sums the 8 lanes of a group in dense_rows.h's fixed order.
inline float SumLanes(const float (&s)[kDenseLanes]) {
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

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
        for (int j = 0; j < kUnits; ++j) {
#if defined(__FMA__)
          acc[r][j][p] = _mm256_fmadd_ps(ak, wk[j][p], acc[r][j][p]);
#else
          acc[r][j][p] += ak * wk[j][p];
#endif
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const float* ar = a + r * a_stride;
    for (int j = 0; j < kUnits; ++j) {
      const float* wj = w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in;
      float tail = 0.0f;
      for (int k = body; k < fan_in; ++k) tail += ar[k] * wj[k];  // Never fused.
      // With no whole lane group (fan_in < kDenseLanes) every lane is +0 and
      // their sum is +0: the same value, without the adds, for every row.
      float lanes = 0.0f;
      if (body > 0) {
        float s[kDenseLanes];
        for (int l = 0; l < kDenseLanes; ++l) s[l] = acc[r][j][l / kVecFloats][l % kVecFloats];
        lanes = SumLanes(s);
      }
      z[r * z_stride + j0 + j] = b[j0 + j] + (lanes + tail);
    }
  }
}

// A tile of outputs starting at unit j0 (Tile, PairTile).
using TileFn = void (*)(const float* a, std::ptrdiff_t a_stride, const float* w, const float* b,
                        int fan_in, int j0, float* z, std::ptrdiff_t z_stride);

// All units of one tile's rows: tiles of kUnits units, then the remaining
// units one at a time.
template <int kUnits, TileFn kTile, TileFn kOneUnit>
void AllUnits(const float* a, std::ptrdiff_t a_stride, const float* w, const float* b, int fan_in,
              int units, float* z, std::ptrdiff_t z_stride) {
  int j = 0;
  for (; j + kUnits <= units; j += kUnits) kTile(a, a_stride, w, b, fan_in, j, z, z_stride);
  for (; j < units; ++j) kOneUnit(a, a_stride, w, b, fan_in, j, z, z_stride);
}

template <int kRows, int kUnits>
constexpr auto Rows = AllUnits<kUnits, Tile<kRows, kUnits>, Tile<kRows, 1>>;

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__FMA__)
#define DELTASERVE_DENSE_ROW_PAIRS 1
// With AVX-512, two rows share a 16-float vector: unit j's lanes for rows
// 2q (low half) and 2q + 1 (high half), against unit j's 8 weights loaded into
// both halves straight from memory. Twice Tile's multiply-adds per
// instruction, and the only shuffle is the one putting two rows' inputs side
// by side, once per pair and lane group. Each lane is the same chain of fused
// multiply-adds as in Tile, so a row's bits do not depend on which it ran in.
constexpr bool kRowPairs = true;
// 8 rows × 4 units: 16 accumulators, each load of W serving 8 rows (fewer
// rows re-read W from L2 often enough to show; more units gain nothing).
constexpr int kPairTilePairs = 4, kPairTileUnits = 4;

typedef float Vec16 __attribute__((vector_size(16 * sizeof(float))));

template <int kPairs, int kUnits>
void PairTile(const float* a, std::ptrdiff_t a_stride, const float* w, const float* b, int fan_in,
              int j0, float* z, std::ptrdiff_t z_stride) {
  const int body = fan_in - fan_in % kDenseLanes;
  Vec16 acc[kPairs][kUnits];
  for (int q = 0; q < kPairs; ++q) {
    for (int j = 0; j < kUnits; ++j) acc[q][j] = Vec16{};
  }
  // The zero-masking broadcast with a full mask, and a vector-extension
  // shuffle for the pair: GCC 12's plain _mm512_broadcast_f32x8 and
  // _mm512_castps256_ps512 warn inside its own headers under -Werror
  // (-Wmaybe-uninitialized, from _mm512_undefined_ps).
  for (int k = 0; k < body; k += kDenseLanes) {
    Vec16 wk[kUnits];
    for (int j = 0; j < kUnits; ++j) {
      const Vec w8 = *reinterpret_cast<const UnalignedVec*>(
          w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in + k);
      wk[j] = _mm512_maskz_broadcast_f32x8(0xFFFF, w8);
    }
    for (int q = 0; q < kPairs; ++q) {
      const float* a0 = a + 2 * q * a_stride + k;
      const Vec lo = *reinterpret_cast<const UnalignedVec*>(a0);
      const Vec hi = *reinterpret_cast<const UnalignedVec*>(a0 + a_stride);
      const Vec16 aq =
          __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      for (int j = 0; j < kUnits; ++j) acc[q][j] = _mm512_fmadd_ps(aq, wk[j], acc[q][j]);
    }
  }
  for (int q = 0; q < kPairs; ++q) {
    for (int h = 0; h < 2; ++h) {
      const float* ar = a + (2 * q + h) * a_stride;
      for (int j = 0; j < kUnits; ++j) {
        const float* wj = w + static_cast<std::ptrdiff_t>(j0 + j) * fan_in;
        float tail = 0.0f;
        for (int k = body; k < fan_in; ++k) tail += ar[k] * wj[k];  // Never fused.
        float lanes = 0.0f;  // +0 with no whole lane group, as in Tile.
        if (body > 0) {
          float s[kDenseLanes];
          for (int l = 0; l < kDenseLanes; ++l) s[l] = acc[q][j][h * kDenseLanes + l];
          lanes = SumLanes(s);
        }
        z[(2 * q + h) * z_stride + j0 + j] = b[j0 + j] + (lanes + tail);
      }
    }
  }
}

// All units of 2·kPairs rows.
template <int kPairs, int kUnits>
constexpr auto PairRows = AllUnits<kUnits, PairTile<kPairs, kUnits>, PairTile<kPairs, 1>>;
#else
constexpr bool kRowPairs = false;
#endif

}  // namespace

int Level() {
#if defined(DELTASERVE_DENSE_ROW_PAIRS)
  return 4;
#elif defined(__FMA__)
  return 3;
#else
  return 2;
#endif
}

void DenseRows(const float* a, std::ptrdiff_t a_stride, std::ptrdiff_t rows, const float* w,
               const float* b, int fan_in, int units, float* z, std::ptrdiff_t z_stride) {
  // Blocks of units whose weights (≤ kBlockBytes, at least 8 units) stay in
  // the L2 cache while every tile of rows passes over them: each weight comes
  // from memory once per call, not once per tile.
  constexpr std::size_t kBlockBytes = 128 * 1024;
  const std::size_t row_bytes = static_cast<std::size_t>(fan_in) * sizeof(float);
  const int block = static_cast<int>(Max(8, kBlockBytes / Max(row_bytes, 1) / 8 * 8));
  for (int j0 = 0; j0 < units; j0 += block) {
    const int block_units = Min(block, units - j0);
    const float* wb = w + static_cast<std::ptrdiff_t>(j0) * fan_in;
    std::ptrdiff_t r = 0;
#if defined(DELTASERVE_DENSE_ROW_PAIRS)
    for (; r + 2 * kPairTilePairs <= rows; r += 2 * kPairTilePairs) {
      PairRows<kPairTilePairs, kPairTileUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in,
                                               block_units, z + r * z_stride + j0, z_stride);
    }
    if (r + 4 <= rows) {
      PairRows<2, kPairTileUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                                  z + r * z_stride + j0, z_stride);
      r += 4;
    }
    if (r + 2 <= rows) {
      PairRows<1, kPairTileUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                                  z + r * z_stride + j0, z_stride);
      r += 2;
    }
#endif
    for (; !kRowPairs && r + kTileRows <= rows; r += kTileRows) {
      Rows<kTileRows, kTileUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                                  z + r * z_stride + j0, z_stride);
    }
    for (; r < rows; ++r) {
      Rows<1, kRowUnits>(a + r * a_stride, a_stride, wb, b + j0, fan_in, block_units,
                         z + r * z_stride + j0, z_stride);
    }
  }
}

}  // namespace deltaserve::model::dense_rows_kernels::DELTASERVE_DENSE_ROWS_VARIANT
