#!/usr/bin/env bash
# The CartPole demo (scripts/demo.sh) for 5 seeds per transport, the
# transports interleaved seed by seed: median training seconds to solve CartPole-475 (train_seconds
# from sim/run_simulators.py: first episode to the solving one).
#
#   bash bench/transport/demo_seeds.sh [BUILD_DIR] [TRANSPORTS]   (default: "session unary")
#
# Extra settings go through to demo.sh (e.g. CONFIG=..., TIME_LIMIT=60).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-${repo}/build}
transports=${2:-session unary}
export TIME_LIMIT=${TIME_LIMIT:-120}
declare -A times
for seed in 1 2 3 4 5; do  # Interleaved: a load change on the shared machine hits both.
  for transport in ${transports}; do
    line=$(SEED=${seed} TRANSPORT=${transport} OUT_DIR=/tmp/deltaserve_demo_seeds \
             bash "${repo}/scripts/demo.sh" "${build}" 2>/dev/null | grep '^result ' | tail -n1 || true)
    t=$(sed -n 's/.*solved=1 train_seconds=\([0-9.]*\).*/\1/p' <<<"${line}")
    [[ -n ${t} ]] || t=inf  # not solved within TIME_LIMIT
    echo "demo_seeds: transport=${transport} seed=${seed} train_seconds=${t} load=$(cut -d' ' -f1 /proc/loadavg)"
    times[${transport}]="${times[${transport}]:-} ${t}"
  done
done
for transport in ${transports}; do
  # shellcheck disable=SC2086
  median=$(printf '%s\n' ${times[${transport}]} | sort -g | sed -n 3p)
  echo "demo_seeds: transport=${transport} median_train_seconds=${median} (${times[${transport}]# })"
done
