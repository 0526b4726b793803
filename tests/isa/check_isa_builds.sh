#!/usr/bin/env bash
# Builds the math core alone (tests/isa/CMakeLists.txt) with -Werror for each
# x86-64 level and for the build machine's own CPU, one after another, and
# fails naming the first level that does not build. The levels exercise
# different Eigen kernels: SSE4.2 (v2), AVX2+FMA (v3), AVX-512 (v4). Each
# level's build of the MLP and row-invariance tests (isa_model_test) then runs
# if this CPU has the level (the dynamic loader says which it has); a level
# the CPU lacks is built only, and the output says so.
#   tests/isa/check_isa_builds.sh WORK_DIR [LEVEL...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: check_isa_builds.sh WORK_DIR [LEVEL...]}
shift
mkdir -p "$work"
levels=("$@")
((${#levels[@]})) || levels=(x86-64-v2 x86-64-v3 x86-64-v4 native)
# The x86-64 levels this CPU runs, as glibc's loader lists them.
supported=$(/lib64/ld-linux-x86-64.so.2 --help) || {
  echo "FAIL: /lib64/ld-linux-x86-64.so.2 --help did not list the CPU's x86-64 levels"
  exit 1
}
grep -q "x86-64-v2 (" <<<"$supported" || {
  echo "FAIL: the loader's --help names no x86-64 levels; cannot tell which levels to run"
  exit 1
}
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
  if [[ $level == native ]] || grep -q "^ *$level (supported" <<<"$supported"; then
    if ! "$dir/isa_model_test" --gtest_brief=1 >"$dir.test.log" 2>&1; then
      cat "$dir.test.log"
      echo "FAIL: -march=$level: isa_model_test failed (log above)"
      exit 1
    fi
    echo "ok: -march=$level (built, isa_model_test passed)"
  else
    echo "ok: -march=$level (built; not run: this CPU lacks $level)"
  fi
done
echo "all ${#levels[@]} levels built with -Werror: ${levels[*]}"
