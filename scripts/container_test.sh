#!/usr/bin/env bash
# End-to-end test of the container image (docker/Dockerfile):
#   1. picks an engine: Docker if an engine answers (`docker info`), else
#      podman (configured by docker/containers.conf);
#   2. makes sure the base image exists without a registry
#      (scripts/container_base.sh) and builds the image with pulls disabled;
#   3. on a private network, runs the trainer with the CartPole config mounted
#      as /etc/deltaserve/config.textproto, serving TLS with tokens from
#      secrets made here (scripts/make_secrets.sh, mounted at
#      /run/secrets/deltaserve), checks that a call without a token is refused
#      and a plaintext one fails, waits for the health service to say
#      SERVING (the image's HEALTHCHECK, over TLS, and deltaserve-cli health from
#      a second container), runs two cartpole_sim containers authenticating
#      with the SIMULATOR token (one Forward round
#      trip per step, one local replica fed by WatchParameters) and checks
#      over the network that the model's version advances; runs the Python
#      simulator for a few episodes; scrapes /metrics (--metrics_listen);
#      stops the simulators, kills the trainer with SIGKILL, starts it again
#      and checks that it resumed at the same version from its state volume
#      (--state_dir);
#   4. removes everything it started (also on failure or Ctrl-C).
# scripts/kube_test.sh (ctest kube_manifests) then plays docker/k8s/ on the
# same image.
# No check is skipped: a probe that fails fails the test, with its output.
# Re-runnable: image layers and the base rootfs tarball are reused.
#
#   scripts/container_test.sh
# Environment: CONTAINER_ENGINE=docker|podman (skip detection),
#   DELTASERVE_IMAGE (default localhost/deltaserve:test), JOBS (build, default 2),
#   VERSION_ADVANCE (default 20), DEADLINE_SECONDS (per wait, default 180),
#   DELTASERVE_SKIP_CONTAINER_TEST=1 (exit 77: ctest reports the test skipped).
# Exit 0: pass; 1: fail (the reason is the last line on stderr); 77: skipped.
set -euo pipefail
# The whole script is one block, read before it runs: editing the file (or a
# git checkout) while it runs cannot change what runs.
{

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${DELTASERVE_IMAGE:-localhost/deltaserve:test}
jobs=${JOBS:-2}
advance=${VERSION_ADVANCE:-20}
deadline_s=${DEADLINE_SECONDS:-180}
label=deltaserve.container-test
run_id=$$
prefix=deltaserve-ct-$run_id
net=$prefix-net
trainer=$prefix-trainer
start_s=$SECONDS

log() { echo "container_test [$((SECONDS - start_s))s]: $*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
# expect_token_and_tls_required (uses log, fail and cli_as, defined here).
# shellcheck source=scripts/container_checks.sh
source "$repo/scripts/container_checks.sh"

if [[ ${DELTASERVE_SKIP_CONTAINER_TEST:-0} == 1 ]]; then
  log "SKIPPED: DELTASERVE_SKIP_CONTAINER_TEST=1 is set, so no image was built and nothing was checked (exit 77: ctest reports the test as skipped)"
  exit 77
fi

# --- 1. engine --------------------------------------------------------------
engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null; then
    engine=podman
  else
    fail "no container engine: 'docker info' fails and podman is not installed (scripts/install_deps.sh installs it)"
  fi
fi
build_flags=(--network=host)
# The trainer's HEALTHCHECK is run by hand below; podman would otherwise
# schedule it with systemd timers, which a container-less VM may not have.
trainer_health_flags=()
if [[ $engine == podman ]]; then
  # runc, cgroupfs, explicit ulimits: see the comments in the file.
  export CONTAINERS_CONF=$repo/docker/containers.conf
  # --format=docker: the OCI image format has no HEALTHCHECK.
  build_flags+=(--pull=never --isolation=chroot --format=docker)
  trainer_health_flags=(--health-interval=disable)
fi
engine_version=$("$engine" --version 2>&1) || { echo "$engine_version" >&2; fail "'$engine --version' failed"; }
log "engine: $engine ($engine_version)"
if [[ $engine == podman ]]; then
  # netavark (podman's network backend) runs iptables to set up every
  # network; without it `podman run` fails with "netavark: No such file or
  # directory (os error 2)".
  backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>&1) ||
    { echo "$backend" >&2; fail "'podman info' failed"; }
  if [[ $backend == netavark ]] && ! PATH=$PATH:/usr/sbin:/sbin command -v iptables >/dev/null; then
    fail "podman's network backend is netavark, which needs iptables: not installed (scripts/install_deps.sh installs it)"
  fi
fi

# Containers and networks carry the label deltaserve.container-test=PID of
# the run that started them. On exit a run removes its own; at start it
# removes those of runs that no longer exist (killed by a timeout), never
# those of a run still going.
remove_labelled() {  # $1: a label filter
  local ids
  ids=$("$engine" ps -aq --filter "label=$1" 2>/dev/null || true)
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086
    "$engine" rm -f $ids >/dev/null 2>&1 || true
  fi
  "$engine" network ls -q --filter "label=$1" 2>/dev/null | while read -r n; do
    "$engine" network rm -f "$n" >/dev/null 2>&1 || "$engine" network rm "$n" >/dev/null 2>&1 || true
  done
}
secrets_dir=$(mktemp -d /tmp/deltaserve-ct-secrets.XXXXXX)
cleanup() {
  remove_labelled "$label=$run_id"
  rm -rf "$secrets_dir"
}
cleanup_dead_runs() {
  local pid
  # Names are deltaserve-ct-PID-...
  for pid in $( { "$engine" ps -a --filter "label=$label" --format '{{.Names}}'
                  "$engine" network ls --filter "label=$label" --format '{{.Name}}'
                } 2>/dev/null | sed -n 's/^deltaserve-ct-\([0-9][0-9]*\)-.*/\1/p' | sort -u); do
    if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      remove_labelled "$label=$pid"
    fi
  done
}
dump_logs() {
  local c
  for c in $("$engine" ps -a --filter "label=$label=$run_id" --format '{{.Names}}' 2>/dev/null); do
    echo "----- logs of $c (last 30 lines) -----" >&2
    "$engine" logs --tail 30 "$c" >&2 2>&1 || true
  done
}
on_exit() {
  local rc=$?
  if ((rc != 0 && rc != 77)); then dump_logs; fi
  cleanup
  log "done (exit $rc, $((SECONDS - start_s)) s)"
}
cleanup_dead_runs
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- 2. image ---------------------------------------------------------------
bash "$repo/scripts/container_base.sh" "$engine" || fail "no base image debian:bookworm-slim"
build_log=$(mktemp /tmp/deltaserve-image-build.XXXXXX.log)
log "building $image (log: $build_log)"
build_start=$SECONDS
if ! "$engine" build "${build_flags[@]}" --build-arg "JOBS=$jobs" -f "$repo/docker/Dockerfile" \
     -t "$image" "$repo" >"$build_log" 2>&1; then
  tail -40 "$build_log" >&2
  fail "image build failed (full log: $build_log)"
fi
log "image built in $((SECONDS - build_start)) s"
rm -f "$build_log"
# Earlier builds' images, now untagged, are dropped (the layers this build
# reuses stay); only images of this Dockerfile, by their title label.
for title in deltaserve deltaserve-build; do
  "$engine" image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null 2>&1 || true
done

# --- 3. trainer and simulators ----------------------------------------------
"$engine" network create --label "$label=$run_id" "$net" >/dev/null || fail "cannot create network $net"

# TLS certificate (naming the trainer container) and tokens; the trainer
# mounts trainer/, every client simulator/ (the CA and the SIMULATOR token).
bash "$repo/scripts/make_secrets.sh" "$secrets_dir/s" "$trainer" || fail "scripts/make_secrets.sh failed"
trainer_secrets=(-v "$secrets_dir/s/trainer:/run/secrets/deltaserve:ro")
client_secrets=(-v "$secrets_dir/s/simulator:/run/secrets/deltaserve:ro")
client_tls=(--tls_ca_file=/run/secrets/deltaserve/ca.crt --token_file=/run/secrets/deltaserve/token)

# Runs deltaserve-cli in a fresh container on the network: across the
# container network, as a simulator would, over TLS with the SIMULATOR token.
cli_as() {  # cli_as FLAGS...: no TLS or token flags of its own
  "$engine" run --rm --network "$net" --label "$label=$run_id" --no-healthcheck \
    "${client_secrets[@]}" --entrypoint deltaserve-cli "$image" \
    --target="$trainer:50051" --timeout=5s "$@"
}
cli() { cli_as "${client_tls[@]}" "$@"; }

# `version: N` from deltaserve-cli info; fails with info's output (on
# stderr) when there is no such line.
model_version() {
  local out v
  out=$(cli info 2>&1) || { echo "$out" >&2; return 1; }
  v=$(awk '$1 == "version:" { print $2 }' <<<"$out")
  [[ $v =~ ^[0-9]+$ ]] || { echo "deltaserve-cli info printed no 'version: N' line:" >&2; echo "$out" >&2; return 1; }
  echo "$v"
}

# Polls "$@" (a command) until it succeeds or $deadline_s passes; on a
# timeout (or if the trainer stops) fails with the probe's last output.
wait_for() {
  local what=$1
  shift
  local until=$((SECONDS + deadline_s)) out stopped
  until out=$("$@" 2>&1); do
    if ((SECONDS >= until)); then
      echo "----- last output of the probe ($*) -----" >&2
      echo "$out" | tail -20 >&2
      fail "timed out after ${deadline_s}s waiting for $what"
    fi
    stopped=$(running_check)
    if [[ -n $stopped ]]; then
      echo "----- last output of the probe ($*) -----" >&2
      echo "$out" | tail -20 >&2
      fail "$stopped while waiting for $what"
    fi
    sleep 1 # Polling interval; the condition, not the sleep, decides.
  done
}
# Non-empty (a reason) if the trainer container is no longer running.
running_check() {
  local state
  state=$("$engine" inspect -f '{{.State.Running}}' "$trainer" 2>/dev/null || echo gone)
  [[ $state == true ]] || echo "trainer container stopped (running=$state)"
}

# The image's deltaserve must have --metrics_listen (/metrics is checked
# below). Its flag list: absl's --helpfull lists every flag but exits 1;
# --help may exit 0. Any exit code is accepted if the list names the flag;
# if neither lists it, the test fails with both outputs. No network needed.
trainer_args=(--config=/etc/deltaserve/config.textproto --listen=0.0.0.0:50051
  --metrics_listen=0.0.0.0:9464 --state_dir=/var/lib/deltaserve/state --log_level=info
  --tls_cert_file=/run/secrets/deltaserve/tls.crt --tls_key_file=/run/secrets/deltaserve/tls.key
  --auth_file=/run/secrets/deltaserve/auth.textproto)
help_probe() {  # help_probe FLAG: prints deltaserve FLAG's output, then "exit N"
  local out rc=0
  out=$("$engine" run --rm --network=none --no-healthcheck --entrypoint deltaserve "$image" "$1" 2>&1) || rc=$?
  printf '%s\nexit %s\n' "$out" "$rc"
}
lists_metrics_flag() { grep -qE -- '(^|[^[:alnum:]_-])--?metrics_listen([^[:alnum:]_]|$)' <<<"$1"; }
help_full=$(help_probe --helpfull)
if lists_metrics_flag "$help_full"; then
  log "deltaserve --helpfull lists --metrics_listen"
else
  help_short=$(help_probe --help)
  if lists_metrics_flag "$help_short"; then
    log "deltaserve --help lists --metrics_listen"
  else
    echo "----- deltaserve --helpfull (last 30 lines) -----" >&2
    tail -30 <<<"$help_full" >&2
    echo "----- deltaserve --help (last 30 lines) -----" >&2
    tail -30 <<<"$help_short" >&2
    fail "the image's deltaserve lists no --metrics_listen flag in --helpfull or --help (output above)"
  fi
fi

log "starting trainer $trainer"
# (podman without systemd complains on stderr that it cannot schedule
# healthcheck timers; shown only if the start fails.)
if ! run_err=$("$engine" run -d --name "$trainer" --label "$label=$run_id" --network "$net" \
     "${trainer_health_flags[@]}" \
     -v "$repo/configs/cartpole.textproto:/etc/deltaserve/config.textproto:ro" \
     "${trainer_secrets[@]}" "$image" "${trainer_args[@]}" 2>&1 >/dev/null); then
  echo "$run_err" >&2
  fail "cannot start the trainer container"
fi

# listening_count N: the trainer has printed "listening on" at least N times
# (once per start of the container).
listening_count() { (($("$engine" logs "$trainer" 2>&1 | grep -c '^listening on ') >= $1)); }
trainer_listening() { listening_count 1; }
wait_for "the trainer to print 'listening on'" trainer_listening
log "trainer: $("$engine" logs "$trainer" 2>&1 | grep '^listening on ')"

# The image's own HEALTHCHECK (deltaserve-cli health inside the container).
image_healthy() {
  if [[ $engine == podman ]]; then
    "$engine" healthcheck run "$trainer" 2>&1
  else
    local status
    status=$("$engine" inspect -f '{{.State.Health.Status}}' "$trainer" 2>&1)
    echo "health status: $status"
    [[ $status == healthy ]]
  fi
}
wait_for "the image's HEALTHCHECK to pass" image_healthy
health=$(cli health 2>&1) || fail "deltaserve-cli health across the network: not SERVING ($health)"
grep -q SERVING <<<"$health" || fail "deltaserve-cli health printed '$health', expected SERVING"
log "health: $health"

expect_token_and_tls_required

v0=$(model_version) || fail "deltaserve-cli info across the network gave no model version (output above)"
log "model version before the simulators: $v0"

sims=(
  "--actions=roundtrip --seed=1 --sim=1"
  "--actions=replica --seed=2 --sim=2"
)
for i in "${!sims[@]}"; do
  # shellcheck disable=SC2086
  "$engine" run -d --name "$prefix-cartpole-$((i + 1))" --label "$label=$run_id" --network "$net" \
    --no-healthcheck "${client_secrets[@]}" \
    --entrypoint cartpole_sim "$image" --server="$trainer:50051" "${client_tls[@]}" ${sims[$i]} --quiet \
    >/dev/null || fail "cannot start simulator $((i + 1))"
done
log "started ${#sims[@]} cartpole_sim containers"

target=$((v0 + advance))
version_reached() {
  local v
  v=$(model_version) || return 1
  ((v >= target)) || { echo "model version $v < $target"; return 1; }
}
wait_for "the model version to reach $target" version_reached
v1=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
log "model version now $v1 (>= $target): the simulators train the model"

for i in "${!sims[@]}"; do
  name=$prefix-cartpole-$((i + 1))
  state=$("$engine" inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$name")
  case $state in
    running*|"exited 0") ;;
    *) fail "simulator $name: $state" ;;
  esac
