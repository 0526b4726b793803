"""What tools/ppo_cpp.py and tools/td3_cpp.py share: run a C++ simulator binary (sim/) against a
deltaserve server of its own, started from a config on a free port and stopped after it."""

import os
import resource
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

from deltaserve_client import LocalServer  # noqa: E402


def server_binary(build):
    """$DELTASERVE_BIN, else BUILD/server/deltaserve."""
    return os.environ.get("DELTASERVE_BIN") or os.path.join(build, "server", "deltaserve")


def run_with_server(config, cmd, build):
    """Starts a server with `config` (ServerConfig text) on a free loopback port, runs `cmd` with
    --server=ADDRESS appended, stops the server. Returns (the CompletedProcess, stdout and stderr
    together as text; the command's CPU seconds; the server's CPU seconds); exits with the
    command's last output if it failed."""
    server = LocalServer(server_binary(build), config)
    try:
        full = cmd + ["--server=" + server.address]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sim_done = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        server.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
        raise SystemExit("%s failed (%d)" % (" ".join(full), done.returncode))

    def cpu(a, b):
        return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
    return done, cpu(before, sim_done), cpu(sim_done, after)
