#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time over its committed seed
# corpus and fails on any crash, sanitizer report, timeout, leak or violated
# invariant (each of which libFuzzer turns into a non-zero exit and a saved
# reproducer). Prints executions per second and the coverage libFuzzer
# reached (cov: edges, ft: features) from its final stats.
#
#   run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS MAX_LEN
#
# SECONDS is overridden by the environment variable DELTASERVE_FUZZ_SECONDS
# when set. New inputs go to WORK_DIR/corpus (kept between runs, never to the
# committed seeds); reproducers to WORK_DIR/crash-*, leak-*, timeout-*, oom-*.
set -euo pipefail
fuzzer=${1:?usage: run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS MAX_LEN}
seeds=${2:?SEED_DIR}
work=${3:?WORK_DIR}
seconds=${DELTASERVE_FUZZ_SECONDS:-${4:?SECONDS}}
max_len=${5:?MAX_LEN}
name=$(basename "$fuzzer")

if [[ ! -x $fuzzer ]]; then
  echo "FAIL: $fuzzer is not built (the asan_build ctest entry builds it)"
  exit 1
fi
if ! compgen -G "$seeds/*" >/dev/null; then
  echo "FAIL: no seeds in $seeds"
  exit 1
fi
mkdir -p "$work/corpus"
rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*
log="$work/fuzz.log"

# detect_leaks: LeakSanitizer works here (no ptrace restrictions needed for
# libFuzzer's in-process leak check). UBSan findings abort
# (-fno-sanitize-recover=undefined at compile time; halt_on_error here too).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "$name: ${seconds} s, -max_len=$max_len, seeds $seeds ($(ls "$seeds" | wc -l) files)"
set +e
"$fuzzer" -max_total_time="$seconds" -max_len="$max_len" -timeout=30 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds" >"$log" 2>&1
status=$?
set -e

done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
execs=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -1)
units=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -1)
artifacts=$(compgen -G "$work/crash-*" || true; compgen -G "$work/leak-*" || true;
            compgen -G "$work/timeout-*" || true; compgen -G "$work/oom-*" || true)
if [[ $status -ne 0 || -n $artifacts || -z $done_line ]]; then
  tail -n 120 "$log"
  echo "FAIL: $name exited $status after ${units:-?} inputs; reproducer(s): ${artifacts:-none}"
  echo "  replay: $fuzzer ${artifacts%%$'\n'*}"
  exit 1
fi
grep -E 'INITED' "$log" | tail -1
echo "$done_line"
echo "$name: ok, $units inputs in ${seconds} s, ${execs} exec/s," \
     "$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$done_line")"
