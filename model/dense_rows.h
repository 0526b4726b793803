// A dense layer's product computed so that each output row is a fixed
// function of its own input row: the same bits whatever other rows are
// computed with it and wherever it sits in the batch. Mlp::ForwardRowInvariant
// (what the server's Forward batcher runs) is built on it.
//
//   Z[r, j] = b[j] + Σ_k A[r, k] · W[j, k]      W [units × fan_in] row-major
//
// The sum over k is always formed the same way: kDenseLanes partial sums,
// lane l taking k ≡ l (mod kDenseLanes) in increasing k for the first
// fan_in − fan_in mod kDenseLanes terms, then the lanes added in a fixed
// order, then the remaining terms one by one, then the bias. Every term is
// formed the same way in every code path of a build — in the lanes one fused
// multiply-add where the instruction set has FMA (x86-64-v3 and up), else a
// multiply then an add, each correctly rounded; the remaining terms always a
// multiply then an add — so the grouping of rows and units into
// tiles, which only decides which values share a load of W, cannot change a
// result (the lanes are half a vector register, one, or half of one). Builds
// for instruction sets with and without FMA may differ in the last bits.
//
// Speed: tiles of rows (2 or 4 by instruction set; with AVX-512, 8 rows held
// two to a register) share each load of W, and blocks of units small enough
// to stay in the L2 cache are passed over by every tile before the next block
// is read, so a call reads its weights from memory once, not once per row.
// For weights that outgrow the caches that is what batching callers' rows
// buys (docs/benchmarks.md).
#ifndef DELTASERVE_MODEL_DENSE_ROWS_H_
#define DELTASERVE_MODEL_DENSE_ROWS_H_

#include <cstddef>
#include <vector>

namespace deltaserve::model {

inline constexpr int kDenseLanes = 8;

// Z[r, ·] for rows r = 0 .. rows−1 (rows ≥ 0): row r of A starts at
// a + r·a_stride, row r of Z at z + r·z_stride; A, W and b must not overlap Z.
// No alignment is required.
//
// Runs the first of DenseRowsKernels(), chosen once per process, so every
// call in a process forms its sums the same way.
void DenseRows(const float* a, std::ptrdiff_t a_stride, std::ptrdiff_t rows, const float* w,
               const float* b, int fan_in, int units, float* z, std::ptrdiff_t z_stride);

// The kernel is compiled for the build's own instruction set ("build") and,
// on x86-64, also for AVX2 + FMA ("avx2-fma") and AVX-512 ("avx512"), so that
// a binary built for x86-64-v2 (the container images) still runs the wide
// kernel where the CPU has it. Each follows the contract above; copies for
// different instruction sets may differ in the last bits (FMA or not).
using DenseRowsFn = void(const float* a, std::ptrdiff_t a_stride, std::ptrdiff_t rows,
                         const float* w, const float* b, int fan_in, int units, float* z,
                         std::ptrdiff_t z_stride);
struct DenseRowsKernel {
  const char* name;  // "build", "avx2-fma" or "avx512"
  DenseRowsFn* run;
};
// The copies this CPU runs, the widest first (on a tie "build" first):
// DenseRows uses the first.
const std::vector<DenseRowsKernel>& DenseRowsKernels();

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_DENSE_ROWS_H_
