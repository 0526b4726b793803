#!/usr/bin/env bash
# Makes sure the container engine has the Dockerfile's base image,
# debian:bookworm-slim, without reaching a container registry.
#
#   scripts/container_base.sh ENGINE        # ENGINE: docker or podman
#
# If the image is already in the engine's local store, nothing happens.
# Otherwise a minimal Debian 12 root file system is made with debootstrap from
# the Debian mirror this machine's apt already uses (so the image's own
# apt-get reaches the same mirror), trimmed like the official -slim image, and
# imported as docker.io/library/debian:bookworm-slim. The tarball is cached in
# $DELTASERVE_CACHE_DIR (default /var/cache/deltaserve), so a later run on the
# same machine (a fresh engine store, a CI clone) only imports it.
# Needs root (debootstrap).
set -euo pipefail

engine=${1:?usage: container_base.sh docker|podman}
image=docker.io/library/debian:bookworm-slim
cache_dir=${DELTASERVE_CACHE_DIR:-/var/cache/deltaserve}
tarball=$cache_dir/debian-bookworm-slim-rootfs.tar

log() { echo "container_base: $*" >&2; }

if "$engine" image inspect "$image" >/dev/null 2>&1 ||
   "$engine" image inspect debian:bookworm-slim >/dev/null 2>&1; then
  exit 0
fi

# host_debian_sources, host_debian_mirror, write_debian_sources.
# shellcheck source=scripts/debian_sources.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian_sources.sh"

make_rootfs_tarball() {
  [[ $(id -u) == 0 ]] || { log "debootstrap needs root"; exit 1; }
  command -v debootstrap >/dev/null || { log "debootstrap missing: run scripts/install_deps.sh"; exit 1; }
  local mirror rootfs
  mirror=$(host_debian_mirror)
  if [[ -z $mirror ]]; then
    log "no 'bookworm' deb source in /etc/apt/sources.list{,.d}: cannot tell which Debian mirror to use"
    exit 1
  fi
  rootfs=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 ||
    { tail -20 "$cache_dir/debootstrap.log" >&2; log "debootstrap failed (log: $cache_dir/debootstrap.log)"; exit 1; }

  # The same suites (updates, security) and mirrors as the host.
  write_debian_sources "$rootfs"
  # Trim like debian:*-slim: no docs, man pages or translations, apt lists
  # and caches left empty.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
  find "$rootfs/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
}

mkdir -p "$cache_dir"
if [[ ! -s $tarball ]]; then
  make_rootfs_tarball
fi
log "importing $tarball as $image"
"$engine" import --change 'CMD ["bash"]' - "$image" <"$tarball" >/dev/null
