#!/usr/bin/env bash
# The deltaserve demo: N CartPole simulator processes learn one shared policy
# through a deltaserve server on loopback until the average return of the
# last 100 episodes (across all simulators) reaches 475, or a time limit.
#
#   bash scripts/demo.sh [BUILD_DIR]          (make demo runs this with build/)
#
# Settings (environment variables):
#   SIMS=8              simulator processes
#   ACTIONS=replica     replica (actions from local weights kept current by the server's
#                       weight push; after each SubmitDelta answer the simulator fetches
#                       that version's weights before acting on; only SubmitDelta and that
#                       fetch cross the network) | roundtrip (a Forward RPC per step)
#   TRANSPORT=session   session (every Forward and SubmitDelta on one Session stream per
#                       simulator: the fastest path, docs/benchmarks.md) | unary (an RPC each)
#   ENVS=1 (replica), 4 (roundtrip)
#                       CartPole environments per simulator, stepped in lockstep
#                       (one Forward of ENVS rows per step; with
#                       SIM_ARGS=--rows_per_forward=1, one 1-row Forward per
#                       environment, all in flight on the Session)
#   EPISODES_PER_SUBMIT=4 (replica), 2 (roundtrip)
#                       whole episodes per SubmitDelta (cartpole_sim --episodes_per_submit);
#                       a replica pays two round trips per submission (SubmitDelta, then
#                       the answer's weights), so fewer, larger ones halve what distance
#                       costs it (docs/benchmarks.md, "The cost of distance")
#   SEED=1              base seed (simulator i gets SEED*1000+i)
#   HOLD=0              seconds to keep the server and its live page up after the run
#                       (training takes well under a second with replica actions)
#   TIME_LIMIT=300      seconds of training before giving up
#   TARGET=475          average return that counts as solved
#   CONFIG=configs/cartpole.textproto
#   OUT_DIR=out/demo    where curve.csv, curve.png and the logs go
#   SIM_ARGS=""         extra flags for every cartpole_sim (e.g. --episodes_per_submit=4, or
#                       --submits_in_flight=0 to wait for every SubmitDelta answer; the
#                       default keeps 1 in flight with roundtrip, 0 with replica; or
#                       --replica_catch_up=fetch|push to fetch the answer's weights or
#                       wait for the push instead of taking them from the answer)
#
# While it trains, the server's live page (every curve, refreshed each 1.5 s)
# is at the address the demo prints ("demo: live page ..."), on loopback.
#
# Exit code 0 only when solved. Everything started here is stopped on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-${repo}/build}" && pwd)
SIMS=${SIMS:-8}
ACTIONS=${ACTIONS:-replica}
TRANSPORT=${TRANSPORT:-session}
# Several environments per simulator batch the round trip's Forward calls; a
# replica has none to batch, and its episodes would span submissions.
if [[ ${ACTIONS} == roundtrip ]]; then
  ENVS=${ENVS:-4}
  EPISODES_PER_SUBMIT=${EPISODES_PER_SUBMIT:-2}
else
  ENVS=${ENVS:-1}
  EPISODES_PER_SUBMIT=${EPISODES_PER_SUBMIT:-4}
fi
SEED=${SEED:-1}
HOLD=${HOLD:-0}
[[ ${HOLD} =~ ^[0-9]+$ ]] || { echo "demo: HOLD must be a whole number of seconds, got '${HOLD}'" >&2; exit 2; }
TIME_LIMIT=${TIME_LIMIT:-300}
TARGET=${TARGET:-475}
CONFIG=${CONFIG:-${repo}/configs/cartpole.textproto}
OUT_DIR=${OUT_DIR:-${repo}/out/demo}
SIM_ARGS=${SIM_ARGS:-}
PYTHON=/usr/bin/python3

server_bin=${build}/server/deltaserve
sim_bin=${build}/sim/cartpole_sim
for bin in "${server_bin}" "${sim_bin}"; do
  [[ -x ${bin} ]] || { echo "demo: ${bin} not built (run: make build)" >&2; exit 1; }
done
mkdir -p "${OUT_DIR}"

