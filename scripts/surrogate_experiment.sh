#!/usr/bin/env bash
# Regenerates the table in docs/surrogate.md: a Gaussian policy on the 1-D
# point mass (sim/gaussian_sim.cc) trained through deltaserve with
# surrogate mode ANCHORED or CURRENT, several delta_scale values ε, the acted
# output ỹ reported as the sampled action or the mean used, several seeds.
#
#   bash scripts/surrogate_experiment.sh [BUILD_DIR]
#
# Both action paths: "roundtrip" (ỹ comes from the version the server still
# has, so y = ỹ) and "replica" (ỹ may come from a version one step behind).
# CURRENT ignores ỹ, so it runs with ỹ = sample only.
#
# Environment: SEEDS="1 2 3", SCALES="1 10 100", EPISODES=600,
# PATHS="roundtrip replica",
# OUT_DIR=out/surrogate (raw results.csv and the markdown table.md).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-${repo}/build}" && pwd)
SEEDS=${SEEDS:-1 2 3}
SCALES=${SCALES:-1 10 100}
EPISODES=${EPISODES:-600}
PATHS=${PATHS:-roundtrip replica}
OUT_DIR=${OUT_DIR:-${repo}/out/surrogate}
server_bin=${build}/server/deltaserve
sim_bin=${build}/sim/gaussian_sim
mkdir -p "${OUT_DIR}"
tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n ${server_pid} ]] && kill "${server_pid}" 2>/dev/null && wait "${server_pid}" 2>/dev/null
  rm -rf "${tmp}"
}
trap cleanup EXIT

# Starts deltaserve with config $1; sets server_pid and address.
start_server() {
  rm -f "${tmp}/server.log"  # else the previous run's address may be read
  "${server_bin}" --config="$1" --listen=127.0.0.1:0 >"${tmp}/server.log" 2>/dev/null &
  server_pid=$!
  address=""
  for _ in $(seq 1 300); do
    address=$(sed -n 's/^listening on //p' "${tmp}/server.log" 2>/dev/null | head -n1 || true)
    [[ -n ${address} ]] && return 0
    sleep 0.1
  done
  echo "deltaserve did not start" >&2
  exit 1
}

csv=${OUT_DIR}/results.csv
echo "path,mode,acted,delta_scale,seed,final_return,greedy_return,episodes_to_threshold" >"${csv}"
for path in ${PATHS}; do
for mode in ANCHORED CURRENT; do
  for scale in ${SCALES}; do
    for acted in sample mean; do
      [[ ${mode} == CURRENT && ${acted} == mean ]] && continue
      for seed in ${SEEDS}; do
        sed -e "s/mode: ANCHORED/mode: ${mode}/" -e "s/delta_scale: 1 /delta_scale: ${scale} /" \
          "${repo}/configs/pointmass.textproto" >"${tmp}/config.textproto"
        start_server "${tmp}/config.textproto"
        line=$("${sim_bin}" --server="${address}" --seed="${seed}" --acted="${acted}" --actions="${path}" \
                 --episodes="${EPISODES}" --report_every=0 | grep '^result')
        kill "${server_pid}"; wait "${server_pid}" 2>/dev/null || true; server_pid=""
        get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"${line}"; }
        echo "${path},${mode},${acted},${scale},${seed},$(get final_return),$(get greedy_return),$(get episodes_to_threshold)" \
          | tee -a "${csv}"
      done
    done
  done
done
done >&2

/usr/bin/python3 - "${csv}" "${OUT_DIR}/table.md" <<'PY'
import collections, csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
groups = collections.OrderedDict()
for r in rows:
    groups.setdefault((r["path"], r["mode"], r["acted"], r["delta_scale"]), []).append(r)
out = ["| actions | mode | ỹ sent | ε (delta_scale) | seeds | final return (last 100, exploring) | "
       "greedy return | episodes to −3 (mean of reached) | reached |",
       "|---|---|---|---|---|---|---|---|---|"]
for (path, mode, acted, scale), rs in groups.items():
    fin = [float(r["final_return"]) for r in rs]
    gre = [float(r["greedy_return"]) for r in rs]
    eps = [int(r["episodes_to_threshold"]) for r in rs if int(r["episodes_to_threshold"]) >= 0]
    fmt = lambda xs: "%.2f ± %.2f" % (statistics.mean(xs), statistics.pstdev(xs))
    out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |" % (
        path, mode, acted, scale, " ".join(r["seed"] for r in rs), fmt(fin), fmt(gre),
        "%.0f" % statistics.mean(eps) if eps else "never", len(eps), len(rs)))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "raw: ${csv}; table: ${OUT_DIR}/table.md" >&2
