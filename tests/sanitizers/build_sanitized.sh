#!/usr/bin/env bash
# Configures and builds a sanitizer build of this tree with clang++-14, in a
# build directory of its own, for the sanitizer and fuzz ctest entries
# (tests/CMakeLists.txt; tests/fuzz/README.md). Fails — never skips — when
# clang or a sanitizer runtime is missing (scripts/install_deps.sh test
# installs clang-14, libfuzzer-14-dev and libclang-rt-14-dev).
#
#   build_sanitized.sh asan SOURCE_DIR BUILD_DIR
#     ASan + UBSan (-fno-sanitize-recover=undefined: a UBSan finding fails)
#     plus -fsanitize=fuzzer-no-link coverage for the libraries, so the one
#     build serves the unit tests and the libFuzzer targets (tests/fuzz,
#     linked with -fsanitize=fuzzer). Builds the gtest binaries of
#     tests/model, tests/wire, tests/server, tests/client and the fuzzers.
#   build_sanitized.sh tsan SOURCE_DIR BUILD_DIR
#     TSan; builds deltaserve_server_core_test (no gRPC, which is not
#     instrumented) with tsan_absl_shim.cc linked in, after checking on
#     tsan_probe.cc that the shim makes Abseil's synchronization visible and
#     that TSan does report a real race.
#
# Release optimisation for the math core as in the main build; everything
# else -O1 -g with assertions on (no NDEBUG: Eigen's bounds checks stay in).
# -Werror is off here: warnings are the main build's and tests/isa's to
# catch; this build is for runtime findings.
set -euo pipefail
mode=${1:?usage: build_sanitized.sh asan|tsan SOURCE_DIR BUILD_DIR}
src=$(cd "${2:?SOURCE_DIR}" && pwd)
dir=${3:?BUILD_DIR}
cxx=${DELTASERVE_SANITIZER_CXX:-clang++-14}
jobs=${DELTASERVE_SANITIZER_JOBS:-$(nproc)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if ! command -v "$cxx" >/dev/null; then
  echo "FAIL: $cxx not found; scripts/install_deps.sh test installs clang-14"
  exit 1
fi
"$cxx" --version | head -1

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$src}
fi

case "$mode" in
  asan)
    cxx_flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
    cxx_flags+=" -fno-omit-frame-pointer"
    link_flags="-fsanitize=address,undefined"
    extra=(-DDELTASERVE_BUILD_FUZZERS=ON)
    targets=(deltaserve_model_test deltaserve_wire_test deltaserve_server_core_test
             deltaserve_server_service_test deltaserve_server_metrics_test
             deltaserve_server_binary_test client_unit_test client_integration_test
             client_cli_test deltaserve_persist_test deltaserve_security_test forward_fuzzer
             submit_delta_fuzzer config_fuzzer state_fuzzer)
    # A one-line program per runtime: a missing libFuzzer or ASan runtime
    # fails here, with the compiler's message, not deep in the build.
    probe="$dir/probe"
    mkdir -p "$probe"
    printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
      'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' \
      >"$probe/fuzz.cc"
    if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/fuzz.cc" -o "$probe/fuzz" \
        >"$probe/log" 2>&1; then
      cat "$probe/log"
      echo "FAIL: $cxx cannot link -fsanitize=fuzzer,address,undefined (libfuzzer-14-dev and" \
           "libclang-rt-14-dev missing?)"
      exit 1
    fi
    ;;
  tsan)
    shim="$dir/tsan_absl_shim.o"
    "$cxx" -std=c++17 -O1 -g -fsanitize=thread -c "$src/tests/sanitizers/tsan_absl_shim.cc" \
      -o "$shim"
    absl_libs=(-labsl_synchronization -labsl_time -labsl_time_zone -labsl_int128
               -labsl_base -labsl_raw_logging_internal -labsl_spinlock_wait -labsl_stacktrace
               -labsl_symbolize -labsl_debugging_internal -labsl_demangle_internal
               -labsl_malloc_internal -labsl_graphcycles_internal -ldl)
    for variant in plain shim; do
      objs=()
      [[ $variant == shim ]] && objs=("$shim")
      "$cxx" -std=c++17 -O1 -g -fsanitize=thread "$src/tests/sanitizers/tsan_probe.cc" \
        "${objs[@]}" "${absl_libs[@]}" -o "$dir/tsan_probe_$variant"
    done
    export TSAN_OPTIONS="halt_on_error=1 exitcode=66"
    if ! "$dir/tsan_probe_shim" >"$dir/tsan_probe.log" 2>&1; then
      cat "$dir/tsan_probe.log"
      echo "FAIL: with tsan_absl_shim.cc, TSan still reports correctly synchronised Abseil code"
      exit 1
    fi
    if "$dir/tsan_probe_shim" race >"$dir/tsan_probe_race.log" 2>&1 ||
        ! grep -q "WARNING: ThreadSanitizer: data race" "$dir/tsan_probe_race.log"; then
      cat "$dir/tsan_probe_race.log"
      echo "FAIL: TSan did not report the deliberate race of tsan_probe.cc"
      exit 1
    fi
    if "$dir/tsan_probe_plain" >"$dir/tsan_probe_plain.log" 2>&1; then
      echo "note: without the shim TSan reported nothing on tsan_probe (Abseil instrumented?)"
    else
      echo "ok: without tsan_absl_shim.cc TSan reports Abseil-synchronised code (false positive)"
    fi
    echo "ok: with tsan_absl_shim.cc TSan is clean on it and still reports a real race"
    cxx_flags="-fsanitize=thread"
    link_flags="-fsanitize=thread $shim -ldl"
    extra=()
    targets=(deltaserve_server_core_test deltaserve_persist_test)
    ;;
  *)
    echo "usage: build_sanitized.sh asan|tsan SOURCE_DIR BUILD_DIR"
    exit 2
    ;;
esac

start=$(date +%s)
if ! cmake -S "$src" -B "$dir" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" "-DCMAKE_CXX_FLAGS=$cxx_flags" \
    "-DCMAKE_EXE_LINKER_FLAGS=$link_flags" -DDELTASERVE_WERROR=OFF \
    -DDELTASERVE_BUILD_TESTS=ON -DDELTASERVE_BUILD_BENCHMARKS=OFF "${extra[@]}" \
    "${launcher[@]}" >"$dir/configure.log" 2>&1; then
  cat "$dir/configure.log"
  echo "FAIL: $mode: configure failed (log above)"
  exit 1
fi
if ! cmake --build "$dir" -j "$jobs" --target "${targets[@]}" >"$dir/build.log" 2>&1; then
  tail -n 80 "$dir/build.log"
  echo "FAIL: $mode: build failed (last lines above; full log $dir/build.log)"
  exit 1
fi
echo "ok: $mode build of ${#targets[@]} targets in $(($(date +%s) - start)) s: ${targets[*]}"
