#!/usr/bin/env bash
# Installs the build tree into a fresh prefix, builds tests/consumer (an
# out-of-tree project: find_package(deltaserve CONFIG), deltaserve::client)
# against it, starts the installed deltaserve on 127.0.0.1:0 and runs the
# consumer against it. Fails, saying which step, if any step fails.
#   check_consumer.sh BUILD_DIR WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: check_consumer.sh BUILD_DIR WORK_DIR}
work=${2:?usage: check_consumer.sh BUILD_DIR WORK_DIR}
rm -rf "$work" && mkdir -p "$work"
prefix=$work/prefix
step() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

step "install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "cmake --install"; }
step "configure and build the consumer"
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "find_package(deltaserve CONFIG) in an outside project"; }
cmake --build "$work/build" -j 2 >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "building against deltaserve::client"; }

step "run it against the installed server"
# The server's stdout is read on fd 3: its first line is "listening on ADDR".
exec 3< <(exec "$prefix/bin/deltaserve" --listen=127.0.0.1:0 2>"$work/server.err")
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
line=
read -r -t 20 -u 3 line || true
[[ $line == "listening on "* ]] ||
  { cat "$work/server.err"; fail "the server did not print 'listening on ADDR' within 20 s (got '$line')"; }
address=${line#listening on }
output=$("$work/build/consumer" "$address") || fail "the consumer failed: $output"
echo "$output"
[[ $output == "consumer: version 0, outputs 1 x 2" ]] || fail "unexpected consumer output: $output"
echo "ok: an outside CMake project builds against deltaserve::client and talks to the server"
