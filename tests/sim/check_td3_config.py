#!/usr/bin/python3
"""td3_sim --print_config (sim/td3_learner.cc Td3ServerConfig) prints exactly the server config
client/python/examples/td3_pendulum.py --print-config prints for the same width, learning rate
and minibatch, so the C++ and the Python TD3 clients train the same models.

    check_td3_config.py BUILD/sim/td3_sim   (PYTHONPATH: client/python and the build's stubs)
"""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLE = os.path.join(ROOT, "client", "python", "examples", "td3_pendulum.py")


def output(cmd):
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60)
    if done.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s" % (" ".join(cmd), done.returncode, done.stdout))
    return done.stdout


def main():
    td3_sim = sys.argv[1]
    cases = [{}, {"hidden": "32", "lr": "0.002", "batch": "64"}]
    for case in cases:
        cpp = output([td3_sim, "--print_config"] + ["--%s=%s" % kv for kv in case.items()])
        py = output([sys.executable, EXAMPLE, "--print-config"]
                    + [a for k, v in case.items() for a in ("--" + k, v)])
        if cpp != py:
            raise SystemExit("configs differ for %s:\n--- td3_sim\n%s--- td3_pendulum.py\n%s"
                             % (case or "the defaults", cpp, py))
        if "ANCHORED" not in cpp or "samples_per_step: %s" % case.get("batch", "256") not in cpp:
            raise SystemExit("unexpected config:\n" + cpp)
    # A bad flag is refused with the option's name, before anything is printed.
    done = subprocess.run([td3_sim, "--print_config", "--tau=0"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    if done.returncode == 0 or "tau" not in done.stdout or "models" in done.stdout:
        raise SystemExit("td3_sim --tau=0 should fail naming tau, got (%d):\n%s"
                         % (done.returncode, done.stdout))
    print("td3_sim and td3_pendulum.py print the same configs (%d cases)" % len(cases))


if __name__ == "__main__":
    main()
