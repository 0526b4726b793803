# shellcheck shell=bash
# Sourced by scripts/container_base.sh and scripts/fresh_machine_test.sh:
# the host's Debian 12 apt sources, and a new rootfs set up to use the same.
#
#   host_debian_sources             prints "URI SUITE COMPONENTS..." per suite
#   host_debian_mirror              the URI of the host's "bookworm" suite
#   write_debian_sources ROOTFS     the host's bookworm* suites as ROOTFS's only
#                                   apt source (deb822), and Check-Valid-Until
#                                   off if the host's apt has it off

# Prints "URI SUITE COMPONENTS..." for every bookworm* suite of a deb source
# in the host's apt configuration (one-line sources.list and deb822 .sources).
host_debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    # deb [options] URI SUITE COMPONENT...
    sed -E -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk '$1 == "deb" && $3 ~ /^bookworm/ { $1 = ""; sub(/^ /, ""); print }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no") {
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (s[j] ~ /^bookworm/) print u[i], s[j], comps
        }
        types = uris = suites = comps = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ /, "")
        if (key == "types") types = $0
        else if (key == "uris") uris = $0
        else if (key == "suites") suites = $0
        else if (key == "components") comps = $0
        else if (key == "enabled") enabled = tolower($0) }
      END { flush() }' "$f"
  done | sort -u
}

# The URI of the host's plain "bookworm" suite, or nothing.
host_debian_mirror() {
  host_debian_sources | awk '$2 == "bookworm" { print $1; exit }'
}

# Replaces ROOTFS's apt sources with the host's bookworm* suites (updates,
# security) and mirrors.
write_debian_sources() {
  local rootfs=$1 sources
  sources=$(host_debian_sources)
  [[ -n $sources ]] || return 1
  rm -f "$rootfs/etc/apt/sources.list"
  mkdir -p "$rootfs/etc/apt/sources.list.d" "$rootfs/etc/apt/apt.conf.d"
  awk '{ comps = $3; for (i = 4; i <= NF; i++) comps = comps " " $i
         printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", $1, $2, comps }' \
    <<<"$sources" >"$rootfs/etc/apt/sources.list.d/debian.sources"
  # A snapshot mirror serves Release files past their Valid-Until date; if the
  # host's apt accepts that, the rootfs's must too.
  if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false"'; then
    echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99deltaserve-snapshot"
  fi
}
