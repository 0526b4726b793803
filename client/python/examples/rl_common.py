"""What the deltaserve RL examples (td3_pendulum.py, ppo_pendulum.py, chain_example.py) share:
a server to talk to, model configs, initial weights drawn like torch's, a numpy
vector-Jacobian product for cross-checks, and the learning-curve CSV that
tools/torch_rl.py writes too (same columns, so one plot shows both implementations).

No torch here: the examples need only numpy and deltaserve_client.
"""

import os

import numpy as np

from deltaserve_client import LocalServer, TrainerClient
from learning_curve import LearningCurve  # noqa: F401  (re-exported for the examples)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "..", ".."))


def server_binary():
    """$DELTASERVE_BIN, else the build tree's server (build/server/deltaserve)."""
    path = os.environ.get("DELTASERVE_BIN") or os.path.join(REPO_ROOT, "build", "server",
                                                            "deltaserve")
    if not os.access(path, os.X_OK):
        raise SystemExit("no deltaserve binary at %s: build it (make build) or set "
                         "DELTASERVE_BIN, or pass --target HOST:PORT of a running server" % path)
    return path


class Server:
    """The server an example talks to: its own child process started from `config`, or the
    one at `target` (then the config must already be loaded there). Context manager."""

    def __init__(self, config, target=""):
        self.local = None if target else LocalServer(server_binary(), config)
        self.address = target or self.local.address

    def client(self, model, timeout=60.0):
        return TrainerClient(self.address, model=model, timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.local is not None:
            self.local.stop()


ACTIVATIONS = {"relu": "RELU", "tanh": "TANH", "identity": "IDENTITY", "sigmoid": "SIGMOID"}


def model_config(name, input_dim, layers, optimizer, seed=1, samples_per_step=1, extra=""):
    """One `models { ... }` entry (ServerConfig text format).

    layers: [(units, "relu" | "tanh" | "identity"), ...]; optimizer: the body of
    `optimizer { }`, e.g. "kind: ADAM learning_rate: 3e-4".
    """
    body = "".join("  layers { units: %d activation: ACTIVATION_%s }\n"
                   % (units, ACTIVATIONS[act]) for units, act in layers)
    return ("models {\n  name: \"%s\"\n  input_dim: %d\n%s  seed: %d\n  optimizer { %s }\n"
            "  samples_per_step: %d\n%s}\n" % (name, input_dim, body, seed, optimizer,
                                              samples_per_step, extra))


def layer_shapes(input_dim, units):
    """[(fan_out, fan_in), ...] for layer widths `units` after an input of input_dim."""
    fans = [input_dim] + list(units)
    return list(zip(fans[1:], fans[:-1]))


def torch_default_init(rng, input_dim, units):
    """Flat parameters (W row-major then b, per layer) drawn as torch.nn.Linear's default:
    W and b ~ U(−1/√fan_in, 1/√fan_in)."""
    parts = []
    for fan_out, fan_in in layer_shapes(input_dim, units):
        bound = 1.0 / np.sqrt(fan_in)
        parts += [rng.uniform(-bound, bound, fan_out * fan_in), rng.uniform(-bound, bound, fan_out)]
    return np.concatenate(parts).astype(np.float32)


def orthogonal_init(rng, input_dim, units, output_std, hidden_std=np.sqrt(2.0)):
    """Flat parameters as torch.nn.init.orthogonal_ (gain √2 for hidden layers, output_std for
    the last) with zero biases: CleanRL's PPO initialisation (tools/torch_ppo.py)."""
    shapes = layer_shapes(input_dim, units)
    parts = []
    for i, (fan_out, fan_in) in enumerate(shapes):
        gain = output_std if i == len(shapes) - 1 else hidden_std
        a = rng.normal(0.0, 1.0, (max(fan_out, fan_in), min(fan_out, fan_in)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        w = q if fan_out >= fan_in else q.T
        parts += [gain * w.reshape(-1), np.zeros(fan_out)]
    return np.concatenate(parts).astype(np.float32)


def import_parameters(address, model, params):
    """Admin.ImportParameters: replaces `model`'s parameters (a new version, Adam state reset).
    Returns the new version."""
    import grpc
    from deltaserve.v1 import admin_pb2, admin_pb2_grpc  # importable once deltaserve_client is
    with grpc.insecure_channel(address) as channel:
        response = admin_pb2_grpc.AdminStub(channel).ImportParameters(
            admin_pb2.ImportParametersRequest(model=model,
                                              parameters=np.asarray(params, np.float32)),
            timeout=30)
    return int(response.version)


def polyak(target, source, tau):
    """target ← (1 − τ)·target + τ·source (float32 arrays), in place; returns target."""
    target *= 1.0 - tau
    target += tau * source
    return target


_DERIVATIVES = {
    "relu": lambda y: (y > 0).astype(y.dtype),
    "tanh": lambda y: 1.0 - y * y,
    "identity": lambda y: np.ones_like(y),
    "sigmoid": lambda y: y * (1.0 - y),
}
_FUNCTIONS = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "identity": lambda z: z,
              "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z))}


def numpy_input_gradient(params, x, delta, input_dim, layers):
    """δᵀ·∂f/∂x for the MLP `layers` [(units, activation)] with flat `params`, in float64:
    what InputGradient returns for a model without input normalisation (a cross-check)."""
    a = np.asarray(x, np.float64)
    acts, offset = [], 0
    weights = []
    for (fan_out, fan_in), (_, act) in zip(layer_shapes(input_dim, [u for u, _ in layers]),
                                           layers):
        w = params[offset:offset + fan_out * fan_in].reshape(fan_out, fan_in).astype(np.float64)
        b = params[offset + fan_out * fan_in:offset + fan_out * (fan_in + 1)]
        offset += fan_out * (fan_in + 1)
        a = _FUNCTIONS[act](a @ w.T + b)
        acts.append(a)
        weights.append(w)
    g = np.asarray(delta, np.float64)
    for w, y, (_, act) in reversed(list(zip(weights, acts, layers))):
        g = (g * _DERIVATIVES[act](y)) @ w
    return g
