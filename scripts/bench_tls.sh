#!/usr/bin/env bash
# What TLS and tokens cost (docs/benchmarks.md, "Security"): Forward and
# SubmitDelta calls/s and p50 with deltaserve_load (8 clients, no watchers),
# against a fresh server each time in three modes, interleaved round by round
# so that a busy machine hurts all three alike:
#   plaintext    no TLS, no --auth_file
#   tls          --tls_cert_file/--tls_key_file; clients --tls_ca_file
#   tls+token    the same plus --auth_file; clients send a SIMULATOR token
# Certificates and tokens: scripts/make_secrets.sh into a temporary directory.
# Prints `uptime` first and one line per run, then the medians per mode and
# their ratios to plaintext.
#
#   bash scripts/bench_tls.sh [BUILD_DIR] [ROUNDS=3] [SECONDS_PER_RUN=15]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
rounds=${2:-3}
seconds=${3:-15}
load=$build/bench/deltaserve_load
server=$build/server/deltaserve
for f in "$load" "$server"; do
  [[ -x $f ]] || { echo "bench_tls: $f not found; build deltaserve and deltaserve_load" >&2; exit 2; }
done
secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT
bash "$root/scripts/make_secrets.sh" "$secrets/s" 2>/dev/null
t=$secrets/s/trainer
tls_server="--tls_cert_file=$t/tls.crt,--tls_key_file=$t/tls.key"
declare -A server_args=(
  [plaintext]=""
  [tls]="$tls_server"
  [tls+token]="$tls_server,--auth_file=$t/auth.textproto"
)
declare -A client_args=(
  [plaintext]=""
  [tls]="--tls_ca_file=$t/ca.crt"
  [tls+token]="--tls_ca_file=$t/ca.crt --token_file=$secrets/s/simulator/token"
)
modes=(plaintext tls tls+token)
echo "# uptime: $(uptime)"
echo "# $load --server_binary=$server --config=configs/cartpole.textproto --clients=8 --watchers=0 --duration=${seconds}s [mode flags]; $rounds rounds"
results=$secrets/results.txt
for ((r = 1; r <= rounds; r++)); do
  for mode in "${modes[@]}"; do
    # shellcheck disable=SC2086
    line=$("$load" --server_binary="$server" --config="$root/configs/cartpole.textproto" \
      --clients=8 --watchers=0 --duration="${seconds}s" --report_every="${seconds}s" \
      --warmup=0s --rss_band_pct=0 --allow_resource_exhausted \
      --server_args="${server_args[$mode]}" ${client_args[$mode]} | grep '^DELTASERVE_LOAD_SUMMARY ')
    json=${line#DELTASERVE_LOAD_SUMMARY }
    /usr/bin/python3 - "$mode" "$r" "$json" >>"$results" <<'PY'
import json, sys
mode, r, s = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
f, d = s["forward"], s["submit"]
print(mode, r, f["per_s"], f["p50_ms"], d["per_s"], d["p50_ms"], s["unexpected_errors"])
PY
    tail -1 "$results" | awk '{ printf "round %s %-10s forward %8.1f/s p50 %.3f ms | submit %7.1f/s p50 %.3f ms | non-OK %d\n", $2, $1, $3, $4, $5, $6, $7 }'
  done
done
/usr/bin/python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for mode in ("plaintext", "tls", "tls+token"):
    sel = [r for r in rows if r[0] == mode]
    med[mode] = [statistics.median(float(r[i]) for r in sel) for i in (2, 3, 4, 5)]
print("| mode | Forward calls/s | Forward p50 ms | SubmitDelta calls/s | SubmitDelta p50 ms | Forward calls/s vs plaintext | SubmitDelta calls/s vs plaintext |")
print("|---|---:|---:|---:|---:|---:|---:|")
base = med["plaintext"]
for mode, m in med.items():
    print("| %s | %.0f | %.3f | %.0f | %.3f | %.2f | %.2f |" % (mode, m[0], m[1], m[2], m[3], m[0] / base[0], m[2] / base[2]))
PY
