// The one place deltaserve includes Eigen. Include this, never "Eigen/Core".
//
// GCC 12 reports -Wmaybe-uninitialized inside its own avx512fintrin.h
// (`__m512 __Y = __Y;` in _mm512_undefined_ps) once Eigen's AVX-512 packet
// code is inlined into ours, under -march=x86-64-v4 or -march=native on an
// AVX-512 CPU. Being a system header does not hide it: the warning is issued
// after inlining. It is GCC bug 105593, fixed in GCC 13. The suppression below
// covers exactly that warning, only for GCC < 13, and only for the headers
// included between push and pop, so our own code keeps every warning.
#ifndef DELTASERVE_MODEL_EIGEN_H_
#define DELTASERVE_MODEL_EIGEN_H_

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>  // Inside the region, so the intrinsics' lines are too.
#include "Eigen/Core"
#pragma GCC diagnostic pop
#else
#include "Eigen/Core"
#endif

#endif  // DELTASERVE_MODEL_EIGEN_H_
