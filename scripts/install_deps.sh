#!/usr/bin/env bash
# Installs deltaserve's build, test and demo dependencies from Debian 12 packages.
# Idempotent: packages already present are skipped without touching apt.
# Must run as root (or with sudo available) on Debian 12 (bookworm).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
  prometheus-cpp-dev
  python3-grpcio python3-grpc-tools python3-protobuf python3-numpy
  gnuplot-nox
  # Container image test (scripts/container_test.sh) and manifest checks.
  podman runc netavark aardvark-dns debootstrap python3-yaml
  # grpc_tools.protoc imports pkg_resources; python3-grpc-tools does not depend on it.
  python3-pkg-resources
)
if [[ "${DELTASERVE_WITH_TORCH:-0}" == 1 ]]; then
  packages+=(python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
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
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
