#!/usr/bin/env bash
# Builds the math core alone (tests/isa/CMakeLists.txt) with -Werror for each
# x86-64 level and for the build machine's own CPU, one after another, and
# fails naming the first level that does not build. The levels exercise
# different Eigen kernels: SSE4.2 (v2), AVX2+FMA (v3), AVX-512 (v4).
#   tests/isa/check_isa_builds.sh WORK_DIR [LEVEL...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: check_isa_builds.sh WORK_DIR [LEVEL...]}
shift
mkdir -p "$work"
levels=("$@")
((${#levels[@]})) || levels=(x86-64-v2 x86-64-v3 x86-64-v4 native)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
for level in "${levels[@]}"; do
  dir="$work/$level"
  echo "== -march=$level"
  if ! cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE=Release "-DDELTASERVE_ARCH_FLAGS=-march=$level" \
      "${launcher[@]}" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"
    echo "FAIL: -march=$level: configure failed (log above)"
    exit 1
  fi
  if ! cmake --build "$dir" -j "$(nproc)" >"$dir.build.log" 2>&1; then
    cat "$dir.build.log"
    echo "FAIL: -march=$level: the math core does not build warning-free with -Werror (log above)"
    exit 1
  fi
  echo "ok: -march=$level"
done
echo "all ${#levels[@]} levels built with -Werror: ${levels[*]}"