server_pid=""
cleanup() {
  if [[ -n ${server_pid} ]] && kill -0 "${server_pid}" 2>/dev/null; then
    kill "${server_pid}" 2>/dev/null || true
    wait "${server_pid}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The server on an OS-picked loopback port; its stdout says where. Its
#    metrics endpoint (also loopback, OS-picked) serves the live page.
start_ns=$(date +%s%N)
rm -f "${OUT_DIR}/server.log" "${OUT_DIR}/server.err"  # else a previous run's address may be read
"${server_bin}" --config="${CONFIG}" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
  >"${OUT_DIR}/server.log" 2>"${OUT_DIR}/server.err" &
server_pid=$!
address=""
for _ in $(seq 1 300); do  # up to 30 s
  address=$(sed -n 's/^listening on //p' "${OUT_DIR}/server.log" 2>/dev/null | head -n1 || true)
  [[ -n ${address} ]] && break
  kill -0 "${server_pid}" 2>/dev/null || { cat "${OUT_DIR}/server.err" >&2; exit 1; }
  sleep 0.1
done
[[ -n ${address} ]] || { echo "demo: server did not start" >&2; exit 1; }
server_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "demo: deltaserve listening on ${address} (started in ${server_ms} ms); config ${CONFIG}"
# The server logs "live page on http://..." before it prints its address.
page=$(sed -n 's/.*live page on \(http:[^ ]*\).*/\1/p' "${OUT_DIR}/server.err" | head -n1)
echo "demo: live page (curves while it trains): ${page:-not available, see ${OUT_DIR}/server.err}"
fastest=""
[[ ${TRANSPORT} == session ]] && fastest=" (the fastest path)"
calls="Forward and SubmitDelta go"
[[ ${ACTIONS} == replica ]] && calls="SubmitDelta goes (actions from a local replica)"
echo "demo: transport=${TRANSPORT}${fastest}: ${calls} over" \
     "$([[ ${TRANSPORT} == session ]] && echo "one Session stream per simulator" || echo "one unary RPC each")"
echo "demo: ${SIMS} x cartpole_sim (${ENVS} env each, ${EPISODES_PER_SUBMIT} episodes per" \
     "submission), actions=${ACTIONS}, seed=${SEED}," \
     "target ${TARGET}, time limit ${TIME_LIMIT} s, load: $(cut -d' ' -f1-3 /proc/loadavg)"

# 2. The simulators, aggregated (progress once a second, CSV of every episode).
set +e
# shellcheck disable=SC2086
"${PYTHON}" "${repo}/sim/run_simulators.py" \
  --server="${address}" --sim="${sim_bin}" --num="${SIMS}" --actions="${ACTIONS}" \
  --seed="${SEED}" --target="${TARGET}" --time-limit="${TIME_LIMIT}" \
  --csv="${OUT_DIR}/curve.csv" -- --envs="${ENVS}" --transport="${TRANSPORT}" \
  --episodes_per_submit="${EPISODES_PER_SUBMIT}" ${SIM_ARGS} \
  | tee "${OUT_DIR}/run.log"
rc=${PIPESTATUS[0]}
set -e

# 3. The plot, the result.
if command -v gnuplot >/dev/null; then
  bash "${repo}/tools/plot_learning_curve.sh" "${OUT_DIR}/curve.csv" "${OUT_DIR}/curve.png" \
    "deltaserve CartPole: ${SIMS} simulators x ${ENVS} env, ${ACTIONS}, seed ${SEED}" "${TARGET}" \
    && echo "demo: learning curve ${OUT_DIR}/curve.csv, plot ${OUT_DIR}/curve.png"
else
  echo "demo: gnuplot not installed; learning curve ${OUT_DIR}/curve.csv"
fi
if [[ ${rc} -eq 0 ]]; then
  echo "demo: SOLVED ($(tail -n1 "${OUT_DIR}/run.log"))"
else
  echo "demo: NOT solved within ${TIME_LIMIT} s ($(tail -n1 "${OUT_DIR}/run.log"))"
fi
# Training takes well under a second with replica actions: HOLD keeps the
# server, and so its live page with the whole run's curves, up a while.
if ((HOLD > 0)); then
  echo "demo: the live page stays up for ${HOLD} s (HOLD): ${page:-not available}"
  sleep "${HOLD}" # What the user asked for: time to look at the page.
fi
exit "${rc}"
