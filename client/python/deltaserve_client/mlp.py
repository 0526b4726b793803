"""The MLP forward pass in numpy, over the wire contract's flat parameter layout.

For each layer in order: weight W [units x fan_in] row-major, then bias b [units]
(torch.nn.Linear's layout); rows of X are samples, so A_l = act(A_{l-1} W^T + b).

A model whose spec has input_normalization RUNNING_MEAN_STD first normalises its
inputs with the version's statistics (ParameterUpdate.input_statistics, an
InputNormalizer): z = clip((x - mean) / sqrt(var + epsilon), -clip, clip), in float64
and rounded once to float32, as the server computes it (docs/model.md).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

from deltaserve_client._stubs import config_pb2, trainer_pb2
from deltaserve_client.errors import InvalidArgument

_ACTIVATIONS: Dict[int, Callable[[np.ndarray], np.ndarray]] = {
    config_pb2.ACTIVATION_IDENTITY: lambda z: z,
    config_pb2.ACTIVATION_TANH: np.tanh,
    config_pb2.ACTIVATION_RELU: lambda z: np.maximum(z, 0.0),
    config_pb2.ACTIVATION_SIGMOID: lambda z: 1.0 / (1.0 + np.exp(-z)),
}


class InputNormalizer:
    """One version's input statistics (an InputStatistics message): normalize() gives
    what the first layer sees, bit for bit as the server computes it."""

    def __init__(self, mean: npt.ArrayLike, var: npt.ArrayLike, count: float, clip: float,
                 epsilon: float) -> None:
        """InvalidArgument (a ValueError) unless mean and var have the same length > 0,
        are finite (var >= 0), count is finite and > 0 and clip, epsilon finite and > 0."""
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.var = np.asarray(var, dtype=np.float64).reshape(-1)
        self.count = float(count)
        # clip and epsilon are float32 on the wire; the server widens them to double.
        self.clip = float(np.float32(clip))
        self.epsilon = float(np.float32(epsilon))
        if self.mean.size == 0 or self.mean.shape != self.var.shape:
            raise InvalidArgument("input statistics: expected mean and var of the same size > 0, "
                                  "got %d and %d" % (self.mean.size, self.var.size))
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.var))
                and np.all(self.var >= 0)):
            raise InvalidArgument("input statistics: expected finite means and variances >= 0")
        if not (np.isfinite(self.count) and self.count > 0):
            raise InvalidArgument("input statistics: expected a finite count > 0, got %r"
                                  % self.count)
        for name, value in (("clip", self.clip), ("epsilon", self.epsilon)):
            if not (np.isfinite(value) and value > 0):
                raise InvalidArgument("input statistics: expected a finite %s > 0, got %r"
                                      % (name, value))
        self.std = np.sqrt(self.var + self.epsilon)

    @classmethod
    def from_proto(cls, stats: "trainer_pb2.InputStatistics") -> "InputNormalizer":
        return cls(list(stats.mean), list(stats.var), stats.count, stats.clip, stats.epsilon)

    @classmethod
    def from_update(cls, update: "trainer_pb2.ParameterUpdate") -> "Optional[InputNormalizer]":
        """The update's statistics, or None when it carries none (no normalisation)."""
        if not update.HasField("input_statistics"):
            return None
        return cls.from_proto(update.input_statistics)

    def to_proto(self) -> "trainer_pb2.InputStatistics":
        return trainer_pb2.InputStatistics(mean=self.mean.tolist(), var=self.var.tolist(),
                                           count=self.count, clip=self.clip,
                                           epsilon=self.epsilon)

    @property
    def input_dim(self) -> int:
        return int(self.mean.size)

    def normalize(self, x: npt.ArrayLike) -> np.ndarray:
        """float32 clip((x - mean) / sqrt(var + epsilon), -clip, clip) for x [n x input_dim]."""
        a = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if a.ndim != 2 or a.shape[1] != self.input_dim:
            raise InvalidArgument("expected inputs with %d columns, got shape %s" %
                                  (self.input_dim, a.shape))
        u = (a.astype(np.float64) - self.mean) / self.std
        return np.clip(u, -self.clip, self.clip).astype(np.float32)


class NumpyMlp:
    """Forward passes for one ModelSpec; holds no parameters (nor statistics)."""

    def __init__(self, spec: "config_pb2.ModelSpec") -> None:
        """spec: a deltaserve.v1.ModelSpec. ValueError for an unknown activation."""
        self.input_dim = int(spec.input_dim)
        # (weight offset, bias offset, units, fan_in, activation fn) per layer
        self.layers: List[Tuple[int, int, int, int, Callable[[np.ndarray], np.ndarray]]] = []
        offset = 0
        fan_in = self.input_dim
        for layer in spec.layers:
            if layer.activation not in _ACTIVATIONS:
                raise ValueError("layer activation %d is not supported" % layer.activation)
            units = int(layer.units)
            self.layers.append((offset, offset + units * fan_in, units, fan_in,
                                _ACTIVATIONS[layer.activation]))
            offset += units * (fan_in + 1)
            fan_in = units
        self.output_dim = fan_in
        self.parameter_count = offset
        # The model normalises its inputs: forward() then needs a version's statistics.
        self.normalizes = (spec.input_normalization.kind
                           == config_pb2.InputNormalization.RUNNING_MEAN_STD)

    def forward(self, params: npt.ArrayLike, x: npt.ArrayLike,
                statistics: "Optional[InputNormalizer]" = None) -> np.ndarray:
        """Returns f(x; params) as float32 [n x output_dim] for x [n x input_dim] (or [input_dim]).

        With ``statistics`` (the version's InputNormalizer), f(x) = mlp(normalize(x)), as
        the server computes it for a model whose inputs are normalised; such a model
        needs them (InvalidArgument without), a model that does not refuses them.

        Raises InvalidArgument (a ValueError) for a wrong parameter count or input width.
        """
        if statistics is None and self.normalizes:
            raise InvalidArgument("this model normalises its inputs (input_normalization "
                                  "RUNNING_MEAN_STD): pass the version's statistics")
        if statistics is not None and not self.normalizes:
            raise InvalidArgument("this model does not normalise its inputs: pass no statistics")
        if statistics is not None and statistics.input_dim != self.input_dim:
            raise InvalidArgument("expected statistics of %d columns, got %d" %
                                  (self.input_dim, statistics.input_dim))
        params = np.asarray(params, dtype=np.float32)
        if params.shape != (self.parameter_count,):
            raise InvalidArgument("expected %d parameters, got shape %s" %
                                  (self.parameter_count, params.shape))
        a = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if a.ndim != 2 or a.shape[1] != self.input_dim:
            raise InvalidArgument("expected inputs with %d columns, got shape %s" %
                                  (self.input_dim, a.shape))
        if statistics is not None:
            a = statistics.normalize(a)
        for w_off, b_off, units, fan_in, act in self.layers:
            w = params[w_off:b_off].reshape(units, fan_in)
            b = params[b_off:b_off + units]
            a = act(a @ w.T + b)
        return a.astype(np.float32, copy=False)
