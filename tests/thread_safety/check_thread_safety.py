#!/usr/bin/env python3
"""Checks deltaserve's lock annotations with clang's -Wthread-safety.

GCC ignores ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED; clang checks them.
For every translation unit of ours in BUILD/compile_commands.json (not
generated code, not third-party), this reruns the compile command with
clang++-14 -fsyntax-only -Wthread-safety -Wthread-safety-beta -Werror, and
fails listing every file with a finding. A clang that is missing fails the
check (never skips it).

Lock order: ABSL_ACQUIRED_BEFORE / ABSL_ACQUIRED_AFTER are checked only under
-Wthread-safety-beta (clang 14), and only where one function body holds one
mutex while it takes the other. Before the tree is checked, a canary that
takes two mutexes against their declared order must fail with "must be
acquired before": if it compiles, the flags no longer check lock order and
the check fails.

    check_thread_safety.py BUILD_DIR REPO_DIR [CLANG]
"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys

OURS = ("base/", "model/", "proto/wire", "server/", "client/", "sim/", "tests/server/")
# GCC-only flags clang 14 rejects or warns about.
DROP = {"-fno-semantic-interposition"}
FLAGS = ["-fsyntax-only", "-Wthread-safety", "-Wthread-safety-beta", "-Werror",
         "-Wno-unknown-warning-option"]
# Takes `outer` while holding `inner`, against the declared order.
LOCK_ORDER_CANARY = """
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
struct Canary {
  absl::Mutex outer;
  absl::Mutex inner ABSL_ACQUIRED_AFTER(outer);
  void Inverted() {
    absl::MutexLock a(&inner);
    absl::MutexLock b(&outer);
  }
};
"""


def clang_command(entry, clang):
    args = entry.get("arguments") or shlex.split(entry["command"])
    out = [clang]
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg == "-o":
            skip = True
            continue
        if arg in DROP or arg == "-c":
            continue
        out.append(arg)
    return out + FLAGS


def lock_order_is_checked(clang):
    """True if `clang` with FLAGS rejects LOCK_ORDER_CANARY for its order."""
    run = subprocess.run([clang, "-std=c++17", "-x", "c++", "-"] + FLAGS,
                         input=LOCK_ORDER_CANARY, capture_output=True, text=True)
    return run.returncode != 0 and "must be acquired before" in run.stderr


def main():
    build, repo = sys.argv[1], os.path.realpath(sys.argv[2])
    clang = sys.argv[3] if len(sys.argv) > 3 else "clang++-14"
    try:
        version = subprocess.run([clang, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"FAIL: {clang} is not usable ({e}); scripts/install_deps.sh installs clang-14")
        return 1
    print(version.stdout.splitlines()[0])
    if not lock_order_is_checked(clang):
        print(f"FAIL: {clang} {' '.join(FLAGS)} accepts a lock-order violation "
              "(tests/thread_safety/check_thread_safety.py LOCK_ORDER_CANARY)")
        return 1
    entries = json.load(open(os.path.join(build, "compile_commands.json")))
    units = []
    for entry in entries:
        path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
        rel = os.path.relpath(path, repo)
        if rel.startswith(OURS) and path.endswith(".cc"):
            units.append((rel, entry))
    if not units:
        print(f"FAIL: no translation units of ours in {build}/compile_commands.json")
        return 1

    def check(unit):
        rel, entry = unit
        run = subprocess.run(clang_command(entry, clang), cwd=entry["directory"],
                             capture_output=True, text=True)
        return rel, run.returncode, run.stderr

    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        # By path only: a file compiled more than once (model/dense_rows_kernel.cc,
        # once per instruction set) is listed, and checked, once per compilation.
        for rel, code, stderr in pool.map(check, sorted(units, key=lambda unit: unit[0])):
            if code != 0:
                failed.append(rel)
                print(f"--- {rel}\n{stderr}")
    print(f"{len(units) - len(failed)} of {len(units)} translation units pass -Wthread-safety")
    if failed:
        print("FAIL: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
