"""client/python as a package, without the C++ build's stubs.

Each test copies client/python and proto/ into a fresh temporary folder (the
same layout as the repository, so nothing is written into the source tree)
and runs a child /usr/bin/python3 from a clean working directory with neither
PYTHONPATH nor DELTASERVE_PYTHON_STUBS, so only what the route under test
provides can be imported:

- no stubs at all: importing deltaserve_client fails and says what to run;
- PYTHONPATH route: generate_stubs.py, then PYTHONPATH=client/python only;
- pip route: a venv made with --system-site-packages (grpcio, protobuf, numpy
  from Debian) and `pip install --no-build-isolation --no-index`.

The last two use the client against a real server (DELTASERVE_BIN on
127.0.0.1:0). A missing python3-venv or python3-pip is a failure that names
the package, never a skip.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from support import ServerTestCase, model_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON = sys.executable  # /usr/bin/python3 under ctest (DELTASERVE_PYTHON)

CONFIG = model_config("tiny", 2, [(3, "TANH"), (1, "IDENTITY")], 3, "kind: SGD learning_rate: 0.1")

# Run by the child interpreter: where things were imported from, and a few calls.
USE_CLIENT = r"""
import json, sys
import numpy as np
import deltaserve_client
import deltaserve.v1.trainer_pb2 as trainer_pb2
from deltaserve_client import NotFound, NumpyReplica, TrainerClient

out = {"client_file": deltaserve_client.__file__, "stubs_file": trainer_pb2.__file__}
with TrainerClient(sys.argv[1], model="tiny", timeout=10.0) as c:
    c.wait_until_ready(10.0)
    x = np.array([[0.5, -1.0]], np.float32)
    y, version = c.forward(x)
    out["forward"] = [y.shape[0], y.shape[1], version]
    out["stepped"] = bool(c.submit_delta(x, np.ones_like(y), version).stepped)
    with NumpyReplica(c) as replica:
        replica.wait_for_version(1, 10.0)
        local, local_version = replica.forward(x)
        remote, remote_version = c.forward(x)
        out["replica_matches"] = bool(local_version == remote_version and
                                      np.allclose(local, remote, rtol=1e-5, atol=1e-6))
    try:
        TrainerClient(sys.argv[1], model="nope").forward(x)
    except NotFound as e:
        out["not_found"] = e.code.name
print(json.dumps(out))
"""


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DELTASERVE_PYTHON_STUBS", "DELTASERVE_PROTO_DIR",
                        "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


class PackagingTest(ServerTestCase):
    CONFIG = CONFIG

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="deltaserve-packaging-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.src = os.path.join(self.tmp, "repo")
        shutil.copytree(os.path.join(REPO, "client", "python"),
                        os.path.join(self.src, "client", "python"),
                        ignore=shutil.ignore_patterns("_generated", "build", "dist",
                                                      "*.egg-info", "__pycache__"))
        shutil.copytree(os.path.join(REPO, "proto"), os.path.join(self.src, "proto"),
                        ignore=shutil.ignore_patterns("*.cc", "*.h", "CMakeLists.txt"))
        self.client_dir = os.path.join(self.src, "client", "python")
        self.cwd = os.path.join(self.tmp, "elsewhere")  # a clean working directory
        os.mkdir(self.cwd)

    def run_child(self, argv, env, timeout=120):
        proc = subprocess.run(argv, cwd=self.cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
        return proc

    def check_use(self, python, env, expect_under):
        proc = self.run_child([python, "-c", USE_CLIENT, self.server.address], env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("client_file", "stubs_file"):
            self.assertTrue(os.path.realpath(out[key]).startswith(os.path.realpath(expect_under)),
                            "%s = %s, expected under %s" % (key, out[key], expect_under))
        self.assertEqual(out["forward"][:2], [1, 1])
        self.assertTrue(out["stepped"])
        self.assertTrue(out["replica_matches"])
        self.assertEqual(out["not_found"], "NOT_FOUND")
        return out

    def test_missing_stubs_say_what_to_run(self):
        proc = self.run_child([PYTHON, "-c", "import deltaserve_client"],
                              clean_env(PYTHONPATH=self.client_dir))
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertIn("StubsNotFoundError", proc.stderr)
        for hint in ("generate_stubs.py", "pip install --no-build-isolation ./client/python",
                     "deltaserve_python_stubs", "DELTASERVE_PYTHON_STUBS"):
            self.assertIn(hint, proc.stderr)

    def test_pythonpath_route_with_generate_stubs(self):
        proc = self.run_child([PYTHON, os.path.join(self.client_dir, "generate_stubs.py")],
                              clean_env())
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        generated = os.path.join(self.client_dir, "_generated")
        self.assertTrue(os.path.isfile(os.path.join(generated, "deltaserve", "v1",
                                                    "trainer_pb2_grpc.py")), proc.stdout)
        out = self.check_use(PYTHON, clean_env(PYTHONPATH=self.client_dir), self.client_dir)
        self.assertTrue(out["stubs_file"].startswith(generated), out["stubs_file"])

    def test_generate_stubs_without_protos_fails_clearly(self):
        shutil.rmtree(os.path.join(self.src, "proto"))
        proc = self.run_child([PYTHON, os.path.join(self.client_dir, "generate_stubs.py")],
                              clean_env())
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("DELTASERVE_PROTO_DIR", proc.stderr)

    def test_pip_install_into_a_venv(self):
        venv = os.path.join(self.tmp, "venv")
        proc = self.run_child([PYTHON, "-m", "venv", "--system-site-packages", venv],
                              clean_env())
        self.assertEqual(proc.returncode, 0,
                         "cannot create a venv with %s (Debian: apt-get install python3-venv):\n%s"
                         % (PYTHON, proc.stdout + proc.stderr))
        python = os.path.join(venv, "bin", "python")
        proc = self.run_child([python, "-m", "pip", "--version"], clean_env())
        self.assertEqual(proc.returncode, 0,
                         "pip is missing in the venv (Debian: apt-get install python3-pip):\n%s"
                         % (proc.stdout + proc.stderr))
        proc = self.run_child([python, "-m", "pip", "install", "--no-build-isolation",
                               "--no-index", self.client_dir], clean_env(), timeout=300)
        self.assertEqual(proc.returncode, 0, "pip install failed:\n%s"
                         % (proc.stdout + proc.stderr))
        self.assertIn("Successfully installed deltaserve-client", proc.stdout)
        site = os.path.join(venv, "lib")
        self.check_use(python, clean_env(), site)
        # The installed package is self-contained: the source copy can go.
        shutil.rmtree(self.src)
        self.check_use(python, clean_env(), site)
        proc = self.run_child([python, "-m", "pip", "show", "deltaserve-client"], clean_env())
        self.assertIn("Requires: grpcio, numpy, protobuf", proc.stdout)


if __name__ == "__main__":
    unittest.main()
