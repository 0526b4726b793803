// The copies of DenseRows' kernel (dense_rows_kernel.cc), one per instruction
// set it is compiled for; DenseRows (dense_rows.cc) calls the best one this
// CPU runs. Private to model/: use DenseRows or DenseRowsKernels.
#ifndef DELTASERVE_MODEL_DENSE_ROWS_KERNELS_H_
#define DELTASERVE_MODEL_DENSE_ROWS_KERNELS_H_

#include <cstddef>

#include "deltaserve/model/dense_rows.h"

namespace deltaserve::model::dense_rows_kernels {

// Each namespace holds one copy: DenseRows as in dense_rows.h, and Level(),
// the instruction set its code paths use: 4 AVX-512 row pairs with FMA, 3
// FMA on 8-float vectors, 2 separate multiplies and adds.
#define DELTASERVE_DECLARE_DENSE_ROWS_KERNEL(variant)                                          \
  namespace variant {                                                                          \
  int Level();                                                                                 \
  void DenseRows(const float* a, std::ptrdiff_t a_stride, std::ptrdiff_t rows, const float* w, \
                 const float* b, int fan_in, int units, float* z, std::ptrdiff_t z_stride);    \
  }
DELTASERVE_DECLARE_DENSE_ROWS_KERNEL(build)  // The build's own flags (DELTASERVE_ARCH_FLAGS).
#if defined(DELTASERVE_DENSE_ROWS_X86_KERNELS)
DELTASERVE_DECLARE_DENSE_ROWS_KERNEL(avx2_fma)  // -mavx2 -mfma
DELTASERVE_DECLARE_DENSE_ROWS_KERNEL(avx512)    // -mavx512f -mavx512dq -mavx2 -mfma
#endif
#undef DELTASERVE_DECLARE_DENSE_ROWS_KERNEL

}  // namespace deltaserve::model::dense_rows_kernels

#endif  // DELTASERVE_MODEL_DENSE_ROWS_KERNELS_H_
