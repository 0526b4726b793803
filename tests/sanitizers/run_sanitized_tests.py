#!/usr/bin/env python3
"""Runs some of a sanitizer build's gtest tests through that build's ctest.

Selects every ctest test of BUILD_DIR whose command is one of the named
binaries (and, with --name-regex, whose name matches), then runs exactly
those with ctest -R. Fails if a binary contributes no test at all (a
selection that silently shrank to nothing), and if any selected test fails.

    run_sanitized_tests.py BUILD_DIR BINARY... [--name-regex RE] [-j N]

The sanitizer options come from the environment (the ctest entry sets
ASAN_OPTIONS / UBSAN_OPTIONS / TSAN_OPTIONS).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

CMAKE_REGEX_SPECIAL = set("^$.[]*+?()|\\")


def cmake_escape(name):
    return "".join("\\" + c if c in CMAKE_REGEX_SPECIAL else c for c in name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--name-regex", default=None)
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    listing = subprocess.run(["ctest", "--show-only=json-v1"], cwd=args.build,
                             capture_output=True, text=True)
    if listing.returncode != 0:
        print(f"FAIL: ctest --show-only in {args.build}: {listing.stderr}")
        return 1
    tests = json.loads(listing.stdout).get("tests", [])
    wanted = set(args.binaries)
    name_re = re.compile(args.name_regex) if args.name_regex else None
    selected = {b: [] for b in wanted}
    for test in tests:
        command = test.get("command") or []
        if not command:
            continue
        binary = os.path.basename(command[0])
        if binary in wanted and (name_re is None or name_re.search(test["name"])):
            selected[binary].append(test["name"])
    empty = sorted(b for b, names in selected.items() if not names)
    if empty:
        print("FAIL: no ctest tests selected from " + ", ".join(empty) +
              f" in {args.build} (not built, or gtest discovery failed?)")
        return 1
    names = sorted(n for ns in selected.values() for n in ns)
    for binary in sorted(selected):
        print(f"{binary}: {len(selected[binary])} tests")
    regex = "^(" + "|".join(cmake_escape(n) for n in names) + ")$"
    start = time.monotonic()
    run = subprocess.run(["ctest", "-R", regex, "-j", str(args.jobs), "--output-on-failure",
                          "--timeout", "600"], cwd=args.build, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    # ctest echoes the (long) regex nowhere; print its report as it is.
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    summary = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", run.stdout)
    if summary is None or int(summary.group(3)) != len(names):
        print(f"FAIL: expected ctest to run {len(names)} tests, its summary says "
              f"{summary.group(0) if summary else 'nothing'}")
        return 1
    print(f"{len(names)} sanitized tests in {elapsed:.0f} s, exit {run.returncode}")
    if run.returncode != 0:
        print("FAIL: sanitized tests failed (see the output above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
