#!/usr/bin/python3
"""TD3 on Pendulum with the C++ client (sim/td3_sim.cc) against its own deltaserve server, for
tools/bench_algorithms.py (--td3-impl cpp): starts build/server/deltaserve on a free port with
the models `td3_sim --print_config` prints for the same flags (the config
client/python/examples/td3_pendulum.py uses), runs build/sim/td3_sim against it (it writes the
learning curve to --csv in the columns of the torch reference), and ends with td3_sim's summary
line, whose CPU is td3_sim's own; the line before it has td3_sim's and the server's CPU:

    CPU: td3_sim 7.9 s, server 21.3 s
    TD3 (deltaserve, C++) seed 1 hidden 64: average of the last 10 returns -190.3 after 20000 env steps, 20.1 s wall, 7.9 s CPU

    /usr/bin/python3 tools/td3_cpp.py --seed 1 --csv /tmp/td3_cpp_1.csv
    /usr/bin/python3 tools/td3_cpp.py --seed 1 --sim-flags="--in_flight=4"
"""

import argparse
import os
import subprocess

from cpp_sim_server import ROOT, run_with_server


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--csv", default="")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--sim-flags", default="", help="more td3_sim flags, one string "
                   "(--sim-flags=\"--in_flight=4 --lr=1e-3\"); they shape the server config too")
    args = p.parse_args()
    binary = os.path.join(args.build, "sim", "td3_sim")
    flags = ["--steps=%d" % args.steps, "--hidden=%d" % args.hidden] + args.sim_flags.split()
    config = subprocess.run([binary, "--print_config"] + flags, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if config.returncode != 0:
        raise SystemExit("%s --print_config failed (%d): %s" % (binary, config.returncode,
                                                                config.stdout.strip()))
    cmd = [binary, "--seed=%d" % args.seed] + flags + (["--csv=" + args.csv] if args.csv else [])
    done, sim_cpu, server_cpu = run_with_server(config.stdout, cmd, args.build)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    for line in lines[:-1]:
        print(line)
    print("CPU: td3_sim %.1f s, server %.1f s" % (sim_cpu, server_cpu))
    print(summary, flush=True)


if __name__ == "__main__":
    main()
