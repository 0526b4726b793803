#!/usr/bin/env bash
# Runs the Kubernetes manifests users apply (docker/k8s/) with a real engine:
# podman's `kube play` (Debian 12: podman 4.3), on the image that
# scripts/container_test.sh builds (ctest container_image, this test's
# fixture). The very files of docker/k8s/ are played, none is copied or
# edited (step 5 derives, at run time, the two files kube play cannot take as
# shipped: the relay DaemonSet's pod template as a Pod, and simulators.yaml
# with the relay overlay's patches):
#   1. makes TLS certificates and tokens (scripts/make_secrets.sh) and stores
#      them as the two Secrets kustomization.yaml's secretGenerator names,
#      with the files it lists;
#   2. plays state.yaml (the state volume claim), then trainer.yaml with
#      configmap.yaml, waits for the trainer's startup probe (gRPC health
#      over TLS), runs its liveness probe, checks that a call without a token is refused and a
#      plaintext one fails;
#   3. plays simulators.yaml (>= 4 replicas), checks that every replica
#      connects (deltaserve_watchers on /metrics) and that the model trains;
#   4. deletes the trainer pod while the simulators run, plays trainer.yaml
#      again (on a cluster the Deployment's controller makes the new pod),
#      checks that the new pod restored at least the version the old one had
#      from the claim, and that every simulator reconnects and training goes
#      on;
#   5. the relay overlay (docker/k8s/relay): plays the relay DaemonSet's pod
#      template as this node's relay pod (kube play 4.3 skips DaemonSets) and
#      the simulators as the overlay's patches make them (dialling the relay,
#      applied here as kustomize would), checks the relay's readiness probe
#      (TLS to its clients; TLS and the SIMULATOR token to the trainer), that
#      the trainer then has one watcher (the relay) and the relay one per
#      simulator, and that the model trains through the relay; replaces the
#      trainer pod once more and checks that the relay stays up, watches the
#      new pod and training goes on through it;
#   6. removes everything it made (also on failure or Ctrl-C).
# What kube play does not do, and how the test stands in for it (the Service,
# Secrets), is in docs/operations.md, "Kubernetes".
#
#   scripts/kube_test.sh
# Environment: DELTASERVE_IMAGE (default localhost/deltaserve:test),
#   VERSION_ADVANCE (default 20), DEADLINE_SECONDS (per wait, default 180),
#   DELTASERVE_SKIP_CONTAINER_TEST=1 (exit 77: ctest reports the test skipped).
# Exit 0: pass; 1: fail (the reason is the last line on stderr); 77: skipped.
set -euo pipefail
# One block, read before it runs: editing the file while it runs cannot
# change what runs.
{

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
k8s=$repo/docker/k8s
image=${DELTASERVE_IMAGE:-localhost/deltaserve:test}
advance=${VERSION_ADVANCE:-20}
deadline_s=${DEADLINE_SECONDS:-180}
start_s=$SECONDS
net=deltaserve-kube-test

log() { echo "kube_test [$((SECONDS - start_s))s]: $*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
# expect_token_and_tls_required (uses log, fail and cli_as, defined here).
# shellcheck source=scripts/container_checks.sh
source "$repo/scripts/container_checks.sh"

if [[ ${DELTASERVE_SKIP_CONTAINER_TEST:-0} == 1 ]]; then
  log "SKIPPED: DELTASERVE_SKIP_CONTAINER_TEST=1 is set, so nothing was played or checked (exit 77: ctest reports the test as skipped)"
  exit 77
fi

# --- engine -----------------------------------------------------------------
command -v podman >/dev/null || fail "podman is not installed (scripts/install_deps.sh installs it)"
# Every podman call closes fd 9, the lock below: podman leaves processes
# running (conmon, aardvark-dns) that would otherwise inherit it and hold the
# lock after this script has exited.
podman() { command podman "$@" 9>&-; }
# runc, cgroupfs, explicit ulimits: see the comments in the file.
export CONTAINERS_CONF=$repo/docker/containers.conf
log "engine: $(podman --version 2>&1)"
# Every pod's infra container runs catatonit as its init; podman only
# Recommends the package ("catatonit: no such file" when a pod starts).
if ! [[ -x /usr/libexec/podman/catatonit ]] && ! command -v catatonit >/dev/null; then
  fail "catatonit is not installed; podman needs it for the pods' infra containers (scripts/install_deps.sh installs it)"
fi
backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>&1) ||
  { echo "$backend" >&2; fail "'podman info' failed"; }
if [[ $backend == netavark ]] && ! PATH=$PATH:/usr/sbin:/sbin command -v iptables >/dev/null; then
  fail "podman's network backend is netavark, which needs iptables: not installed (scripts/install_deps.sh installs it)"
fi
if ! podman image exists "$image"; then
  # container_test.sh builds with Docker where a Docker engine answers.
  if command -v docker >/dev/null && docker image inspect "$image" >/dev/null 2>&1; then
    log "copying $image from Docker's image store to podman's"
    docker save "$image" | podman load >/dev/null || fail "cannot copy $image from Docker to podman"
  fi
  podman image exists "$image" ||
    fail "no image $image: scripts/container_test.sh builds it (ctest container_image, this test's fixture)"
fi

# Names come from the manifests: kube play names a Deployment's pods
# NAME-pod-I and their containers POD-CONTAINER, and makes a podman volume
# for each claim, ConfigMap, Secret and emptyDir, named after it.
manifest_facts=$(/usr/bin/python3 - "$k8s" <<'EOF'
import os, sys, yaml
k8s = sys.argv[1]
def docs(name):
    with open(os.path.join(k8s, name), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]
def selects(service, labels):
    return all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
def words(probe, what):
    command = probe.get("exec", {}).get("command", [])
    if not command or any(not a or a.split() != [a] for a in command):
        sys.exit("kube_test: %s: expected an exec command of words, got %r" % (what, command))
    return " ".join(command)
def one(items, what):
    if len(items) != 1:
        sys.exit("kube_test: expected one %s, found %d" % (what, len(items)))
    return items[0]
trainer = one([d for d in docs("trainer.yaml") if d["kind"] == "Deployment"], "Deployment in trainer.yaml")
sims = one([d for d in docs("simulators.yaml") if d["kind"] == "Deployment"], "Deployment in simulators.yaml")
labels = trainer["spec"]["template"]["metadata"]["labels"]
services = [s["metadata"]["name"] for s in docs("service.yaml") if s["kind"] == "Service"
            and selects(s, labels)]
claims = [d["metadata"]["name"] for d in docs("state.yaml") if d["kind"] == "PersistentVolumeClaim"]
kustomization = docs("kustomization.yaml")[0]
volumes = set(claims)
for d in (trainer, sims):
    for v in d["spec"]["template"]["spec"].get("volumes", []):
        if "secret" in v: volumes.add(v["secret"]["secretName"])
        if "configMap" in v: volumes.add(v["configMap"]["name"])
        if "emptyDir" in v: volumes.add(v["name"])
tc = one(trainer["spec"]["template"]["spec"]["containers"], "trainer container")
state_mount = [m["mountPath"] for m in tc["volumeMounts"]
               if m["name"] in {v["name"] for v in trainer["spec"]["template"]["spec"]["volumes"]
                                if "persistentVolumeClaim" in v}]
# One "key value..." line each.
print("trainer_pod %s-pod-0" % trainer["metadata"]["name"])
print("trainer_ctr %s-pod-0-%s" % (trainer["metadata"]["name"], tc["name"]))
print("trainer_grace %d" % trainer["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
print("startup_probe %s" % words(tc.get("startupProbe", {}), "trainer.yaml's startupProbe"))
relay_docs = docs("relay/daemonset.yaml")
relay = one([d for d in relay_docs if d["kind"] == "DaemonSet"], "DaemonSet in relay/daemonset.yaml")
rc = one(relay["spec"]["template"]["spec"]["containers"], "relay container")
relay_labels = relay["spec"]["template"]["metadata"]["labels"]
relay_services = [s["metadata"]["name"] for s in relay_docs if s["kind"] == "Service"
                  and selects(s, relay_labels)]
relay_metrics = [a.rsplit(":", 1)[1] for a in rc.get("args", []) if a.startswith("--metrics_listen=")]
if len(relay_metrics) != 1:
    sys.exit("kube_test: relay/daemonset.yaml: expected one --metrics_listen=HOST:PORT, got %r" % relay_metrics)
# kube play names a Pod's containers POD-CONTAINER; NAME-pod-0 as for a
# Deployment's first pod: this node's pod of the DaemonSet.
print("relay_pod %s-pod-0" % relay["metadata"]["name"])
print("relay_ctr %s-pod-0-%s" % (relay["metadata"]["name"], rc["name"]))
print("relay_probe %s" % words(rc.get("readinessProbe", {}), "relay/daemonset.yaml's readinessProbe"))
print("relay_services %s" % " ".join(relay_services))
print("relay_metrics_port %s" % relay_metrics[0])
for v in relay["spec"]["template"]["spec"].get("volumes", []):
    if "secret" in v: volumes.add(v["secret"]["secretName"])
    if "emptyDir" in v: volumes.add(v["name"])
print("sim_name %s" % sims["metadata"]["name"])
print("sim_ctr %s" % one(sims["spec"]["template"]["spec"]["containers"], "simulator container")["name"])
print("sim_replicas %d" % sims["spec"].get("replicas", 1))
print("service_names %s" % " ".join(services))
print("claims %s" % " ".join(claims))
print("state_mounts %s" % " ".join(state_mount))
print("volumes %s" % " ".join(sorted(volumes)))
print("secrets %s" % " ".join(g["name"] for g in kustomization.get("secretGenerator", [])))
print("image_ref %s:%s" % (kustomization["images"][0]["name"], kustomization["images"][0]["newTag"]))
EOF
) || fail "cannot read the manifests in $k8s (output above)"
fact() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ +/, ""); print; exit }' <<<"$manifest_facts"; }
trainer_pod=$(fact trainer_pod)
trainer_ctr=$(fact trainer_ctr)
trainer_grace=$(fact trainer_grace)
sim_name=$(fact sim_name)
sim_ctr=$(fact sim_ctr)
sim_replicas=$(fact sim_replicas)
image_ref=$(fact image_ref)
read -r -a startup_probe <<<"$(fact startup_probe)"
read -r -a service_names <<<"$(fact service_names)"
read -r -a claims <<<"$(fact claims)"
read -r -a state_mounts <<<"$(fact state_mounts)"
read -r -a volumes <<<"$(fact volumes)"
read -r -a secrets <<<"$(fact secrets)"
relay_pod=$(fact relay_pod)
relay_ctr=$(fact relay_ctr)
relay_metrics_port=$(fact relay_metrics_port)
read -r -a relay_probe <<<"$(fact relay_probe)"
read -r -a relay_services <<<"$(fact relay_services)"
((sim_replicas >= 4)) || fail "simulators.yaml has $sim_replicas replicas; this test wants at least 4"
((${#service_names[@]} >= 1)) || fail "no Service in service.yaml selects the trainer's pods"
((${#claims[@]} >= 1)) || fail "state.yaml defines no PersistentVolumeClaim"
((${#state_mounts[@]} >= 1)) || fail "trainer.yaml mounts no PersistentVolumeClaim"
((${#relay_services[@]} >= 1)) || fail "no Service in relay/daemonset.yaml selects the relay's pods"
log "trainer pod $trainer_pod (Service ${service_names[*]}), $sim_replicas $sim_name pods, claims ${claims[*]} at ${state_mounts[*]}"

# The manifests name fixed objects (pods, volumes, Secrets), so runs on one
# machine take turns; under the lock, whatever a killed run left is removed.
lock_file=/tmp/deltaserve-kube-test.lock
exec 9>"$lock_file"
flock -w "$deadline_s" 9 || fail "another scripts/kube_test.sh held $lock_file for ${deadline_s}s"

# `image: deltaserve` (kustomization.yaml sets the tag, latest) resolves to
# localhost/deltaserve:latest in podman's store: that tag points at $image
# during the test and is given back afterwards.
local_ref=localhost/$image_ref
previous_image=$(podman image inspect --format '{{.Id}}' "$local_ref" 2>/dev/null || true)

# This test's pods, volumes, Secrets and network that exist, as "KIND NAME"
# lines (one listing per kind: podman calls are slow on a busy machine).
existing_objects() {
  local pods=("$trainer_pod" "$relay_pod") listing n
  for ((i = 0; i < sim_replicas; i++)); do pods+=("$sim_name-pod-$i"); done
  listing=$(podman pod ps --format '{{.Name}}' 2>&1) || { echo "podman pod ps: $listing" >&2; return 1; }
  for n in "${pods[@]}"; do grep -qxF -- "$n" <<<"$listing" && echo "pod $n"; done
  listing=$(podman volume ls --format '{{.Name}}' 2>&1) || { echo "podman volume ls: $listing" >&2; return 1; }
  for n in "${volumes[@]}"; do grep -qxF -- "$n" <<<"$listing" && echo "volume $n"; done
  listing=$(podman secret ls --format '{{.Name}}' 2>&1) || { echo "podman secret ls: $listing" >&2; return 1; }
  for n in "${secrets[@]}"; do grep -qxF -- "$n" <<<"$listing" && echo "secret $n"; done
  listing=$(podman network ls --format '{{.Name}}' 2>&1) || { echo "podman network ls: $listing" >&2; return 1; }
  grep -qxF -- "$net" <<<"$listing" && echo "network $net"
  return 0
}
# Pods first, until none is left (bounded): a pod whose simulators restart
# (restart policy Always) may refuse one `pod rm`, and removing a volume a
# container still uses can deadlock podman 4.3 against the container's own
# cleanup, so volumes go only after their pods, and without --force.
names_of() {  # names_of KIND OBJECTS: the names of that kind, space separated
  awk -v k="$1" '$1 == k { printf "%s ", $2 }' <<<"$2"
}
remove_all() {
  local objects names until=$((SECONDS + deadline_s))
  while :; do
    objects=$(existing_objects) || { log "cannot list podman's objects; nothing removed"; return 0; }
    read -r -a names <<<"$(names_of pod "$objects")"
    ((${#names[@]} > 0)) || break
    if ((SECONDS >= until)); then
      log "could not remove the pods ${names[*]} within ${deadline_s}s"
      return 0
    fi
    podman pod stop -t 0 "${names[@]}" >/dev/null 2>&1 || true
    podman pod rm -f -t 0 "${names[@]}" >/dev/null 2>&1 || sleep 1 # Retry interval.
  done
  objects=$(existing_objects) || { log "cannot list podman's objects; no volume removed"; return 0; }
  read -r -a names <<<"$(names_of volume "$objects")"
  ((${#names[@]} == 0)) || podman volume rm "${names[@]}" >/dev/null 2>&1 || true
  read -r -a names <<<"$(names_of secret "$objects")"
  ((${#names[@]} == 0)) || podman secret rm "${names[@]}" >/dev/null 2>&1 || true
  read -r -a names <<<"$(names_of network "$objects")"
  ((${#names[@]} == 0)) || podman network rm "${names[@]}" >/dev/null 2>&1 || true
}
dump_logs() {
  local c
  for c in "$trainer_ctr" "$relay_ctr" $(for ((i = 0; i < sim_replicas; i++)); do echo "$sim_name-pod-$i-$sim_ctr"; done); do
    echo "----- logs of $c (last 20 lines) -----" >&2
    podman logs --tail 20 "$c" >&2 2>&1 || true
  done
}
on_exit() {
  local rc=$?
  if ((rc != 0 && rc != 77)); then dump_logs; fi
  remove_all
  if [[ -n $previous_image ]]; then
    podman tag "$previous_image" "$local_ref" >/dev/null 2>&1 || true
  else
    podman untag "$image" "$local_ref" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  if left=$(existing_objects) && [[ -z $left ]]; then
    rm -f "$marker"
  else
    log "could not remove: $(tr '\n' ' ' <<<"$left")"
  fi
  log "done (exit $rc, $((SECONDS - start_s)) s)"
}
# The names are also those of a deployment of docker/k8s a user may have
# played on this machine (its claim holds a model's state): objects with
# these names are removed only if a run of this test made them, which the
# marker file (left by a run that was killed) says.
marker=/var/tmp/deltaserve-kube-test.running
if [[ ! -e $marker ]]; then
  left=$(existing_objects) || fail "cannot list podman's pods, volumes, Secrets and networks (output above)"
  [[ -z $left ]] || fail "podman has objects with the manifests' names that no run of this test made (a deployment of docker/k8s of your own?): $(tr '\n' ' ' <<<"$left")- remove them to run the test"
fi
touch "$marker"
remove_all
work=$(mktemp -d /tmp/deltaserve-kube-test.XXXXXX)
trap on_exit EXIT
trap 'exit 130' INT TERM
podman tag "$image" "$local_ref" || fail "cannot tag $image as $local_ref"

# --- 1. Secrets ---------------------------------------------------------------
# As kustomize's secretGenerator would: one Secret per entry, a key per file.
# podman 4.3 stores a played `kind: Secret` with its data still base64-encoded
# and writes that text into the pod's files, so each Secret is stored with
# `podman secret create` from a Secret whose data holds the files' text, the
# form podman's secret volumes read.
# The certificate also names the relay's Service, as relay/daemonset.yaml says.
bash "$repo/scripts/make_secrets.sh" "$work/secrets" "${relay_services[@]}" >/dev/null 2>&1 ||
  fail "scripts/make_secrets.sh failed"
/usr/bin/python3 - "$k8s/kustomization.yaml" "$work" <<'EOF' || fail "cannot make the Secrets of kustomization.yaml (output above)"
import os, sys, yaml
kustomization_path, work = sys.argv[1], sys.argv[2]
with open(kustomization_path, encoding="utf-8") as f:
    kustomization = yaml.safe_load(f)
for gen in kustomization["secretGenerator"]:
    data = {}
    for path in gen["files"]:
        # secrets/... under docker/k8s is where make_secrets.sh's output goes.
        if not path.startswith("secrets/"):
            sys.exit("kube_test: %s: file %s is not under secrets/" % (gen["name"], path))
        with open(os.path.join(work, path), encoding="utf-8") as f:
            data[os.path.basename(path)] = f.read()
    doc = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": gen["name"]}, "data": data}
    with open(os.path.join(work, gen["name"] + ".yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
EOF
for s in "${secrets[@]}"; do
  podman secret create "$s" "$work/$s.yaml" >/dev/null || fail "podman secret create $s failed"
done
rm -f "$work"/*.yaml
log "Secrets ${secrets[*]} made from scripts/make_secrets.sh's files"

# --- 2. the trainer -----------------------------------------------------------
podman network create "$net" >/dev/null || fail "cannot create network $net"
# The Service's name: an alias of the trainer pod on the network (kube play
# skips Services).
trainer_net=$net
for s in "${service_names[@]}"; do trainer_net+=":alias=$s"; done

play() {  # play NETWORK FILE [FLAGS...]
  local out
  out=$(podman kube play --network "$1" "${@:3}" "$2" 2>&1) || { echo "$out" >&2; fail "podman kube play $2 failed (output above)"; }
}
play "$net" "$k8s/state.yaml"
for c in "${claims[@]}"; do podman volume exists "$c" || fail "state.yaml played, but there is no volume $c"; done
play_trainer() { play "$trainer_net" "$k8s/trainer.yaml" --configmap "$k8s/configmap.yaml"; }
play_trainer
log "played state.yaml and trainer.yaml"

# Runs deltaserve-cli in a fresh container on the network, with the
# simulators' Secret files, against the Service's name: as a simulator would.
cli_as() {  # cli_as FLAGS...: no TLS or token flags of its own
  podman run --rm --network "$net" --no-healthcheck \
    -v "$work/secrets/simulator:/run/secrets/deltaserve:ro" --entrypoint deltaserve-cli "$image" \
    --target="${service_names[0]}:50051" --timeout=5s "$@"
}
client_tls=(--tls_ca_file=/run/secrets/deltaserve/ca.crt --token_file=/run/secrets/deltaserve/token)
cli() { cli_as "${client_tls[@]}" "$@"; }
model_version() {
  local out v
  out=$(cli info 2>&1) || { echo "$out" >&2; return 1; }
  v=$(awk '$1 == "version:" { print $2 }' <<<"$out")
  [[ $v =~ ^[0-9]+$ ]] || { echo "deltaserve-cli info printed no 'version: N' line:" >&2; echo "$out" >&2; return 1; }
  echo "$v"
}
metrics() {  # metrics [CONTAINER PORT]: the trainer's by default
  podman exec "${1:-$trainer_ctr}" python3 -c \
    'import sys, urllib.request; print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())' \
    "${2:-9464}"
}
metric() {  # metric NAME [CONTAINER PORT]: its value for model "cartpole"
  local scrape
  scrape=$(metrics "${@:2}" 2>&1) || { echo "$scrape" | tail -5 >&2; return 1; }
  awk -v n="$1" '$1 ~ "^" n "\\{" && /model="cartpole"/ { print $2 }' <<<"$scrape"
}

# Polls "$@" until it succeeds or $deadline_s passes; fails with the probe's
# last output, as soon as the trainer container is not running, or as soon
# as a container of steady_ctrs has exited since it was played (restart
# policy Always restarts it: its RestartCount counts the exits).
steady_ctrs=()
wait_for() {
  local what=$1
  shift
  local until=$((SECONDS + deadline_s)) out state c restarts
  until out=$("$@" 2>&1); do
    for c in "${steady_ctrs[@]}"; do
      restarts=$(podman inspect -f '{{.RestartCount}}' "$c" 2>&1) || fail "container $c: $restarts"
      ((restarts == 0)) || fail "container $c exited (restarted $restarts times) while waiting for $what (its log is below)"
    done
    state=$(podman inspect -f '{{.State.Status}}' "$trainer_ctr" 2>/dev/null || echo gone)
    if ((SECONDS >= until)) || [[ $state != running ]]; then
      echo "----- last output of the probe ($*) -----" >&2
      echo "$out" | tail -20 >&2
      if [[ $state != running ]]; then fail "trainer container $trainer_ctr is $state while waiting for $what"; fi
      fail "timed out after ${deadline_s}s waiting for $what"
    fi
    sleep 1 # Polling interval; the condition, not the sleep, decides.
  done
}
# The startupProbe of trainer.yaml, run as the kubelet would (kube play
# ignores startup probes): deltaserve-cli health over TLS to localhost in
# the pod. Then the livenessProbe, which kube play made the container's
# health check, once: after failureThreshold failures in a row podman
# restarts the container (restart policy Always), so polling it while the
# trainer restores its state would restart the trainer again and again.
trainer_started() { podman exec "$trainer_ctr" "${startup_probe[@]}"; }
trainer_live() {
  local out
  out=$(podman healthcheck run "$trainer_ctr" 2>&1) ||
    { echo "$out" >&2; fail "the trainer's liveness probe (podman healthcheck run) failed after its startup probe passed"; }
}
wait_for "the trainer's startup probe to pass" trainer_started
trainer_live
log "trainer pod $trainer_pod is up (its startup and liveness probes pass, over TLS)"

expect_token_and_tls_required
v0=$(model_version) || fail "deltaserve-cli info via the Service name gave no model version (output above)"

# --- 3. the simulators ----------------------------------------------------------
play "$net" "$k8s/simulators.yaml"
for ((i = 0; i < sim_replicas; i++)); do
  podman pod exists "$sim_name-pod-$i" || fail "simulators.yaml played, but there is no pod $sim_name-pod-$i"
done
log "played simulators.yaml: $sim_replicas pods"

# Every replica keeps a WatchParameters stream (--actions=replica).
watchers_are() {  # watchers_are N [CONTAINER PORT]: the trainer's by default
  local w
  w=$(metric deltaserve_watchers "${@:2}") || return 1
  [[ $w == "$1" ]] || { echo "deltaserve_watchers{model=\"cartpole\"} of ${2:-$trainer_ctr} is '$w', expected $1"; return 1; }
}
all_watching() { watchers_are "$sim_replicas"; }
version_at_least() {  # version_at_least N
  local v
  v=$(model_version) || return 1
  ((v >= $1)) || { echo "model version $v < $1"; return 1; }
}
wait_for "all $sim_replicas simulators to watch the model" all_watching
wait_for "the model version to reach $((v0 + advance))" version_at_least $((v0 + advance))
v_before=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
log "$sim_replicas simulators connected; version $v0 -> $v_before"

# --- 4. delete the trainer pod ----------------------------------------------------
# As `kubectl delete pod`: SIGTERM, SIGKILL after the grace period; then the
# new pod, which must restore at least VERSION_REACHED from the claim. Sets
# v_restored. The trainer's clients keep running and retry.
replace_trainer_pod() {  # replace_trainer_pod VERSION_REACHED
  local restored c
  podman pod rm -f -t "$trainer_grace" "$trainer_pod" >/dev/null || fail "podman pod rm $trainer_pod failed"
  podman pod exists "$trainer_pod" && fail "pod $trainer_pod still exists after podman pod rm"
  for c in "${claims[@]}"; do podman volume exists "$c" || fail "the claim's volume $c went with the pod"; done
  log "deleted pod $trainer_pod at version >= $1; playing trainer.yaml again"
  play_trainer
  wait_for "the new trainer's startup probe to pass" trainer_started
  trainer_live
  restored=$(podman logs "$trainer_ctr" 2>&1 | grep -m1 'restored version' || true)
  if [[ -z $restored ]]; then
    podman logs "$trainer_ctr" 2>&1 | tail -20 >&2
    fail "the new trainer pod logged no 'restored version' line: it did not find the old pod's state in ${state_mounts[*]} (log above)"
  fi
  v_restored=$(sed -n 's/.*restored version \([0-9][0-9]*\).*/\1/p' <<<"$restored")
  [[ $v_restored =~ ^[0-9]+$ ]] || fail "cannot read the version in: $restored"
  ((v_restored >= $1)) ||
    fail "the new trainer restored version $v_restored, but the deleted one had reached $1 ($restored)"
  log "new pod: ${restored#*deltaserve: }"
}
replace_trainer_pod "$v_before"
v_after_restore=$v_restored

wait_for "all $sim_replicas simulators to watch the new trainer" all_watching
wait_for "the model version to reach $((v_restored + advance))" version_at_least $((v_restored + advance))
v_after=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
restarts=""
for ((i = 0; i < sim_replicas; i++)); do
  c=$sim_name-pod-$i-$sim_ctr
  state=$(podman inspect -f '{{.State.Status}}' "$c" 2>&1) || fail "simulator $c: $state"
  [[ $state == running ]] || fail "simulator $c is $state after the trainer came back"
  restarts+=" $(podman inspect -f '{{.RestartCount}}' "$c")"
done
log "simulators reconnected (restart counts:$restarts); version $v_restored -> $v_after"

# --- 5. the relay overlay -------------------------------------------------------
# `kubectl apply -k docker/k8s/relay` adds the DaemonSet and replaces the
# simulators' pods with ones that dial the relay on their node. kube play 4.3
# skips DaemonSets, so this node's pod of it is played from the DaemonSet's own
# pod template, and the overlay's JSON patches are applied to simulators.yaml
# here as kustomize applies them: both files are derived at run time from the
# shipped ones, never kept as copies.
/usr/bin/python3 - "$k8s" "$work" "$relay_pod" <<'EOF' || fail "cannot derive the relay overlay's files (output above)"
import os, sys, yaml
k8s, work, relay_pod = sys.argv[1:4]
def docs(path):
    with open(os.path.join(k8s, path), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]
def stop(why):
    sys.exit("kube_test: relay/kustomization.yaml: " + why)
overlay = docs("relay/kustomization.yaml")[0]
if sorted(overlay["resources"]) != ["../", "daemonset.yaml"]:
    stop("expected resources ../ and daemonset.yaml, got %r" % overlay["resources"])
relay = [d for d in docs("relay/daemonset.yaml") if d["kind"] == "DaemonSet"][0]
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": relay_pod, "labels": relay["spec"]["template"]["metadata"]["labels"]},
       "spec": relay["spec"]["template"]["spec"]}
with open(os.path.join(work, "relay-pod.yaml"), "w", encoding="utf-8") as f:
    yaml.safe_dump(pod, f)
def apply(doc, op):  # RFC 6902 "replace" and "add", the ops an overlay like this uses
    if op["op"] not in ("replace", "add"):
        stop("patch op %r is not one this test applies" % op["op"])
    *parents, last = op["path"].lstrip("/").split("/")
    for key in parents:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    if isinstance(doc, list):
        if op["op"] == "add":
            doc.insert(len(doc) if last == "-" else int(last), op["value"])
        else:
            doc[int(last)] = op["value"]
    elif op["op"] == "replace" and last not in doc:
        stop("replace of %s, which simulators.yaml does not have" % op["path"])
    else:
        doc[last] = op["value"]
sims = docs("simulators.yaml")
for patch in overlay.get("patches", []):
    target = patch["target"]
    matched = [d for d in sims
               if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
    if len(matched) != 1:
        stop("the patch for %s %s matches %d documents of simulators.yaml"
             % (target["kind"], target["name"], len(matched)))
    for op in yaml.safe_load(patch["patch"]):
        apply(matched[0], op)
with open(os.path.join(work, "simulators-relay.yaml"), "w", encoding="utf-8") as f:
    yaml.safe_dump_all(sims, f)
EOF
grep -q -- "--server=${relay_services[0]}:" "$work/simulators-relay.yaml" ||
  fail "the relay overlay's patches do not point the simulators at ${relay_services[0]}"
# The Service's name, as for the trainer: an alias of the relay pod.
relay_net=$net
for s in "${relay_services[@]}"; do relay_net+=":alias=$s"; done
play "$relay_net" "$work/relay-pod.yaml"
steady_ctrs=("$relay_ctr")
relay_ready() { podman exec "$relay_ctr" "${relay_probe[@]}"; }
wait_for "the relay's readiness probe to pass (it mirrors the trainer over TLS, with the SIMULATOR token)" relay_ready
log "relay pod $relay_pod is ready (Service ${relay_services[*]})"
sim_pods=()
for ((i = 0; i < sim_replicas; i++)); do sim_pods+=("$sim_name-pod-$i"); done
podman pod rm -f -t 0 "${sim_pods[@]}" >/dev/null || fail "podman pod rm ${sim_pods[*]} failed"
play "$net" "$work/simulators-relay.yaml"
log "replaced the $sim_replicas simulator pods with the overlay's"
v_relay0=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
wait_for "the relay to be the trainer's only watcher" watchers_are 1
log "the relay is the trainer's only watcher"
wait_for "all $sim_replicas simulators to watch the relay" \
  watchers_are "$sim_replicas" "$relay_ctr" "$relay_metrics_port"
wait_for "the model version to reach $((v_relay0 + advance)) through the relay" \
  version_at_least $((v_relay0 + advance))
v_relayed=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
log "through the relay: the trainer has 1 watcher, the relay $sim_replicas; version $v_relay0 -> $v_relayed"
# The trainer pod replaced once more, behind the relay: the relay stays up
# (steady_ctrs), dials the new pod behind the same name and mirrors it again,
# and its simulators train on without noticing more than a pause.
replace_trainer_pod "$v_relayed"
wait_for "the relay to watch the new trainer pod" watchers_are 1
wait_for "the model version to reach $((v_restored + advance)) through the relay" \
  version_at_least $((v_restored + advance))
v_relay_end=$(model_version) || fail "deltaserve-cli info gave no model version (output above)"
log "the relay reconnected to the new trainer pod; version $v_restored -> $v_relay_end"
log "PASS: docker/k8s played by $(podman --version): trainer over TLS with tokens, $sim_replicas simulators trained it ($v0 -> $v_before), the deleted trainer pod's successor restored version $v_after_restore from claim ${claims[*]} and training went on to $v_after, through the relay overlay to $v_relayed, and through the relay across another trainer pod replacement to $v_relay_end"
exit
}
