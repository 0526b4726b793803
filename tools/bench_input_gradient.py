#!/usr/bin/python3
"""Long InputGradients against everything else: what a large model's backward passes do to the
other calls of the same server, for two or more `deltaserve` binaries side by side.

Each server gets two models: "big" (64 -> 1024 -> 1024 -> 64, 1.18M multiply-adds a row) and
"small" (4 -> 16 -> 2). --heavy client threads call InputGradient on "big" with --rows rows in a
loop (each one a long product); one more thread times 1-row Forwards of "small", --probe-rate
a second (paced, so that every binary serves as many of them and the CPU per InputGradient
compares). A round runs each binary once for --seconds, in the order given; rounds repeat
(A, B, A, B, ...), and the medians over the rounds are printed as a Markdown table:

    InputGradients/s, the server's CPU ms per InputGradient (its utime + stime from /proc over the
    same window), and the small Forward's median / p99 latency in ms.

The machine's `uptime` and the steal column of `vmstat 1 3` are printed before and after.

    PYTHONPATH=client/python:build/python /usr/bin/python3 tools/bench_input_gradient.py \\
        --binaries /tmp/deltaserve_before build/server/deltaserve --rounds 6

docs/benchmarks.md, "Long InputGradients", has a run and the commands that built its binaries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "client", "python"), os.path.join(ROOT, "build", "python")]

from deltaserve_client.client import TrainerClient  # noqa: E402
from deltaserve_client.local_server import LocalServer  # noqa: E402

CONFIG = """
models { name: "big" input_dim: 64
  layers { units: 1024 activation: ACTIVATION_TANH }
  layers { units: 1024 activation: ACTIVATION_TANH }
  layers { units: 64 activation: ACTIVATION_IDENTITY }
  optimizer { kind: SGD learning_rate: 0.01 } }
models { name: "small" input_dim: 4
  layers { units: 16 activation: ACTIVATION_TANH }
  layers { units: 2 activation: ACTIVATION_IDENTITY }
  optimizer { kind: SGD learning_rate: 0.01 } }
"""


def server_cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(binary: str, heavy: int, rows: int, seconds: float,
            probe_rate: float) -> Dict[str, float]:
    with LocalServer(binary, CONFIG) as server:
        stop = threading.Event()
        counts = [0] * heavy
        errors: List[BaseException] = []

        def gradients(k: int) -> None:
            try:
                client = TrainerClient(server.address, model="big", timeout=60)
                x = np.random.default_rng(k).random((rows, 64), dtype=np.float32)
                d = np.ones((rows, 64), np.float32)
                client.input_gradient(x, d)  # connected and warm before the window
                while not stop.is_set():
                    client.input_gradient(x, d)
                    counts[k] += 1
            except BaseException as e:  # reported below: a failed call fails the run
                errors.append(e)
                stop.set()

        threads = [threading.Thread(target=gradients, args=(k,)) for k in range(heavy)]
        small = TrainerClient(server.address, model="small", timeout=60)
        x = np.zeros((1, 4), np.float32)
        small.forward(x)
        for t in threads:
            t.start()
        cpu0, counted0 = server_cpu_seconds(server.process.pid), sum(counts)
        latencies = []
        start = time.monotonic()
        end = start + seconds
        next_probe = start
        while next_probe < end and not stop.is_set():
            time.sleep(max(0.0, next_probe - time.monotonic()))  # pacing, not synchronisation
            t0 = time.perf_counter()
            small.forward(x)
            latencies.append((time.perf_counter() - t0) * 1e3)
            next_probe += 1.0 / probe_rate
        time.sleep(max(0.0, end - time.monotonic()))
        cpu = server_cpu_seconds(server.process.pid) - cpu0
        done = sum(counts) - counted0
        stop.set()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"{binary}: an InputGradient failed: {errors[0]!r}")
        if done == 0 or not latencies:
            raise RuntimeError(f"{binary}: no InputGradient or no Forward finished in {seconds} s")
        latencies.sort()
        return {
            "gradients_per_s": done / seconds,
            "cpu_ms_per_gradient": 1e3 * cpu / done,
            "forward_p50_ms": statistics.median(latencies),
            "forward_p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "forwards": float(len(latencies)),
        }


def machine() -> str:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    vmstat = subprocess.run(["vmstat", "1", "3"], capture_output=True, text=True).stdout.splitlines()
    header = vmstat[1].split()
    steal = [line.split()[header.index("st")] for line in vmstat[2:]]
    return f"{uptime}; vmstat steal: {' '.join(steal)}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binaries", nargs="+", required=True, help="deltaserve binaries to compare")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--heavy", type=int, default=4, help="threads calling InputGradient on big")
    p.add_argument("--rows", type=int, default=64, help="rows per InputGradient")
    p.add_argument("--seconds", type=float, default=6.0, help="window of each run")
    p.add_argument("--probe-rate", type=float, default=100.0,
                   help="small Forwards a second (fewer when one takes longer)")
    a = p.parse_args()
    for binary in a.binaries:
        if not os.access(binary, os.X_OK):
            p.error(f"{binary}: not an executable file")
    print("before:", machine(), flush=True)
    results: Dict[str, List[Dict[str, float]]] = {b: [] for b in a.binaries}
    for r in range(a.rounds):
        for binary in a.binaries:
            run = one_run(binary, a.heavy, a.rows, a.seconds, a.probe_rate)
            results[binary].append(run)
            print(f"round {r + 1} {binary}: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in run.items()), flush=True)
    print("after:", machine())
    print(f"\n{a.heavy} threads of {a.rows}-row InputGradients on big, medians of {a.rounds} "
          f"rounds of {a.seconds:g} s:\n")
    print("| binary | InputGradients/s | server CPU ms per InputGradient "
          "| small Forward p50 ms | p99 ms | Forwards |")
    print("|---|---:|---:|---:|---:|---:|")
    for binary, runs in results.items():
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        print(f"| {binary} | {med['gradients_per_s']:.0f} | {med['cpu_ms_per_gradient']:.2f} "
              f"| {med['forward_p50_ms']:.2f} | {med['forward_p99_ms']:.2f} "
              f"| {med['forwards']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
