#!/usr/bin/env bash
# What the math core's instruction set costs or gains: builds
# deltaserve_model_bench once per set of flags (x86-64-v2, -v3, -v4, native,
# and the default: native with generic tuning) into WORK/<flags>, then runs
# them side by side, REPEATS rounds interleaved, and prints the median real
# time of each benchmark per set as a Markdown table (docs/benchmarks.md).
#
#   bash tools/bench_isa.sh [WORK_DIR] [REPEATS]
#   BENCH_FILTER=REGEX picks other benchmarks (default: the training step's).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/deltaserve-bench-isa}
repeats=${2:-3}
mkdir -p "$work"
levels=("-march=x86-64-v2" "-march=x86-64-v3" "-march=x86-64-v4" "-march=native"
  "-march=native -mtune=generic")
dir_of() { echo "$work/$(echo "$1" | tr -d '-' | tr ' =' '__')"; }
filter=${BENCH_FILTER:-'BM_(ForwardBackward|TrainStep|AdamStep|PeakGemm)'}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
for level in "${levels[@]}"; do
  dir=$(dir_of "$level")
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DDELTASERVE_BUILD_TESTS=OFF \
    "-DDELTASERVE_ARCH_FLAGS=$level" "${launcher[@]}" >"$dir.configure.log"
  cmake --build "$dir" -j "$(nproc)" --target deltaserve_model_bench >"$dir.build.log"
done
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$repeats"); do
  for level in "${levels[@]}"; do
    dir=$(dir_of "$level")
    "$dir/bench/deltaserve_model_bench" --benchmark_filter="$filter" \
      --benchmark_format=json >"$dir.round$round.json" 2>/dev/null
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
dirs=()
for level in "${levels[@]}"; do dirs+=("$(dir_of "$level")"); done
/usr/bin/python3 - "$repeats" "${#levels[@]}" "${levels[@]}" "${dirs[@]}" <<'PY'
import json, statistics, sys
repeats, n = int(sys.argv[1]), int(sys.argv[2])
levels, dirs = sys.argv[3:3 + n], dict(zip(sys.argv[3:3 + n], sys.argv[3 + n:]))
times = {}  # (bench, level) -> [real_time ns]
order = []
for level in levels:
    for r in range(1, repeats + 1):
        for b in json.load(open(f"{dirs[level]}.round{r}.json"))["benchmarks"]:
            name, real, unit = b["name"], float(b["real_time"]), b["time_unit"]
            scale = {"ns": 1, "us": 1e3, "ms": 1e6}[unit]
            if name not in order:
                order.append(name)
            times.setdefault((name, level), []).append(real * scale)
print("| benchmark (µs) | " + " | ".join(f"`{l}`" for l in levels) + " | v2 ÷ default |")
print("|---|" + "---:|" * (len(levels) + 1))
for name in order:
    med = [statistics.median(times[(name, l)]) / 1e3 for l in levels]
    cells = " | ".join(f"{m:.1f}" for m in med)
    print(f"| {name} | {cells} | {med[0] / med[-1]:.2f}× |")
PY
