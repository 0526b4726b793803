#!/usr/bin/python3
"""PPO on Pendulum with the C++ simulators (sim/ppo_sim.cc) against their own deltaserve server,
for tools/bench_algorithms.py (--ppo-impl cpp): starts build/server/deltaserve with
configs/ppo_pendulum.textproto on a free port, runs build/sim/ppo_sim against it, turns its
per-episode lines into the learning-curve CSV the torch reference and the Python example write
(episode, env_steps, wall_seconds, return, average), and ends with their summary line:

    PPO seed 1: average of the last 20 returns -241.3 >= -250 after 30720 env steps, 3.1 s wall, 5.2 s CPU

(wall: ppo_sim's reached_at_seconds, its training loop; CPU: ppo_sim's and the server's
user+system time, each also printed on its own line before).

    /usr/bin/python3 tools/ppo_cpp.py --seed 1 --csv /tmp/ppo_cpp_1.csv \
        --sim-flags=--actions=shared_replica
"""

import argparse
import csv
import os

from cpp_sim_server import ROOT, run_with_server


def fields(line):
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--csv", default="")
    p.add_argument("--max-steps", type=int, default=300000)
    p.add_argument("--target", type=float, default=-250.0)
    p.add_argument("--simulators", type=int, default=8)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "ppo_pendulum.textproto"))
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--sim-flags", default="", help="more ppo_sim flags, one string "
                   "(--sim-flags=--actions=shared_replica)")
    args = p.parse_args()
    with open(args.config) as f:
        config = f.read()
    cmd = [os.path.join(args.build, "sim", "ppo_sim"), "--seed=%d" % args.seed,
           "--max_env_steps=%d" % args.max_steps, "--target=%g" % args.target,
           "--simulators=%d" % args.simulators] + args.sim_flags.split()
    done, sim_cpu, server_cpu = run_with_server(config, cmd, args.build)
    summary = {}
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("episode="):
            f = fields(line)
            rows.append([int(f["episode"]), int(f["steps"]), float(f["t"]), float(f["return"]),
                         float(f["avg"])])
        elif line.startswith("summary "):
            summary = fields(line)
        elif line.startswith("simulator "):
            print(line)
    if args.csv:
        with open(args.csv, "w", newline="") as out:
            w = csv.writer(out)
            w.writerow(["episode", "env_steps", "wall_seconds", "return", "average"])
            w.writerows(rows)
    print("CPU: ppo_sim %.1f s, server %.1f s" % (sim_cpu, server_cpu))
    average = float(summary["avg_last20"])
    if int(summary["reached_at_steps"]) >= 0:
        print("PPO seed %d: average of the last 20 returns %.1f >= %.0f after %d env steps, "
              "%.1f s wall, %.1f s CPU" % (args.seed, average, args.target,
                                          int(summary["reached_at_steps"]),
                                          float(summary["reached_at_seconds"]),
                                          sim_cpu + server_cpu), flush=True)
    else:
        print("PPO seed %d: target %.0f not reached; average of the last 20 returns %.1f after "
              "%d env steps, %.1f s wall, %.1f s CPU" % (
                  args.seed, args.target, average, int(summary["env_steps"]),
                  float(summary["seconds"]), sim_cpu + server_cpu), flush=True)


if __name__ == "__main__":
    main()
