#!/usr/bin/env bash
# Installs deltaserve's dependencies from Debian 12 packages.
#
#   bash scripts/install_deps.sh [PROFILE]
#
#   build  what configuring and compiling the tree needs (the image's build stage)
#   all    build + what `make test` and `make demo` run: Python client, plots,
#          the container test's engine and tools (the default)
#   torch  all + python3-torch, for tools/make_golden.py and tools/torch_bench.py
#          (DELTASERVE_WITH_TORCH=1 also adds it)
#
# Idempotent: packages already present are skipped without touching apt.
# Must run as root (or with sudo available) on Debian 12 (bookworm).
set -euo pipefail

profile=${1:-all}
build_packages=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
  prometheus-cpp-dev
  # The build generates the Python stubs; grpc_tools.protoc imports
  # pkg_resources, which python3-grpc-tools does not depend on.
  python3 python3-grpc-tools python3-pkg-resources
)
test_packages=(
  git clang-format
  python3-grpcio python3-protobuf python3-numpy
  gnuplot-nox
  # Container image test (scripts/container_test.sh) and manifest checks.
  podman runc netavark aardvark-dns debootstrap python3-yaml
)
case "$profile" in
  build) packages=("${build_packages[@]}") ;;
  all) packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  torch) packages=("${build_packages[@]}" "${test_packages[@]}" python3-torch) ;;
  *)
    echo "install_deps: unknown profile \"$profile\"; expected build, all or torch" >&2
    exit 2
    ;;
esac
if [[ "${DELTASERVE_WITH_TORCH:-0}" == 1 && "$profile" != torch ]]; then
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
