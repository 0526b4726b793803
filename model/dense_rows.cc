// DenseRows: the kernel copy for this CPU, chosen once.
#include "deltaserve/model/dense_rows.h"

#include <algorithm>
#include <vector>

#include "deltaserve/model/dense_rows_kernels.h"

namespace deltaserve::model {
namespace {

struct Candidate {
  DenseRowsKernel kernel;
  int level;
};

std::vector<DenseRowsKernel> SupportedKernels() {
  std::vector<Candidate> candidates = {
      {{"build", &dense_rows_kernels::build::DenseRows}, dense_rows_kernels::build::Level()}};
#if defined(DELTASERVE_DENSE_ROWS_X86_KERNELS)
  __builtin_cpu_init();
  // The features each copy was compiled with (model/CMakeLists.txt); the
  // checks include the operating system's support for the wider registers.
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    candidates.push_back({{"avx2-fma", &dense_rows_kernels::avx2_fma::DenseRows},
                          dense_rows_kernels::avx2_fma::Level()});
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
      candidates.push_back({{"avx512", &dense_rows_kernels::avx512::DenseRows},
                            dense_rows_kernels::avx512::Level()});
    }
  }
#endif
  // Widest first; on a tie the build's own copy, compiled for this machine's
  // tuning, stays ahead (stable sort).
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& x, const Candidate& y) { return x.level > y.level; });
  std::vector<DenseRowsKernel> kernels;
  for (const Candidate& c : candidates) kernels.push_back(c.kernel);
  return kernels;
}

}  // namespace

const std::vector<DenseRowsKernel>& DenseRowsKernels() {
  static const std::vector<DenseRowsKernel>* const kernels =
      new std::vector<DenseRowsKernel>(SupportedKernels());
  return *kernels;
}

void DenseRows(const float* a, std::ptrdiff_t a_stride, std::ptrdiff_t rows, const float* w,
               const float* b, int fan_in, int units, float* z, std::ptrdiff_t z_stride) {
  static DenseRowsFn* const kernel = DenseRowsKernels().front().run;
  kernel(a, a_stride, rows, w, b, fan_in, units, z, z_stride);
}

}  // namespace deltaserve::model
