"""The MLP forward pass in numpy, over the wire contract's flat parameter layout.

For each layer in order: weight W [units x fan_in] row-major, then bias b [units]
(torch.nn.Linear's layout); rows of X are samples, so A_l = act(A_{l-1} W^T + b).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np
import numpy.typing as npt

from deltaserve_client._stubs import config_pb2
from deltaserve_client.errors import InvalidArgument

_ACTIVATIONS: Dict[int, Callable[[np.ndarray], np.ndarray]] = {
    config_pb2.ACTIVATION_IDENTITY: lambda z: z,
    config_pb2.ACTIVATION_TANH: np.tanh,
    config_pb2.ACTIVATION_RELU: lambda z: np.maximum(z, 0.0),
    config_pb2.ACTIVATION_SIGMOID: lambda z: 1.0 / (1.0 + np.exp(-z)),
}


class NumpyMlp:
    """Forward passes for one ModelSpec; holds no parameters."""

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

    def forward(self, params: npt.ArrayLike, x: npt.ArrayLike) -> np.ndarray:
        """Returns f(x; params) as float32 [n x output_dim] for x [n x input_dim] (or [input_dim]).

        Raises InvalidArgument (a ValueError) for a wrong parameter count or input width.
        """
        params = np.asarray(params, dtype=np.float32)
        if params.shape != (self.parameter_count,):
            raise InvalidArgument("expected %d parameters, got shape %s" %
                                  (self.parameter_count, params.shape))
        a = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if a.ndim != 2 or a.shape[1] != self.input_dim:
            raise InvalidArgument("expected inputs with %d columns, got shape %s" %
                                  (self.input_dim, a.shape))
        for w_off, b_off, units, fan_in, act in self.layers:
            w = params[w_off:b_off].reshape(units, fan_in)
            b = params[b_off:b_off + units]
            a = act(a @ w.T + b)
        return a.astype(np.float32, copy=False)
