"""Gradients with respect to the inputs through the Python client and the CLI.

Against a real `deltaserve` on 127.0.0.1:0: TrainerClient.input_gradient equals
torch autograd and float64 finite differences; submit_delta's input_gradient is
the surrogate's g pulled back (objective sign and delta_scale included); the
Session serves input_gradient beside forward and submit; a chain of two models
(B's input gradient sent to A as A's δ) is the chain rule; deltaserve-cli
input-gradient prints the same numbers. Environment: DELTASERVE_BIN,
DELTASERVE_CLI, PYTHONPATH (tests/python/CMakeLists.txt).
"""

import os
import subprocess
import tempfile
import unittest

import numpy as np
import torch

from deltaserve_client import InvalidArgument, TrainerClient, convert
from support import ServerTestCase, model_config

CLI = os.environ["DELTASERVE_CLI"]

# "a": 3 -> 5 tanh -> 4 identity; "b": 4 -> 6 tanh -> 1 identity, delta_scale 0.5.
# samples_per_step is large: submissions never step, so every call sees one version.
CONFIG = (model_config("a", 3, [(5, "TANH"), (4, "IDENTITY")], 3, "kind: SGD learning_rate: 0.1",
                       "  samples_per_step: 100000\n")
          + model_config("b", 4, [(6, "TANH"), (1, "IDENTITY")], 4, "kind: SGD learning_rate: 0.1",
                         "  samples_per_step: 100000\n  surrogate { delta_scale: 0.5 }\n"))

TOLERANCE = 1e-5


def torch_mlp(client, layers):
    """The served network as a float64 torch.nn.Sequential with the served parameters."""
    params, _ = client.get_parameters()
    info = client.get_model_info()
    modules, offset, fan_in = [], 0, info.spec.input_dim
    for units, activation in layers:
        linear = torch.nn.Linear(fan_in, units).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(
                params[offset:offset + units * fan_in].reshape(units, fan_in).astype(np.float64)))
            offset += units * fan_in
            linear.bias.copy_(torch.from_numpy(params[offset:offset + units].astype(np.float64)))
            offset += units
        modules.append(linear)
        if activation == "tanh":
            modules.append(torch.nn.Tanh())
        fan_in = units
    assert offset == params.size, "layout mismatch"
    return torch.nn.Sequential(*modules)


