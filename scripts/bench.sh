#!/usr/bin/env bash
# Runs deltaserve's benchmarks from a build tree and prints the results with
# how quiet the machine was. Numbers go to docs/benchmarks.md (and
# docs/reliability.md for the soak) by hand, each with the command that
# produced it; no test asserts a number.
#
#   bash scripts/bench.sh [BUILD_DIR] [-- extra Google Benchmark flags]
#   bash scripts/bench.sh [BUILD_DIR] load [-- extra deltaserve_load flags]
#
# Benchmarks:
#   deltaserve_model_bench   the math core (forward, backward, optimizer steps,
#                            GEMM peak), in-process
#   deltaserve_load          soak/load tool (docs/reliability.md): starts
#                            BUILD_DIR/server/deltaserve with
#                            configs/cartpole.textproto on 127.0.0.1:0 and drives
#                            Forward + SubmitDelta clients and WatchParameters
#                            watchers against it; defaults --clients=16
#                            --watchers=4 --duration=10m, e.g.
#                            bash scripts/bench.sh build load -- --clients=64 --watchers=8
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
shift || true
mode=model
if [[ ${1:-} == load ]]; then
  mode=load
  shift
fi
[[ ${1:-} == -- ]] && shift
if [[ $mode == load ]]; then
  bench="$build/bench/deltaserve_load"
  args=(--server_binary="$build/server/deltaserve" --config="$root/configs/cartpole.textproto")
  target="deltaserve_load and deltaserve"
else
  bench="$build/bench/deltaserve_model_bench"
  args=()
  target=deltaserve_model_bench
fi
if [[ ! -x $bench ]]; then
  echo "bench: $bench not found; run 'make bench' (or build target $target)" >&2
  exit 1
fi
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $ $bench ${args[*]} $*"
status=0
"$bench" "${args[@]}" "$@" || status=$?
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
