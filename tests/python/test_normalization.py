"""Shared input normalisation (input_normalization RUNNING_MEAN_STD) seen from Python.

The server's statistics after N steps equal a float64 NumPy reference; every
ParameterUpdate carries them; NumpyReplica and NumpyMlp normalise as the server does
(its Forward); deltaserve-cli export writes them as float64 normalizer.* arrays and
import puts them back. Environment: DELTASERVE_BIN, DELTASERVE_CLI, PYTHONPATH
(CMakeLists.txt).
"""

import os
import subprocess
import tempfile
import unittest

import numpy as np

from deltaserve_client import LocalServer, NumpyMlp, NumpyReplica, TrainerClient
from deltaserve_client.mlp import InputNormalizer
from support import BIN, model_config

CLI = os.environ["DELTASERVE_CLI"]
NORMALIZE = "  input_normalization { kind: RUNNING_MEAN_STD clip: 4 }\n"
CONFIG = (model_config("norm", 3, [(8, "TANH"), (2, "IDENTITY")], 5,
                       "kind: SGD learning_rate: 0.05", "  samples_per_step: 4\n" + NORMALIZE)
          + model_config("plain", 3, [(2, "IDENTITY")], 5, "kind: SGD learning_rate: 0.05"))


class Reference:
    """stable-baselines3's RunningMeanStd in float64: Chan's merge of each step's rows."""

    def __init__(self, dim):
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)
        self.count = 1e-4

    def merge(self, rows):
        rows = np.asarray(rows, np.float64)
        batch_mean, batch_var, b = rows.mean(axis=0), rows.var(axis=0), rows.shape[0]
        delta = batch_mean - self.mean
        total = self.count + b
        self.mean = self.mean + delta * b / total
        self.var = (self.var * self.count + batch_var * b
                    + delta ** 2 * self.count * b / total) / total
        self.count = total


class NormalizationTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.server = LocalServer(BIN, CONFIG)
        self.addCleanup(self.server.stop)
        self.rng = np.random.default_rng(3)

    def client(self, model="norm"):
        c = TrainerClient(self.server.address, model=model, timeout=10.0)
        self.addCleanup(c.close)
        return c

    def statistics(self, c):
        stream = c.watch(timeout=10.0)
        next(stream)
        stream.cancel()
        return InputNormalizer.from_update(stream.last_update)

    def train(self, c, submissions, reference=None):
        """Submits [n x 3] batches; merges each completed step into `reference`."""
        pending = []
        for x in submissions:
            _, version = c.forward(x)
            c.submit_delta(x, np.full((len(x), 2), 0.01, np.float32), version)
            pending.extend(x)
            if len(pending) >= 4:
                if reference is not None:
                    reference.merge(pending)
                pending = []

    def test_statistics_after_steps_equal_a_float64_reference(self):
        c = self.client()
        initial = self.statistics(c)
        np.testing.assert_array_equal(initial.mean, [0, 0, 0])
        np.testing.assert_array_equal(initial.var, [1, 1, 1])
        self.assertEqual(initial.count, 1e-4)
        self.assertEqual(initial.clip, 4.0)
        self.assertEqual(initial.epsilon, float(np.float32(1e-8)))
        reference = Reference(3)
        batches = [self.rng.normal([5, -2, 100], [1, 3, 10], size=(2, 3)).astype(np.float32)
                   for _ in range(10)]
        self.train(c, batches, reference)
        stats = self.statistics(c)
        self.assertEqual(stats.count, reference.count)
        np.testing.assert_allclose(stats.mean, reference.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats.var, reference.var, rtol=1e-12, atol=1e-12)
        # A model without normalisation sends none.
        plain = self.client("plain")
        self.assertIsNone(self.statistics(plain))

    def test_replica_and_numpy_mlp_forward_equal_the_servers(self):
        c = self.client()
        self.train(c, [self.rng.normal(3, 2, size=(2, 3)).astype(np.float32) for _ in range(6)])
        x = np.concatenate([self.rng.normal(3, 2, size=(5, 3)),
                            [[1e4, -1e4, 3.0]]]).astype(np.float32)  # the last row clips
        y, version = c.forward(x)
        with NumpyReplica(c) as replica:
            local, local_version = replica.forward(x)
            stats = replica.input_statistics()
        self.assertEqual(local_version, version)
        self.assertEqual(version, 3)
        np.testing.assert_allclose(local, y, rtol=1e-5, atol=1e-6)
        # The normalisation itself: float64 math rounded once to float32, clipped at 4.
        z = stats.normalize(x)
        self.assertEqual(z.dtype, np.float32)
        expected = np.clip((x.astype(np.float64) - stats.mean) / np.sqrt(stats.var + stats.epsilon),
                           -4, 4).astype(np.float32)
        np.testing.assert_array_equal(z, expected)
        self.assertEqual(z[-1, 0], 4.0)
        self.assertEqual(z[-1, 1], -4.0)
        mlp = NumpyMlp(c.get_model_info().spec)
        params, _ = c.get_parameters()
        np.testing.assert_allclose(mlp.forward(params, x, stats), y, rtol=1e-5, atol=1e-6)
        # Without the statistics a normalising model refuses to guess.
        with self.assertRaises(ValueError):
            mlp.forward(params, x)

    def test_export_writes_float64_statistics_and_import_restores_them(self):
        c = self.client()
        self.train(c, [self.rng.normal(-1, 5, size=(2, 3)).astype(np.float32) for _ in range(4)])
        before = self.statistics(c)
        path = os.path.join(self.tmp.name, "norm.npz")
        out = subprocess.run([CLI, "--target=" + self.server.address, "--model=norm", "export",
                              "--output=" + path], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        self.assertEqual(arrays["normalizer.mean"].dtype, np.float64)
        np.testing.assert_array_equal(arrays["normalizer.mean"], before.mean)
        np.testing.assert_array_equal(arrays["normalizer.var"], before.var)
        self.assertEqual(float(arrays["normalizer.count"]), before.count)
        # Import other statistics (np.savez's own file): they replace the server's.
        arrays["normalizer.mean"] = np.array([1.5, -2.5, 3.25])
        arrays["normalizer.var"] = np.array([4.0, 0.25, 9.0])
        arrays["normalizer.count"] = np.array(77.0)
        edited = os.path.join(self.tmp.name, "edited.npz")
        np.savez(edited, **arrays)
        out = subprocess.run([CLI, "--target=" + self.server.address, "--model=norm", "import",
                              "--input=" + edited], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        after = self.statistics(c)
        np.testing.assert_array_equal(after.mean, [1.5, -2.5, 3.25])
        np.testing.assert_array_equal(after.var, [4.0, 0.25, 9.0])
        self.assertEqual(after.count, 77.0)
        self.assertEqual(after.clip, 4.0)  # the server's own
        # Without normalizer arrays the statistics are kept.
        del arrays["normalizer.mean"], arrays["normalizer.var"], arrays["normalizer.count"]
        np.savez(edited, **arrays)
        out = subprocess.run([CLI, "--target=" + self.server.address, "--model=norm", "import",
                              "--input=" + edited], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        np.testing.assert_array_equal(self.statistics(c).mean, [1.5, -2.5, 3.25])
        # Statistics for a model that does not normalise: refused, one line.
        plain_path = os.path.join(self.tmp.name, "plain.npz")
        out = subprocess.run([CLI, "--target=" + self.server.address, "--model=plain", "export",
                              "--output=" + plain_path], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        with np.load(plain_path) as npz:
            plain = {k: npz[k] for k in npz.files}
        self.assertNotIn("normalizer.mean", plain)
        plain["normalizer.mean"] = np.zeros(3)
        plain["normalizer.var"] = np.ones(3)
        plain["normalizer.count"] = np.array(1.0)
        np.savez(plain_path, **plain)
        out = subprocess.run([CLI, "--target=" + self.server.address, "--model=plain", "import",
                              "--input=" + plain_path], capture_output=True, text=True,
                             timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("input_statistics", out.stderr)


if __name__ == "__main__":
    unittest.main()