done

# The Python client in the image (grpcio, numpy, generated stubs): a few
# episodes with a replica fed by WatchParameters, exit 0 once they ran.
py_out=$("$engine" run --rm --network "$net" --label "$label=$run_id" --no-healthcheck \
  "${client_secrets[@]}" --entrypoint python3 "$image" /opt/deltaserve/python/examples/cartpole.py \
  --server="$trainer:50051" "${client_tls[@]}" --threads=1 --episodes=5 --actions=replica --target=1 \
  --time-limit=60 2>&1) || { echo "$py_out" >&2; fail "the Python CartPole simulator failed"; }
py_result=$(grep '^result' <<<"$py_out") ||
  { echo "$py_out" >&2; fail "the Python CartPole simulator exited 0 but printed no 'result' line"; }
log "python simulator: $py_result"

scrape=$("$engine" exec "$trainer" python3 -c \
  'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode())' 2>&1) ||
  { echo "$scrape" | tail -20 >&2; fail "GET /metrics on the trainer failed (output above)"; }
steps=$(awk '/^deltaserve_optimizer_steps_total\{.*model="cartpole"/ { print $2 }' <<<"$scrape")
if ! { [[ -n $steps ]] && awk -v s="$steps" 'BEGIN { exit !(s > 0) }'; }; then
  grep '^deltaserve_' <<<"$scrape" | head -30 >&2 || echo "$scrape" | head -30 >&2
  fail "/metrics: deltaserve_optimizer_steps_total{model=\"cartpole\"} is '${steps}', expected > 0 (scrape above)"
