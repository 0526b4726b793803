#!/usr/bin/env bash
# Runs deltaserve's benchmarks from a build tree and prints the results with
# how quiet the machine was. Numbers go to docs/benchmarks.md by hand, each
# with the command that produced it; no test asserts a number.
#
#   bash scripts/bench.sh [BUILD_DIR] [-- extra Google Benchmark flags]
#
# Benchmarks:
#   deltaserve_model_bench   the math core (forward, backward, optimizer steps,
#                            GEMM peak), in-process
set -euo pipefail
build=${1:-build}
shift || true
[[ ${1:-} == -- ]] && shift
bench="$build/bench/deltaserve_model_bench"
if [[ ! -x $bench ]]; then
  echo "bench: $bench not found; run 'make bench' (or build target deltaserve_model_bench)" >&2
  exit 1
fi
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $ $bench $*"
"$bench" "$@"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
