"""TrainerClient: the deltaserve.v1.Trainer calls over numpy arrays.

Every call has a deadline (``timeout`` seconds). Errors are raised as the
``grpc.RpcError`` the server returned, so callers can branch on ``e.code()``
(INVALID_ARGUMENT for bad shapes, NOT_FOUND for unknown models, ABORTED for
too-stale submissions, RESOURCE_EXHAUSTED for a full queue).
"""

import grpc
import numpy as np

from deltaserve_client._stubs import trainer_pb2, trainer_pb2_grpc


def to_matrix(array):
    """A float32 numpy array [rows x cols] (or a vector, one row) as a deltaserve.v1.Matrix."""
    a = np.atleast_2d(np.asarray(array, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError("expected a 2-D array, got shape %s" % (a.shape,))
    m = trainer_pb2.Matrix(rows=a.shape[0], cols=a.shape[1])
    m.data.extend(a.ravel().tolist())
    return m


def from_matrix(matrix):
    """A deltaserve.v1.Matrix as a float32 numpy array [rows x cols]."""
    return np.asarray(matrix.data, dtype=np.float32).reshape(matrix.rows, matrix.cols)


class TrainerClient:
    """One model on one server. Thread-safe (gRPC channels and stubs are)."""

    def __init__(self, target, model="", timeout=10.0, channel=None):
        """target: "host:port" or "unix:PATH"; model: "" for the server's default model."""
        self.model = model
        self.timeout = timeout
        self._channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 64 << 20),
                             ("grpc.max_send_message_length", 64 << 20)])
        self._stub = trainer_pb2_grpc.TrainerStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_model_info(self):
        """The deltaserve.v1.ModelInfo (spec, version, parameter_count, output_dim)."""
        return self._stub.GetModelInfo(trainer_pb2.GetModelInfoRequest(model=self.model),
                                       timeout=self.timeout)

    def forward(self, inputs):
        """Returns (outputs float32 [n x output_dim], version) for inputs [n x input_dim]."""
        resp = self._stub.Forward(
            trainer_pb2.ForwardRequest(model=self.model, inputs=to_matrix(inputs)),
            timeout=self.timeout)
        return from_matrix(resp.outputs), resp.version

    def submit_delta(self, inputs, deltas, version, outputs=None, maximize=False):
        """Submits delta = d loss / d y for inputs X, produced by model `version`.

        outputs: the acted output y~ (same shape as deltas), or None for y~ = y.
        maximize: True if deltas is d reward / d y (the server negates it).
        Returns the deltaserve.v1.SubmitDeltaResponse (version, surrogate_loss,
        staleness, stepped) once the delta is applied.
        """
        req = trainer_pb2.SubmitDeltaRequest(
            model=self.model, inputs=to_matrix(inputs), deltas=to_matrix(deltas),
            version=int(version),
            objective=trainer_pb2.MAXIMIZE if maximize else trainer_pb2.MINIMIZE)
        if outputs is not None:
            req.outputs.CopyFrom(to_matrix(outputs))
        return self._stub.SubmitDelta(req, timeout=self.timeout)

    def get_parameters(self):
        """Returns (parameters float32 [parameter_count], version)."""
        update = self._stub.GetParameters(trainer_pb2.GetParametersRequest(model=self.model),
                                          timeout=self.timeout)
        return np.asarray(update.parameters, dtype=np.float32), update.version

    def watch(self, timeout=None):
        """Yields (parameters, version) now and for each newer version (latest wins).

        The stream has no deadline unless `timeout` is given; cancel it by
        calling .cancel() on the returned iterator's underlying call, or by
        closing the client. Raises grpc.RpcError when the stream ends in error.
        """
        call = self._stub.WatchParameters(
            trainer_pb2.WatchParametersRequest(model=self.model), timeout=timeout)
        return _WatchIterator(call)


class _WatchIterator:
    """Iterator over a WatchParameters stream with cancel()."""

    def __init__(self, call):
        self._call = call

    def __iter__(self):
        return self

    def __next__(self):
        update = next(self._call)
        return np.asarray(update.parameters, dtype=np.float32), update.version

    def cancel(self):
        self._call.cancel()
