#!/usr/bin/env bash
# deltaserve's math core against PyTorch (1 thread, OpenBLAS) on the same MLP.
#
#   tools/bench_vs_torch.sh [BUILD_DIR]        (default: build)
#
# Debian's python3-torch calls whatever libblas.so.3 the alternatives system
# points at; on a machine with only the reference BLAS that is very slow. To
# compare against the fast configuration WITHOUT changing the machine, this
# script unpacks Debian's libopenblas0-pthread into $OPENBLAS_ROOT (default
# /tmp/openblas; `apt-get download` + `dpkg -x`, no installation) and puts its
# openblas-pthread directory first on LD_LIBRARY_PATH for the torch run only,
# with OPENBLAS_NUM_THREADS=1 and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset
# (so OpenBLAS detects this CPU itself). torch_bench.py prints the BLAS
# libraries the process actually mapped, so the switch is verified.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
OPENBLAS_ROOT="${OPENBLAS_ROOT:-/tmp/openblas}"
OPENBLAS_LIB="$OPENBLAS_ROOT/usr/lib/x86_64-linux-gnu/openblas-pthread"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

if [ ! -e "$OPENBLAS_LIB/libblas.so.3" ]; then
  (cd "$OUT" && apt-get download libopenblas0-pthread && \
   dpkg -x libopenblas0-pthread_*.deb "$OPENBLAS_ROOT")
fi

echo "== machine"
lscpu | grep -E "^Model name|^CPU\(s\)|^L2|^L3"
echo "SIMD: $(grep -o -w -E 'avx2|avx512f|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
uptime

echo "== deltaserve (bench/model_bench.cc)"
cmake --build "$BUILD" --target deltaserve_model_bench >/dev/null
# Medians of 5 repetitions, like torch_bench.py, to damp a shared machine's noise.
"$BUILD/bench/deltaserve_model_bench" --benchmark_min_time=0.4 \
  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT/deltaserve.json" --benchmark_out_format=json

echo "== torch (tools/torch_bench.py, OpenBLAS from $OPENBLAS_LIB)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  LD_LIBRARY_PATH="$OPENBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
  /usr/bin/python3 "$ROOT/tools/torch_bench.py" --min-time 2 --json "$OUT/torch.json"

uptime
echo "== comparison (median CPU time per iteration; ratio = deltaserve / torch)"
/usr/bin/python3 - "$OUT/deltaserve.json" "$OUT/torch.json" <<'PY'
import json, sys
ours = {b["run_name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
theirs = {(r["name"], str(r["batch"])): r for r in json.load(open(sys.argv[2]))["results"]}
def us(b):
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
    return b["cpu_time"] * scale
rows = [("forward", "BM_Forward", "forward"),
        ("forward+backward", "BM_ForwardBackward", "forward+backward"),
        ("forward+backward+adam", "BM_TrainStep", "forward+backward+adam")]
print("| step | batch | deltaserve µs | torch µs | ratio |")
print("|---|---:|---:|---:|---:|")
for label, bm, tname in rows:
    for batch in ("1", "32", "256"):
        o, t = us(ours["%s/%s" % (bm, batch)]), theirs[(tname, batch)]["cpu_us"]
        print("| %s | %s | %.1f | %.1f | %.2f |" % (label, batch, o, t, o / t))
o = us(ours["BM_AdamStep"])
t = theirs[("adam step (foreach=False)", "-")]["cpu_us"]
print("| adam step (84,488 params) | - | %.1f | %.1f | %.2f |" % (o, t, o / t))
peak = ours["BM_PeakGemm/512"]["FLOP/s"] / 1e9
print("peak (Eigen 512^3 GEMM): %.1f GFLOP/s; torch 512^3 mm: %.1f GFLOP/s"
      % (peak, 2 * 512 ** 3 / theirs[("peak gemm 512^3", "-")]["cpu_us"] / 1e3))
PY
