"""numpy arrays to and from the deltaserve.v1 messages: the one place the client
builds a request or reads a result, shared by TrainerClient (unary calls) and
Session (the stream), so both send the same bytes for the same arguments.
"""

from __future__ import annotations

import math
import numbers
import re
import uuid
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import numpy.typing as npt

from deltaserve_client._stubs import trainer_pb2
from deltaserve_client.errors import InvalidArgument


def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _packed_floats(message: object, field: int) -> np.ndarray:
    """The packed `repeated float` field number ``field`` of ``message`` as float32, read
    from the message's wire bytes with np.frombuffer: numpy's conversion of protobuf's
    repeated container goes element by element (about 1 ms per 4,500 floats, more under
    load), re-serialising and reading the bytes about 0.1 ms."""
    buf = message.SerializeToString()  # type: ignore[attr-defined]
    parts, i, n = [], 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, i = _varint(buf, i)
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            if number == field:  # an unpacked element (legal on the wire)
                parts.append(np.frombuffer(buf, "<f4", 1, i))
            i += 4
        elif wire_type == 2:
            length, i = _varint(buf, i)
            if number == field:
                parts.append(np.frombuffer(buf, "<f4", length // 4, i))
            i += length
        else:
            raise InvalidArgument("unexpected wire type %d in %s" % (wire_type,
                                                                      type(message).__name__))
    if not parts:
        return np.zeros(0, np.float32)
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.float32)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def to_matrix(array: npt.ArrayLike) -> trainer_pb2.Matrix:
    """A numpy array [rows x cols] (or a vector: one row) as a float32 deltaserve.v1.Matrix.

    The message is parsed from its wire bytes (rows, cols and the data as one packed
    little-endian float32 field): filling the repeated field element by element cost
    ~0.1 ms per 1,000 floats. Raises InvalidArgument (a ValueError) for arrays of more
    than 2 dimensions.
    """
    a = np.atleast_2d(np.asarray(array, dtype=np.float32))
    if a.ndim != 2:
        raise InvalidArgument("expected a 2-D array, got shape %s" % (a.shape,))
    data = np.ascontiguousarray(a, dtype="<f4").tobytes()
    wire = b"".join((b"\x08", _varint_bytes(a.shape[0]), b"\x10", _varint_bytes(a.shape[1]),
                     b"\x1a", _varint_bytes(len(data)), data))  # fields 1, 2 and 3 (packed)
    return trainer_pb2.Matrix.FromString(wire)


def from_matrix(matrix: trainer_pb2.Matrix) -> np.ndarray:
    """A deltaserve.v1.Matrix as a float32 numpy array [rows x cols]."""
    return _packed_floats(matrix, 3).reshape(matrix.rows, matrix.cols)  # Matrix.data


def forward_request(model: str, inputs: npt.ArrayLike) -> trainer_pb2.ForwardRequest:
    """The ForwardRequest for ``inputs`` [n x input_dim] (or one row)."""
    return trainer_pb2.ForwardRequest(model=model, inputs=to_matrix(inputs))


def forward_result(response: trainer_pb2.ForwardResponse) -> Tuple[np.ndarray, int]:
    """(outputs float32 [n x output_dim], version that produced them)."""
    return from_matrix(response.outputs), int(response.version)


# The rules of SubmitDeltaRequest.metrics (trainer.proto; the C++ client's
# proto/client_metrics.h states the same): the server drops a metric that
# breaks one, so the client refuses it before sending.
MAX_METRIC_NAMES = 64
_METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_metrics(metrics: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """The reported metrics as {name: float}, or InvalidArgument (a ValueError) naming the
    rule a metric breaks: names match [A-Za-z_][A-Za-z0-9_]{0,63}, values are finite
    real numbers, at most 64 names. None → {}."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidArgument("metrics: expected a mapping of name to number, got %s"
                              % type(metrics).__name__)
    if len(metrics) > MAX_METRIC_NAMES:
        raise InvalidArgument("metrics: at most %d names per model, got %d in one submission; "
                              "nothing was sent" % (MAX_METRIC_NAMES, len(metrics)))
    checked: Dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or _METRIC_NAME.fullmatch(name) is None:
            raise InvalidArgument("metrics: name %.80r must match [A-Za-z_][A-Za-z0-9_]{0,63}; "
                                  "nothing was sent" % (name,))
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidArgument("metrics: value of %r must be a real number, got %s; "
                                  "nothing was sent" % (name, type(value).__name__))
        if not math.isfinite(float(value)):
            raise InvalidArgument("metrics: value of %r must be finite, got %r; nothing was sent"
                                  % (name, float(value)))
        checked[name] = float(value)
    return checked


def submit_delta_request(model: str, inputs: npt.ArrayLike, deltas: npt.ArrayLike, version: int,
                         outputs: Optional[npt.ArrayLike], maximize: bool,
                         request_id: Optional[str],
                         metrics: Optional[Mapping[str, float]] = None,
                         return_input_gradient: bool = False,
                         return_parameters: bool = False) -> trainer_pb2.SubmitDeltaRequest:
    """The SubmitDeltaRequest for δ = ``deltas`` at ``inputs`` (TrainerClient.submit_delta
    describes the arguments); request_id None → a new random one. Raises InvalidArgument
    for metrics that break a rule (check_metrics)."""
    checked = check_metrics(metrics)
    request = trainer_pb2.SubmitDeltaRequest(
        model=model, inputs=to_matrix(inputs), deltas=to_matrix(deltas), version=int(version),
        objective=trainer_pb2.MAXIMIZE if maximize else trainer_pb2.MINIMIZE,
        request_id=request_id if request_id is not None else uuid.uuid4().hex,
        return_input_gradient=bool(return_input_gradient),
        return_parameters=bool(return_parameters))
    if outputs is not None:
        request.outputs.CopyFrom(to_matrix(outputs))
    if checked:
        request.metrics.update(checked)
    return request


def input_gradient_request(model: str, inputs: npt.ArrayLike,
                           deltas: npt.ArrayLike) -> trainer_pb2.InputGradientRequest:
    """The InputGradientRequest for δ = ``deltas`` [n x output_dim] at ``inputs``."""
    return trainer_pb2.InputGradientRequest(model=model, inputs=to_matrix(inputs),
                                            deltas=to_matrix(deltas))


def input_gradient_result(response: trainer_pb2.InputGradientResponse
                          ) -> Tuple[np.ndarray, np.ndarray, int]:
    """(input_gradient float32 [n x input_dim], outputs float32 [n x output_dim], version)."""
    return (from_matrix(response.input_gradient), from_matrix(response.outputs),
            int(response.version))


def parameters_result(update: trainer_pb2.ParameterUpdate) -> Tuple[np.ndarray, int]:
    """(parameters float32 [parameter_count], version); layout as in ModelSpec."""
    return _packed_floats(update, 3), int(update.version)  # ParameterUpdate.parameters
