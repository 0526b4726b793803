# C++ standard, default build type and the math core's instruction set,
# shared by the main build and the per-ISA check (tests/isa).
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE Release)
endif()

# Instruction set of the math core (model/ and its benchmark; everything else
# is built for the compiler's default, x86-64). The local default is every
# instruction the build machine's CPU has, with GCC's generic tuning: the
# binaries of a local build run where they were built, and on the project's
# AVX-512 EPYC this is the fastest set measured (2.5-2.9x x86-64-v2 on the
# large benchmarks), while plain -march=native, which GCC 12 tunes for znver3
# there, is about 20% slower (docs/benchmarks.md, tools/bench_isa.sh). Images
# are built with -march=x86-64-v2 (docker/Dockerfile) so that they run on any
# x86-64 CPU since ~2009. tests/isa proves that x86-64-v2, -v3, -v4 and native
# all build warning-free.
set(DELTASERVE_ARCH_FLAGS "-march=native -mtune=generic" CACHE STRING
    "Instruction-set flags for the math core")
separate_arguments(DELTASERVE_ARCH_FLAGS)