fi
log "metrics: deltaserve_optimizer_steps_total{model=\"cartpole\"} = $steps"
refused=$(awk '/^deltaserve_auth_failures_total\{/ && /reason="missing"/ { print $2 }' <<<"$scrape")
[[ -n $refused ]] && awk -v s="$refused" 'BEGIN { exit !(s >= 1) }' ||
  fail "/metrics: deltaserve_auth_failures_total{reason=\"missing\"} is '${refused}', expected >= 1"
log "metrics: deltaserve_auth_failures_total{reason=\"missing\"} = $refused"

v2=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"

# Durability: stop the simulators, SIGKILL the trainer (no final checkpoint)
# and start the same container again: its state volume must bring back at
# least the version it had (the journal replays every acknowledged step; a
# submission still in flight when the simulators went may add one more).
for i in "${!sims[@]}"; do "$engine" rm -f "$prefix-cartpole-$((i + 1))" >/dev/null; done
v_before=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
((v_before > v0)) || fail "the version did not advance before the restart ($v0 -> $v_before)"
"$engine" kill --signal KILL "$trainer" >/dev/null || fail "cannot SIGKILL the trainer"
"$engine" start "$trainer" >/dev/null || fail "cannot start the killed trainer again"
restarted() { listening_count 2; }
wait_for "the restarted trainer to print 'listening on'" restarted
v_after=$(model_version) || fail "deltaserve-cli info after the restart gave no version (output above)"
if ((v_after < v_before)); then
  "$engine" logs "$trainer" 2>&1 | tail -20 >&2
  fail "after SIGKILL and restart the model is at version $v_after, expected $v_before (log above)"
fi
restored=$("$engine" logs "$trainer" 2>&1 | grep -m1 'restored version' || true)
[[ -n $restored ]] || fail "the restarted trainer logged no 'restored version' line"
log "SIGKILL + restart: version $v_before survived (${restored#*deltaserve: })"
log "PASS: image $image, trainer SERVING over TLS with tokens, version $v0 -> $v2 with ${#sims[@]} authenticated simulators, /metrics scraped, state survived SIGKILL"
exit
}
