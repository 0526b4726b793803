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
# is built for the compiler's default, x86-64). The local default is the build
# machine's own CPU: the binaries of a local build run where they were built,
# and the core is fastest there (docs/benchmarks.md measures each level).
# Images are built with -march=x86-64-v2 (docker/Dockerfile) so that they run
# on any x86-64 CPU since ~2009. tests/isa proves that x86-64-v2, -v3, -v4 and
# native all build warning-free.
set(DELTASERVE_ARCH_FLAGS "-march=native" CACHE STRING "Instruction-set flags for the math core")
separate_arguments(DELTASERVE_ARCH_FLAGS)
