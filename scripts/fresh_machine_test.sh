#!/usr/bin/env bash
# Runs the README's commands on a fresh Debian 12 machine: a debootstrap
# bookworm rootfs (variant minbase, plus make and git, nothing else), into
# which the repository's committed HEAD is git-cloned; then, in a chroot as
# root, `make test` and/or `make demo` exactly as a newcomer would. Whatever
# scripts/install_deps.sh forgets shows up here as a failure.
#
#   sudo scripts/fresh_machine_test.sh [MODE...]      (default: test)
#
#   test    make test, with DELTASERVE_SKIP_CONTAINER_TEST=1 (a chroot has no
#           container engine: the container test reports itself skipped)
#   demo    make demo
#   build   make build: install_deps.sh's build profile (no GoogleTest or
#           Google Benchmark), the server, client, CLI and simulators
# Modes run in order in the same rootfs, e.g. `test demo`.
#
# Environment:
#   FRESH_DIR     work directory (default /var/tmp/deltaserve-fresh): rootfs/,
#                 the cached bare rootfs tarball, the apt .deb cache, logs
#   FRESH_REV     what to clone (default HEAD of this repository)
#   FRESH_APT_CACHE=0   do not keep downloaded .debs between runs (default:
#                 FRESH_DIR/apt-archives is the rootfs's apt archive cache,
#                 so a rerun downloads nothing; apt still installs everything)
#   FRESH_REBOOTSTRAP=1 rebuild the cached bare rootfs tarball
#   FRESH_NICE    niceness of the run inside (default 10: share the machine)
#   JOBS          passed to make (default: nproc)
# The rootfs is left in place (unmounted) for inspection; the next run
# replaces it. Log: FRESH_DIR/logs/fresh-<time>.log (also FRESH_DIR/latest.log).
# Exit status: that of the first failing mode (later ones are not run), else
# 0. Needs root.
set -euo pipefail
# The whole script is one block, read before it runs: editing the file (or a
# git checkout) while it runs cannot change what runs.
{

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/debian_sources.sh
source "$repo/scripts/debian_sources.sh"

modes=("$@")
((${#modes[@]})) || modes=(test)
for m in "${modes[@]}"; do
  case $m in
    test | demo | build) ;;
    *) echo "fresh_machine_test: unknown mode '$m' (test, demo, build)" >&2; exit 2 ;;
  esac
done

dir=${FRESH_DIR:-/var/tmp/deltaserve-fresh}
mkdir -p "$dir/logs"
dir=$(realpath "$dir")  # paths as /proc/PID/root and mountinfo show them
rev=${FRESH_REV:-HEAD}
niceness=${FRESH_NICE:-10}
jobs=${JOBS:-$(nproc)}
rootfs=$dir/rootfs
tarball=$dir/bookworm-minbase-make-git.tar
apt_cache=$dir/apt-archives
log_file=$dir/logs/fresh-$(date +%Y%m%dT%H%M%S).log
ln -sfn "$log_file" "$dir/latest.log"
start_s=$SECONDS

# Everything (ours and the chroot's) goes to the log; our own lines also to
# the terminal.
exec 3>&2
say() { echo "fresh_machine_test [$((SECONDS - start_s))s]: $*" | tee -a "$log_file" >&3; }
die() { say "FAIL: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, mount, chroot)"

# --- mounts: /proc /sys /dev, undone on any exit ----------------------------
mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -R "${mounted[$i]}" 2>/dev/null || umount -R -l "${mounted[$i]}" 2>/dev/null ||
      echo "fresh_machine_test: could not unmount ${mounted[$i]}" >&3
  done
  mounted=()
}
# Anything still mounted below the rootfs (from a killed run), deepest first.
mounts_below() {
  awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
unmount_stale() {
  local m
  for m in $(mounts_below "$rootfs"); do
    umount -R "$m" 2>/dev/null || umount -R -l "$m"
  done
}
# Every process whose root is the rootfs: what this run started in the
# chroot (a make interrupted by Ctrl-C or a kill of this script).
kill_chroot_processes() {
  local p sig pids
  for sig in TERM KILL; do
    pids=()
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/root" 2>/dev/null) == "$rootfs" ]] && pids+=("${p#/proc/}")
    done
    ((${#pids[@]})) || return 0
    kill "-$sig" "${pids[@]}" 2>/dev/null || true
    sleep 2
  done
}
on_exit() {
  local rc=$?
  kill_chroot_processes
  unmount_all
  say "done (exit $rc, $((SECONDS - start_s)) s; log: $log_file)"
}
trap on_exit EXIT
trap 'exit 130' INT TERM
mount_into() {  # mount_into TARGET mount-args...
  local target=$1
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}

# --- 1. the bare rootfs, cached as a tarball ---------------------------------
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >>"$log_file" 2>&1 ||
    { apt-get update -qq >>"$log_file" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >>"$log_file" 2>&1; } ||
    die "cannot install debootstrap"
fi
if [[ ${FRESH_REBOOTSTRAP:-0} == 1 || ! -s $tarball ]]; then
  mirror=$(host_debian_mirror)
  [[ -n $mirror ]] || die "no 'bookworm' deb source in the host's apt sources: which mirror?"
  bare=$(mktemp -d "$dir/bare.XXXXXX")
  chmod 755 "$bare"  # mktemp's 0700 would become the rootfs's "/".
  say "debootstrap --variant=minbase --include=make,git bookworm from $mirror"
  t=$SECONDS
  debootstrap --variant=minbase --include=make,git bookworm "$bare" "$mirror" >>"$log_file" 2>&1 ||
    { rm -rf --one-file-system "$bare"; die "debootstrap failed (see $log_file)"; }
  # Like a fresh machine: the host's suites (updates, security), empty apt
  # caches. (A fresh machine has lists only after its first apt-get update;
  # install_deps.sh runs one.)
  write_debian_sources "$bare" || die "cannot write the rootfs's apt sources"
  rm -rf "$bare"/var/cache/apt/archives/*.deb "$bare"/var/cache/apt/*.bin "$bare"/var/lib/apt/lists/*
  tar -C "$bare" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "$bare"
  say "bare rootfs made in $((SECONDS - t)) s, cached as $tarball ($(du -h "$tarball" | cut -f1))"
fi

unmount_stale
if [[ -n $(mounts_below "$rootfs") ]]; then die "something is still mounted below $rootfs"; fi
rm -rf --one-file-system "$rootfs"
mkdir -p "$rootfs"
t=$SECONDS
tar -C "$rootfs" --numeric-owner -xf "$tarball"
# "/" as on a real machine: a tarball cached before the chmod above has the
# 0700 of mktemp's directory, and then no user but root can reach /bin/sh
# (munge's postinst runs `su munge`: "su: failed to execute /bin/sh").
chmod 755 "$rootfs"
say "rootfs unpacked from $tarball in $((SECONDS - t)) s: $rootfs"
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true

# --- 2. the committed HEAD ---------------------------------------------------
# safe.directory: this runs as root; the repository may belong to someone else.
hgit() { git -c safe.directory='*' -C "$repo" "$@"; }
commit=$(hgit rev-parse --verify "$rev^{commit}") || die "no commit '$rev' in $repo"
subject=$(hgit log -1 --format=%s "$commit")
git -c safe.directory='*' clone -q --no-checkout "file://$repo" "$rootfs/root/deltaserve" >>"$log_file" 2>&1 ||
  die "git clone of $repo failed"
git -C "$rootfs/root/deltaserve" -c advice.detachedHead=false checkout -q "$commit" >>"$log_file" 2>&1 ||
  die "git checkout $commit failed"
say "cloned $repo at $commit ($subject) into /root/deltaserve"
if [[ -n $(hgit status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  say "note: the working tree has uncommitted changes; they are not tested (committed $commit is)"
fi

# --- 3. mounts ----------------------------------------------------------------
# As on a booted machine: "/" is a mount point (`ip netns exec` and `ip -n`
# remount it as a slave: EINVAL on a plain directory), and /sys carries the
# host's cgroup hierarchies, v1 or v2, as systemd mounts them (slurmd's
# cgroup plugin refuses to start without them).
mount_into "$rootfs" --bind "$rootfs"
# Private: a mount made inside (ip netns's /run/netns) must not propagate to
# the directory underneath, where it would outlive the run's unmounting.
mount --make-private "$rootfs"
mount_into "$rootfs/proc" -t proc proc
mount_into "$rootfs/sys" --rbind /sys
mount --make-rslave "$rootfs/sys"  # unmounting it must not unmount the host's /sys/*
mount_into "$rootfs/dev" --rbind /dev
mount --make-rslave "$rootfs/dev"  # unmounting it must not unmount the host's /dev/*
if [[ ${FRESH_APT_CACHE:-1} == 1 ]]; then
  mkdir -p "$apt_cache/partial"
  mount_into "$rootfs/var/cache/apt/archives" --bind "$apt_cache"
fi

# Runs a command in the chroot as root, with a clean environment, logged.
in_chroot() {
  chroot "$rootfs" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    JOBS="$jobs" DELTASERVE_SKIP_CONTAINER_TEST=1 \
    nice -n "$niceness" bash -c "cd /root/deltaserve && $1"
}
# Prefixes each line with the seconds since the start of this script.
stamp() {
  local line
  while IFS= read -r line; do printf '[%5ds] %s\n' $((SECONDS - start_s)) "$line"; done
}
packages_in_rootfs() { chroot "$rootfs" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort; }

before=$(packages_in_rootfs)
summary=()
status=0
for mode in "${modes[@]}"; do
  case $mode in
    test) cmd="make test JOBS=$jobs" ;;
    demo) cmd="make demo JOBS=$jobs" ;;
    # make build: install_deps.sh's build profile, no tests or benchmarks.
    build) cmd="make build JOBS=$jobs" ;;
  esac
  say "mode $mode: chroot $rootfs: $cmd"
  echo "===== mode $mode: $cmd" >>"$log_file"
  t=$SECONDS
  # In the background, so that a signal to this script is handled at once
  # (the trap then stops what runs in the chroot), not after make ends.
  (
    set +e
    in_chroot "$cmd" 2>&1 | stamp >>"$log_file"
    exit "${PIPESTATUS[0]}"
  ) &
  set +e
  wait $!
  rc=$?
  set -e
  line="mode $mode: exit $rc after $((SECONDS - t)) s"
  say "$line"
  summary+=("$line")
  if ((rc != 0)); then
    status=$rc
    break  # later modes build the same tree: they would fail the same way
  fi
done

# --- 4. summary ----------------------------------------------------------------
fail_tail=""
if ((status != 0)); then
  fail_tail=$(grep -v '^fresh_machine_test\|^=====\|^ *$' "$log_file" | tail -30 | sed 's/^/  /')
fi
{
  echo
  echo "================ summary ================"
  echo "commit:   $commit ($subject)"
  echo "rootfs:   $rootfs (debootstrap --variant=minbase --include=make,git bookworm)"
  echo "modes:    ${modes[*]}"
  printf '%s\n' "${summary[@]}"
  echo "elapsed:  $((SECONDS - start_s)) s in all"
  echo "install_deps.sh asked for (its own log line):"
  grep -h 'install_deps: installing' "$log_file" | sed 's/^\[ *[0-9]*s\] /  /' || echo "  (nothing)"
  after=$(packages_in_rootfs)
  added=$(comm -13 <(echo "$before") <(echo "$after"))
  echo "apt installed $(grep -c . <<<"$added" || true) packages with their dependencies (list: $log_file.packages)"
  echo "$added" >"$log_file.packages"
  # ctest's verdict and the container test's own explanation of its skip.
  if grep -q 'tests passed\|tests failed' "$log_file"; then
    echo "ctest (last lines):"
    # From ctest's verdict to the end of that make's output.
    awk '/^fresh_machine_test|^=====/ { if (p) exit } /% tests passed/ { p = 1 } p' "$log_file" |
      sed 's/^\[ *[0-9]*s\] /  /' | grep -v '^  g\?make\|^ *$' | head -40
  fi
  last_test=$rootfs/root/deltaserve/build/Testing/Temporary/LastTest.log
  if [[ -f $last_test ]]; then
    echo "container_image's output:"
    awk '/^[0-9]+\/[0-9]+ Test: container_image/ { p = 1 } p && /^Test time|^<end of output>/ { exit } p' "$last_test" |
      grep 'container_test' | sed 's/^/  /' || true
  fi
  if grep -q '^\[ *[0-9]*s\] demo: ' "$log_file"; then
    echo "demo (last lines):"
    grep '^\[ *[0-9]*s\] demo: ' "$log_file" | tail -5 | sed 's/^\[ *[0-9]*s\] /  /'
  fi
  if ((status != 0)); then
    echo "last 30 lines of the failing run:"
    echo "$fail_tail"
  fi
} | tee -a "$log_file" >&3
exit "$status"
}