def torch_vjp(net, x, delta):
    """(delta^T dy/dX, y) by torch autograd in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = net(xt)
    (y * torch.tensor(delta, dtype=torch.float64)).sum().backward()
    return xt.grad.numpy(), y.detach().numpy()


class InputGradientTest(ServerTestCase):
    CONFIG = CONFIG

    def setUp(self):
        self.rng = np.random.default_rng(5)
        self.a = TrainerClient(self.server.address, model="a", timeout=10.0)
        self.b = TrainerClient(self.server.address, model="b", timeout=10.0)
        self.addCleanup(self.a.close)
        self.addCleanup(self.b.close)
        self.net_a = torch_mlp(self.a, [(5, "tanh"), (4, "identity")])
        self.net_b = torch_mlp(self.b, [(6, "tanh"), (1, "identity")])

    def test_matches_torch_autograd_and_finite_differences_and_changes_nothing(self):
        x = self.rng.standard_normal((6, 3)).astype(np.float32)
        delta = self.rng.standard_normal((6, 4)).astype(np.float32)
        before, version_before = self.a.get_parameters()
        dx, y, version = self.a.input_gradient(x, delta)
        self.assertEqual((dx.dtype, dx.shape, y.shape), (np.float32, (6, 3), (6, 4)))
        expected, y_torch = torch_vjp(self.net_a, x, delta)
        np.testing.assert_allclose(dx, expected, atol=TOLERANCE, rtol=TOLERANCE)
        np.testing.assert_allclose(y, y_torch, atol=TOLERANCE, rtol=TOLERANCE)
        h = 1e-6
        for r in range(x.shape[0]):
            for c in range(x.shape[1]):
                plus, minus = x.astype(np.float64), x.astype(np.float64)
                plus[r, c] += h
                minus[r, c] -= h
                with torch.no_grad():
                    yp = self.net_a(torch.from_numpy(plus)).numpy()
                    ym = self.net_a(torch.from_numpy(minus)).numpy()
                fd = float(np.dot(delta[r].astype(np.float64), (yp[r] - ym[r]) / (2 * h)))
                self.assertAlmostEqual(float(dx[r, c]), fd, delta=TOLERANCE)
        after, version_after = self.a.get_parameters()
        self.assertEqual((version, version_after), (version_before, version_before))
        np.testing.assert_array_equal(after, before)

    def test_bad_requests_are_invalid_argument(self):
        x = np.ones((2, 3), np.float32)
        with self.assertRaisesRegex(InvalidArgument, "deltas: expected 4 columns"):
            self.a.input_gradient(x, np.ones((2, 3), np.float32))
        with self.assertRaisesRegex(InvalidArgument, "inputs: expected 3 columns"):
            self.a.input_gradient(np.ones((2, 2), np.float32), np.ones((2, 4), np.float32))
        with self.assertRaisesRegex(InvalidArgument, "deltas"):
            self.a.input_gradient(x, np.full((2, 4), np.nan, np.float32))

    def test_submit_delta_returns_the_surrogates_pullback(self):
        x = self.rng.standard_normal((3, 4)).astype(np.float32)
        delta = self.rng.standard_normal((3, 1)).astype(np.float32)
        plain, _, version = self.b.input_gradient(x, delta)
        minimize = self.b.submit_delta(x, delta, version, return_input_gradient=True)
        maximize = self.b.submit_delta(x, delta, version, maximize=True,
                                       return_input_gradient=True)
        not_asked = self.b.submit_delta(x, delta, version)
        # CURRENT mode, delta_scale 0.5, SUM: g = ±0.5·δ.
        np.testing.assert_allclose(convert.from_matrix(minimize.input_gradient), 0.5 * plain,
                                   atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(convert.from_matrix(maximize.input_gradient), -0.5 * plain,
                                   atol=1e-6, rtol=1e-6)
        self.assertFalse(not_asked.HasField("input_gradient"))

    def test_session_serves_input_gradients_beside_forward_and_submit(self):
        x = self.rng.standard_normal((2, 3)).astype(np.float32)
        delta = self.rng.standard_normal((2, 4)).astype(np.float32)
        expected, _ = torch_vjp(self.net_a, x, delta)
        with self.a.session() as s:
            bad = s.input_gradient_async(x, np.ones((1, 4), np.float32))
            good = s.input_gradient_async(x, delta)
            y, version = s.forward(x)
            with self.assertRaisesRegex(InvalidArgument, "deltas: expected 2 rows"):
                bad.result(10)
            dx, y2, version2 = good.result(10)
            np.testing.assert_allclose(dx, expected, atol=TOLERANCE, rtol=TOLERANCE)
            self.assertEqual(version2, version)
            submitted = s.submit_delta(x, delta, version, return_input_gradient=True)
            np.testing.assert_allclose(convert.from_matrix(submitted.input_gradient), dx,
                                       atol=1e-6, rtol=1e-6)
            dx_again, _, _ = s.input_gradient(x, delta)
            np.testing.assert_array_equal(dx_again, dx)

    def test_a_chain_of_two_models_is_the_chain_rule(self):
        # x -> A -> B -> z: dz/dx = A's VJP of (B's VJP of δ at A's outputs).
        x = self.rng.standard_normal((4, 3)).astype(np.float32)
        delta = self.rng.standard_normal((4, 1)).astype(np.float32)
        y_a, version_a = self.a.forward(x)
        dy_a, _, _ = self.b.input_gradient(y_a, delta)
        dx, _, _ = self.a.input_gradient(x, dy_a)
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (self.net_b(self.net_a(xt)) * torch.tensor(delta, dtype=torch.float64)).sum().backward()
        np.testing.assert_allclose(dx, xt.grad.numpy(), atol=TOLERANCE, rtol=TOLERANCE)
        # And B's input gradient trains A as A's δ.
        response = self.a.submit_delta(x, dy_a, version_a)
        self.assertFalse(response.duplicate)

    def test_cli_prints_the_input_gradient_rows_then_outputs_and_version(self):
        x = self.rng.standard_normal((2, 3)).astype(np.float32)
        delta = self.rng.standard_normal((2, 4)).astype(np.float32)
        dx, y, version = self.a.input_gradient(x, delta)
        with tempfile.TemporaryDirectory() as tmp:
            inputs, deltas = os.path.join(tmp, "x.csv"), os.path.join(tmp, "d.csv")
            np.savetxt(inputs, x, delimiter=",", fmt="%.9g")
            np.savetxt(deltas, delta, delimiter=",", fmt="%.9g")
            run = subprocess.run([CLI, "--target=" + self.server.address, "--model=a",
                                  "--inputs=" + inputs, "--deltas=" + deltas, "input-gradient"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 0, run.stderr)
            lines = run.stdout.splitlines()
            rows = [l for l in lines if not l.startswith("#")]
            np.testing.assert_array_equal(np.array([[float(v) for v in r.split(",")]
                                                    for r in rows], np.float32), dx)
            outputs = [l[len("# outputs: "):] for l in lines if l.startswith("# outputs: ")]
            np.testing.assert_array_equal(np.array([[float(v) for v in r.split(",")]
                                                    for r in outputs], np.float32), y)
            self.assertIn("# version: %d" % version, lines)
            missing = subprocess.run([CLI, "--target=" + self.server.address, "--model=a",
                                      "--inputs=" + inputs, "input-gradient"],
                                     capture_output=True, text=True, timeout=60)
            self.assertEqual(missing.returncode, 1)
            self.assertIn("--deltas", missing.stderr)


if __name__ == "__main__":
    unittest.main()
