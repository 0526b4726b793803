"""End-to-end: simulators learn through a real deltaserve on 127.0.0.1:0.

Environment (set by tests/e2e/CMakeLists.txt): DELTASERVE_BIN, CARTPOLE_SIM,
BLACKBOX_SIM, DELTASERVE_CONFIGS, RUN_SIMULATORS, and PYTHONPATH with
client/python and <build>/python. Every test starts its own server and stops
it, and bounds each child process with a timeout.
"""

import os
import re
import subprocess
import sys
import unittest

from deltaserve_client import LocalServer

BIN = os.environ["DELTASERVE_BIN"]
CONFIGS = os.environ["DELTASERVE_CONFIGS"]


def read_config(name):
    with open(os.path.join(CONFIGS, name)) as f:
        return f.read()


def fields(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


class CartPoleLearns(unittest.TestCase):
    """Two cartpole_sim processes, 150 episodes each, fixed seeds.

    A uniformly random policy averages about 22; the policy must average more
    than 100 over the last 100 episodes (across both simulators).
    """

    def run_path(self, actions):
        with LocalServer(BIN, read_config("cartpole.textproto")) as server:
            proc = subprocess.run(
                [sys.executable, os.environ["RUN_SIMULATORS"], "--server=" + server.address,
                 "--sim=" + os.environ["CARTPOLE_SIM"], "--num=2", "--actions=" + actions,
                 "--seed=7", "--time-limit=90", "--quiet", "--", "--episodes=150"],
                capture_output=True, text=True, timeout=110)
        result = [l for l in proc.stdout.splitlines() if l.startswith("result")]
        self.assertTrue(result, "no result line; stdout:\n%s\nstderr:\n%s" %
                        (proc.stdout, proc.stderr))
        got = fields(result[-1])
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(int(got["episodes"]), 300, result[-1])
        self.assertGreater(float(got["avg_return"]), 100.0, result[-1])
        self.assertGreater(int(got["version"]), 0, result[-1])

    def test_roundtrip(self):
        self.run_path("roundtrip")

    def test_replica(self):
        self.run_path("replica")


class BlackBoxConverges(unittest.TestCase):
    def test_spsa_reaches_the_optimum(self):
        with LocalServer(BIN, read_config("blackbox.textproto")) as server:
            proc = subprocess.run(
                [os.environ["BLACKBOX_SIM"], "--server=" + server.address, "--seed=3",
                 "--iterations=400", "--loss_threshold=0.05"],
                capture_output=True, text=True, timeout=60)
        result = [l for l in proc.stdout.splitlines() if l.startswith("result")]
        self.assertTrue(result, proc.stdout + proc.stderr)
        got = fields(result[-1])
        self.assertEqual(proc.returncode, 0, result[-1])
        self.assertLess(float(got["final_loss"]), 0.05, result[-1])
        self.assertLess(float(got["final_loss"]), float(got["initial_loss"]) / 20, result[-1])
        self.assertLess(float(got["distance_to_optimum"]),
                        float(got["initial_distance"]) / 5, result[-1])


if __name__ == "__main__":
    unittest.main()
