#!/usr/bin/env bash
# Installs deltaserve's dependencies from Debian 12 packages.
#
#   bash scripts/install_deps.sh [PROFILE]
#
#   build  what configuring and compiling the server, client, CLI and
#          simulators needs (`make build`, the image's build stage); no
#          GoogleTest or Google Benchmark: configure with
#          -DDELTASERVE_BUILD_TESTS=OFF -DDELTASERVE_BUILD_BENCHMARKS=OFF
#   test   build + everything `make test` and `make demo` use: GoogleTest,
#          gmock, Google Benchmark, clang-14 with libFuzzer and the sanitizer
#          runtimes, the Python client's packaging tools, plots, chromium
#          (headless, the live page's browser test), the
#          container test's engine (podman, netavark + iptables) and tools,
#          Slurm and munge for the Slurm test
#   all    the same as test (the default; `make test` and `make demo` use it)
#   torch  the same as test (kept for old scripts: python3-torch is now in the
#          test profile, since tests compare with torch autograd)
#
# The lists were found by running `make test` and `make demo` in a fresh
# debootstrap rootfs (scripts/fresh_machine_test.sh, docs/fresh_machine.md),
# not by reading.
#
# Idempotent and fast when nothing is missing: one dpkg-query, no apt.
# Runs as root (or with sudo available) on Debian 12 (bookworm), also inside a
# chroot (no service is started: see policy-rc.d below).
set -euo pipefail

profile=${1:-all}
build_packages=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libeigen3-dev
  prometheus-cpp-dev
  # The metrics endpoint's HTTP server (/metrics, the live page and its API);
  # prometheus-cpp-dev pulls it in too, named because deltaserve links it.
  libcivetweb-dev
  # The live page's charts: dygraph.min.js and its CSS, built into the binary
  # (server/web/embed_files.cmake), so the page works air-gapped.
  libjs-dygraphs
  # TLS certificate checks and token hashing (OpenSSL's libcrypto; libgrpc-dev
  # depends on it too, named here because deltaserve links it directly).
  libssl-dev
  # The build generates the Python stubs; grpc_tools.protoc imports
  # pkg_resources, which python3-grpc-tools does not depend on.
  python3 python3-grpc-tools python3-pkg-resources
)
test_packages=(
  # Tests and benchmarks (DELTASERVE_BUILD_TESTS / DELTASERVE_BUILD_BENCHMARKS).
  libgtest-dev libgmock-dev libbenchmark-dev
  git clang-format
  # clang -Wthread-safety check, libFuzzer and sanitizer builds.
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  # /usr/bin/llvm-symbolizer: without it ASan/TSan/libFuzzer reports have no
  # function names or lines ("invalid path to external symbolizer!").
  llvm
  # Python client tests; the client is also a pip-installable package
  # (installed into a venv by the tests).
  python3-grpcio python3-protobuf python3-numpy
  python3-venv python3-pip python3-setuptools
  # The demo's learning-curve plot.
  gnuplot-nox
  # The live page's browser test (tests/web/browser_test.py: headless) and
  # the README's screenshot of it.
  chromium
  # TLS test certificates (tests/security, tests/python/test_security.py,
  # scripts/make_secrets.sh for the container test).
  openssl
  # Container image test (scripts/container_test.sh) and manifest checks.
  # netavark runs iptables to set up a container network ("netavark: No such
  # file or directory" without it); podman only Recommends/Suggests these.
  podman runc netavark aardvark-dns iptables
  # `podman kube play` (scripts/kube_test.sh) starts each pod's infra
  # container with catatonit as its init; podman only Recommends it.
  catatonit
  debootstrap python3-yaml
  # Slurm test (tests/slurm): munged, slurmctld, slurmd and the client
  # commands (sbatch, scontrol, ...), started by the test itself, not by
  # systemd; policy-rc.d below keeps the packages from starting their services.
  slurm-wlm munge
  # The cost-of-distance benchmark and its test (tools/bench_distance.py):
  # ip netns, veth pairs and tc (tbf) come from iproute2, which a minimal
  # Debian does not have.
  iproute2
  # Optional: faster rebuilds (the image's build stage uses it too).
  ccache
  # The PyTorch references (tools/torch_*.py) and the tests that compare
  # with torch autograd (tests/python/test_algorithms.py).
  python3-torch
)
case "$profile" in
  build) packages=("${build_packages[@]}") ;;
  test | all) packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  torch) packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  *)
    echo "install_deps: unknown profile \"$profile\"; expected build, test, all or torch" >&2
    exit 2
    ;;
esac

# One dpkg-query for all of them ("ii" = installed); unknown names print
# nothing on stdout, so they count as missing. (No process substitution: a
# chroot may have no /dev/fd.)
declare -A installed=()
status_lines=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true)
while read -r name abbrev; do
  [[ $abbrev == ii ]] && installed[${name%%:*}]=1
done <<<"$status_lines"
missing=()
for p in "${packages[@]}"; do
  [[ -n ${installed[$p]:-} ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install_deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "install_deps: run as root or install sudo" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# In a chroot (or a container) there is no init to start services with:
# tell invoke-rc.d not to try, for this install only, if nobody else did.
policy_rc=/usr/sbin/policy-rc.d
added_policy=0
in_chroot() {
  # / is not the root of PID 1 (needs root to read /proc/1/root).
  [[ -r /proc/1/root/. ]] && [[ $(stat -c %d:%i /) != $(stat -c %d:%i /proc/1/root/. 2>/dev/null) ]]
}
if [[ ! -e $policy_rc ]] && { in_chroot || [[ ! -d /run/systemd/system ]]; }; then
  "${sudo_cmd[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy_rc && chmod 755 $policy_rc"
  added_policy=1
  trap '"${sudo_cmd[@]}" rm -f "$policy_rc"' EXIT
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
if ((added_policy)); then
  "${sudo_cmd[@]}" rm -f "$policy_rc"
  trap - EXIT
fi
echo "install_deps: installed ${missing[*]}" >&2
