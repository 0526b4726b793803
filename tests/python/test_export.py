"""deltaserve-cli export / import / checkpoint against a real server with --state_dir.

export writes what np.load reads, with torch.nn.Sequential's tensor names and
torch.nn.Linear's layout (checked by a NumPy forward pass equal to the
server's); import takes np.savez's own files back; the state survives a
restart. Environment: DELTASERVE_BIN, DELTASERVE_CLI, PYTHONPATH (CMakeLists.txt).
"""

import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from deltaserve_client import LocalServer, TrainerClient
from support import BIN, model_config

CLI = os.environ["DELTASERVE_CLI"]
INSPECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                       "inspect_state.py")
CONFIG = model_config("net", 3, [(8, "TANH"), (5, "RELU"), (2, "IDENTITY")], 4,
                      "kind: ADAM learning_rate: 0.05")
X = np.array([[0.5, -0.25, 1.0], [-1.0, 0.75, 0.1], [0.2, 0.2, -0.9]], np.float32)


def cli(address, *args):
    return subprocess.run([CLI, "--target=" + address, *args], capture_output=True, text=True,
                          timeout=60)


def numpy_forward(tensors, x):
    """torch.nn.Sequential(Linear, Tanh, Linear, ReLU, Linear) by hand: y = x·Wᵀ + b."""
    h = np.tanh(x @ tensors["0.weight"].T + tensors["0.bias"])
    h = np.maximum(h @ tensors["2.weight"].T + tensors["2.bias"], 0)
    return h @ tensors["4.weight"].T + tensors["4.bias"]


class ExportImportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.state = os.path.join(self.tmp.name, "state")
        self.server = self.start()

    def start(self):
        server = LocalServer(BIN, CONFIG, extra_args=["--state_dir=" + self.state])
        self.addCleanup(server.stop)
        return server

    def client(self):
        c = TrainerClient(self.server.address, model="net", timeout=10.0)
        self.addCleanup(c.close)
        return c

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def train(self, steps):
        c = self.client()
        for i in range(steps):
            _, version = c.forward(X)
            c.submit_delta(X, np.full((3, 2), 0.1 * (i + 1), np.float32), version)

    def test_export_loads_in_numpy_with_torch_names_and_layout(self):
        self.train(4)
        out = cli(self.server.address, "export", "--output=" + self.path("net.npz"))
        self.assertEqual(out.returncode, 0, out.stderr)
        with np.load(self.path("net.npz")) as npz:
            tensors = {k: npz[k] for k in npz.files}
        self.assertEqual(sorted(tensors), ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias",
                                           "4.weight", "version"])
        self.assertEqual(tensors["0.weight"].shape, (8, 3))
        self.assertEqual(tensors["2.weight"].shape, (5, 8))
        self.assertEqual(tensors["4.bias"].shape, (2,))
        self.assertEqual(tensors["0.weight"].dtype, np.float32)
        params, version = self.client().get_parameters()
        self.assertEqual(int(tensors["version"]), version)
        self.assertEqual(version, 4)
        flat = np.concatenate([tensors[k].ravel() for k in
                               ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias")])
        np.testing.assert_array_equal(flat, params)
        outputs, _ = self.client().forward(X)
        np.testing.assert_allclose(numpy_forward(tensors, X), outputs, rtol=1e-5, atol=1e-6)

    def test_import_sets_the_parameters_as_a_new_version_and_survives_a_restart(self):
        self.train(2)
        rng = np.random.default_rng(5)
        tensors = {"0.weight": rng.normal(size=(8, 3)), "0.bias": rng.normal(size=8),
                   "2.weight": rng.normal(size=(5, 8)), "2.bias": rng.normal(size=5),
                   "4.weight": rng.normal(size=(2, 5)), "4.bias": rng.normal(size=2)}
        np.savez(self.path("mine.npz"), **tensors)  # float64, as NumPy makes them.
        out = cli(self.server.address, "import", "--input=" + self.path("mine.npz"))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("as version 3", out.stdout)
        params, version = self.client().get_parameters()
        self.assertEqual(version, 3)
        outputs, _ = self.client().forward(X)
        as_float32 = {k: v.astype(np.float32) for k, v in tensors.items()}
        np.testing.assert_allclose(numpy_forward(as_float32, X), outputs, rtol=1e-5, atol=1e-6)

        self.server.stop()  # SIGTERM: final checkpoint.
        self.server = self.start()
        restored, restored_version = self.client().get_parameters()
        self.assertEqual(restored_version, 3)
        np.testing.assert_array_equal(restored, params)

        # scripts/inspect_state.py reads the same directory and verifies it...
        inspect = [sys.executable, INSPECT, self.state]
        out = subprocess.run(inspect, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("version 3, journal seq 3", out.stdout)
        self.assertIn("checksum ok", out.stdout)
        # ... and says so when a checkpoint is damaged.
        model_dir = os.path.join(self.state, "net")
        newest = sorted(n for n in os.listdir(model_dir) if n.endswith(".ckpt"))[-1]
        with open(os.path.join(model_dir, newest), "r+b") as f:
            f.seek(40)
            byte = f.read(1)
            f.seek(40)
            f.write(bytes([byte[0] ^ 0x08]))
        out = subprocess.run(inspect, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("CHECKSUM MISMATCH", out.stdout)

    def test_import_refuses_wrong_files_and_changes_nothing(self):
        before, version = self.client().get_parameters()
        np.savez_compressed(self.path("zipped.npz"), **{"0.weight": np.zeros((8, 3))})
        np.savez(self.path("short.npz"), **{"0.weight": np.zeros((8, 3)), "0.bias": np.zeros(8)})
        np.savez(self.path("wide.npz"), **{"0.weight": np.zeros((9, 3))})
        for name, message in (("zipped.npz", "np.savez_compressed"),
                              ("short.npz", 'expected a tensor "2.weight" of shape (5, 8)'),
                              ("wide.npz", 'tensor "0.weight": expected shape (8, 3)')):
            out = cli(self.server.address, "import", "--input=" + self.path(name))
            self.assertEqual(out.returncode, 1, name)
            self.assertIn(message, out.stderr, name)
        after, after_version = self.client().get_parameters()
        self.assertEqual(after_version, version)
        np.testing.assert_array_equal(after, before)

    def test_checkpoint_on_demand_prints_a_file_that_exists(self):
        self.train(1)
        out = cli(self.server.address, "checkpoint")
        self.assertEqual(out.returncode, 0, out.stderr)
        path = out.stdout.split()[1].rstrip(":")
        self.assertTrue(os.path.isfile(path), out.stdout)
        self.assertIn("version 1", out.stdout)


class NoStateDirTest(unittest.TestCase):
    def test_checkpoint_without_state_dir_is_failed_precondition(self):
        server = LocalServer(BIN, CONFIG)
        self.addCleanup(server.stop)
        out = cli(server.address, "checkpoint")
        self.assertEqual(out.returncode, 1)
        self.assertIn("FAILED_PRECONDITION", out.stderr)
        self.assertIn("--state_dir", out.stderr)


if __name__ == "__main__":
    unittest.main()
