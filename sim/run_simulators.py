#!/usr/bin/python3
"""Runs N simulator processes against one deltaserve server and aggregates them.

Each simulator prints one line per episode (see cartpole_sim.cc):

    episode=12 return=37 version=5 sim=3 t=0.412

This driver starts the N processes (seeds seed*1000+i), merges their lines
in arrival order, prints progress about once a second (episodes, average
return of the last --window episodes across all simulators, model version,
updates/s, steps/s), appends every episode to a CSV, and stops when

  * the average over the last --window episodes reaches --target (solved), or
  * --time-limit seconds have passed, or
  * every simulator has exited.

It always terminates the simulators it started. The last line on stdout is

    result solved=1 train_seconds=4.21 startup_seconds=0.08 episodes=... avg=...

train_seconds counts from the first episode line to the solving one;
startup_seconds from spawning to the first episode line. Exit code 0 if
solved (or, without --target, if every simulator exited with 0), else 1.
"""

import argparse
import collections
import os
import selectors
import signal
import subprocess
import sys
import time


def parse_fields(line):
    """'a=1 b=x' -> {'a': '1', 'b': 'x'}; words without '=' are ignored."""
    fields = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


class Aggregate:
    """Episodes across simulators, in arrival order."""

    def __init__(self, window):
        self.window = collections.deque(maxlen=window)
        self.episodes = 0
        self.steps = 0
        self.version = 0
        self.window_sum = 0

    def add(self, ret, version):
        if len(self.window) == self.window.maxlen:
            self.window_sum -= self.window[0]
        self.window.append(ret)
        self.window_sum += ret
        self.episodes += 1
        self.steps += ret  # CartPole: reward 1 per step
        self.version = max(self.version, version)

    def average(self):
        return self.window_sum / len(self.window) if self.window else 0.0

    def full(self):
        return len(self.window) == self.window.maxlen


def run(args, extra):
    sims = []
    spawn_time = time.monotonic()
    sel = selectors.DefaultSelector()
    for i in range(args.num):
        cmd = [args.sim, "--server=" + args.server, "--sim=%d" % i,
               "--seed=%d" % (args.seed * 1000 + i)]
        if args.actions:
            cmd.append("--actions=" + args.actions)
        cmd += extra
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
        sims.append(proc)
        sel.register(proc.stdout, selectors.EVENT_READ, data=[proc, b""])

    agg = Aggregate(args.window)
    csv = open(args.csv, "w") if args.csv else None
    if csv:
        csv.write("seconds,episode,sim,return,avg_return,version\n")
    first_time = None
    solved_time = None
    last_report = spawn_time
    last_version, last_steps, last_t = 0, 0, spawn_time
    open_pipes = len(sims)
    deadline = spawn_time + args.time_limit if args.time_limit > 0 else None
    summaries = []

    def report(now):
        nonlocal last_version, last_steps, last_t
        dt = max(now - last_t, 1e-9)
        since = now - (first_time or now)
        print("[%6.1fs] episodes=%d avg_return_last%d=%.1f version=%d updates/s=%.0f "
              "steps/s=%.0f" % (since, agg.episodes, args.window, agg.average(), agg.version,
                                (agg.version - last_version) / dt, (agg.steps - last_steps) / dt),
              flush=True)
        last_version, last_steps, last_t = agg.version, agg.steps, now

    try:
        while open_pipes > 0 and solved_time is None:
            timeout = 0.25
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            for key, _ in sel.select(timeout):
                proc, pending = key.data
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                pending += chunk
                *lines, key.data[1] = pending.split(b"\n")
                now = time.monotonic()
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    if line.startswith("summary"):
                        summaries.append(line)
                        continue
                    fields = parse_fields(line)
                    if "episode" not in fields or "return" not in fields:
                        continue
                    if first_time is None:
                        first_time = now
                    agg.add(int(fields["return"]), int(fields.get("version", 0)))
                    if csv:
                        csv.write("%.4f,%d,%s,%s,%.2f,%d\n" % (
                            now - first_time, agg.episodes, fields.get("sim", ""),
                            fields["return"], agg.average(), agg.version))
                    if args.target is not None and agg.full() and agg.average() >= args.target:
                        solved_time = now
                        break
                if solved_time is not None:
                    break
            now = time.monotonic()
            if not args.quiet and now - last_report >= args.progress_every:
                report(now)
                last_report = now
            if deadline is not None and now >= deadline:
                break
    finally:
        for proc in sims:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in sims:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if csv:
            csv.close()

    end = solved_time or time.monotonic()
    if not args.quiet:
        report(end)
    for line in summaries:
        print(line)
    solved = solved_time is not None
    if args.target is None:
        ok = all(p.returncode == 0 for p in sims)
    else:
        ok = solved
    print("result solved=%d train_seconds=%.3f startup_seconds=%.3f episodes=%d steps=%d "
          "avg_return=%.1f version=%d sims=%d actions=%s seed=%d exit_codes=%s" % (
              int(solved), end - (first_time or end), (first_time or end) - spawn_time,
              agg.episodes, agg.steps, agg.average(), agg.version, args.num, args.actions,
              args.seed, ",".join(str(p.returncode) for p in sims)), flush=True)
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Arguments after '--' go to every simulator.")
    parser.add_argument("--server", required=True, help="deltaserve address")
    parser.add_argument("--sim", required=True, help="simulator binary (e.g. cartpole_sim)")
    parser.add_argument("--num", type=int, default=8, help="simulator processes")
    parser.add_argument("--actions", default="roundtrip", help="roundtrip or replica")
    parser.add_argument("--seed", type=int, default=1, help="base seed; sim i gets seed*1000+i")
    parser.add_argument("--target", type=float, default=None,
                        help="stop once the windowed average return reaches this")
    parser.add_argument("--window", type=int, default=100, help="episodes in the average")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds; 0 = none")
    parser.add_argument("--csv", default=None, help="write every episode here")
    parser.add_argument("--progress-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--quiet", action="store_true", help="only the result line")
    argv = sys.argv[1:] if argv is None else argv
    extra = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1:]
    return run(parser.parse_args(argv), extra)


if __name__ == "__main__":
    sys.exit(main())
