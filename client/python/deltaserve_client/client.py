"""TrainerClient: the deltaserve.v1.Trainer calls over numpy arrays.

Every unary call has a deadline (the client's ``timeout``, or a per-call
``timeout=``), and every failure is raised as a
:class:`deltaserve_client.DeltaserveError` subclass chosen by status code
(:class:`InvalidArgument` for bad shapes, :class:`NotFound` for unknown
models, :class:`Aborted` for too-stale submissions, :class:`ResourceExhausted`
for a full queue, :class:`Unavailable` when the server is down, ...), never
as a raw ``grpc.RpcError``.

Reconnects: the gRPC channel reconnects by itself when the server restarts on
the same address; this client caps the channel's reconnect backoff
(``max_reconnect_backoff``, 2 s by default instead of gRPC's 120 s) so it
notices a restarted server quickly. While the server is down, calls fail fast
with :class:`Unavailable` unless ``wait_for_ready=True``, in which case they
wait for the server until their deadline (then :class:`DeadlineExceeded`).

Watches and slow readers. WatchParameters is latest-wins on the server (one
write in flight per watcher, then the newest version), but gRPC completes a
write once its bytes fit the receiver's HTTP/2 stream window, which gRPC grows
to megabytes by BDP probing: thousands of small updates would queue in order
ahead of a slow reader. So watch() runs on a channel of its own with BDP
probing off and a stream window of ``watch_window_bytes`` (64 by default;
``grpc.http2.bdp_probe = 0``, ``grpc.http2.lookahead_bytes``): a reader that
falls behind keeps the server's write waiting, and gets the newest version
when it next reads, about one read's worth of learner steps old. The window
never stalls big updates (gRPC widens it for the message being read), and the
unary calls keep the ordinary channel.

Security (docs/security.md): ``tls_ca_file`` (and optionally ``tls_cert_file`` /
``tls_key_file`` for mutual TLS, ``tls_server_name``) switch to TLS; ``token``,
``token_file`` or ``$DELTASERVE_TOKEN`` add ``authorization: Bearer <token>`` to
every call (deltaserve_client.security).
"""

from __future__ import annotations

import os
import time
from typing import (Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple,
                    TypeVar, Union)

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from deltaserve_client import security
from deltaserve_client._stubs import trainer_pb2, trainer_pb2_grpc
from deltaserve_client.convert import (forward_request, forward_result, from_matrix,
                                       input_gradient_request, input_gradient_result,
                                       parameters_result, submit_delta_request, to_matrix)
from deltaserve_client.errors import (DeadlineExceeded, InvalidArgument, Unavailable,
                                      from_rpc_error)
from deltaserve_client.session import DEFAULT_MAX_IN_FLIGHT, Session

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # the server's default max_message_bytes
# HTTP/2 stream window of the watch channel: bytes of updates the transport may
# receive ahead of the reader, beyond the message being read (module docstring).
DEFAULT_WATCH_WINDOW_BYTES = 64

# gRPC channel arguments: (key, value) with an int or str value.
ChannelOption = Tuple[str, Union[int, str]]
ChannelOptions = Sequence[ChannelOption]

# to_matrix and from_matrix (deltaserve_client.convert) are public here too.
__all__ = ["TrainerClient", "WatchStream", "ChannelOptions", "to_matrix", "from_matrix",
           "DEFAULT_TARGET", "DEFAULT_MAX_MESSAGE_BYTES", "DEFAULT_WATCH_WINDOW_BYTES"]

_Response = TypeVar("_Response")


class TrainerClient:
    """The Trainer service for one model on one server. Thread-safe (gRPC channels are).

    Args:
        target: ``"host:port"`` or ``"unix:PATH"``; None → ``$DELTASERVE_TARGET`` or
            ``127.0.0.1:50051``.
        model: model name; ``""`` selects the server's default (first) model.
        timeout: deadline of each unary call, in seconds (> 0).
        channel: an existing ``grpc.Channel`` to use instead of creating one (the
            client then does not own its options; close() still closes it).
        wait_for_ready: if True, calls made while the server is unreachable wait for it
            (up to their deadline) instead of failing at once with Unavailable.
        max_reconnect_backoff: longest wait, in seconds, between the channel's
            reconnection attempts while the server is down.
        max_message_bytes: largest message sent or received (the server's default is 64 MiB).
        channel_options: extra ``(key, value)`` gRPC channel arguments, e.g. keepalive
            settings; they override the ones above (on both channels).
        watch_window_bytes: HTTP/2 stream window of the separate channel watch() uses
            (>= 0; 0 → gRPC's default, BDP-probed window, with which a slow watcher
            receives a backlog of old versions). Ignored with ``channel=``: watches
            then share that channel and its flow control.
        tls_ca_file, tls_cert_file, tls_key_file, tls_server_name, token, token_file:
            TLS and the bearer token (deltaserve_client.security; ignored with
            ``channel=``). Unreadable files raise InvalidArgument here.
    """

    def __init__(self, target: Optional[str] = None, model: str = "", timeout: float = 10.0,
                 channel: Optional[grpc.Channel] = None, *, wait_for_ready: bool = False,
                 max_reconnect_backoff: float = 2.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 channel_options: Optional[ChannelOptions] = None,
                 watch_window_bytes: int = DEFAULT_WATCH_WINDOW_BYTES,
                 tls_ca_file: Optional[str] = None, tls_cert_file: Optional[str] = None,
                 tls_key_file: Optional[str] = None, tls_server_name: Optional[str] = None,
                 token: Optional[str] = None, token_file: Optional[str] = None) -> None:
        if timeout is None or timeout <= 0:
            raise InvalidArgument("timeout must be > 0 seconds (every call has a deadline), "
                                  "got %r" % (timeout,))
        self.target = target or os.environ.get("DELTASERVE_TARGET") or DEFAULT_TARGET
        self.model = model
        self.timeout = float(timeout)
        self.wait_for_ready = bool(wait_for_ready)
        if watch_window_bytes is None or watch_window_bytes < 0:
            raise InvalidArgument("watch_window_bytes must be >= 0, got %r"
                                  % (watch_window_bytes,))
        watch_channel: Optional[grpc.Channel] = None
        if channel is None:
            backoff_ms = max(1, int(max_reconnect_backoff * 1000))
            options: List[ChannelOption] = [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.initial_reconnect_backoff_ms", min(200, backoff_ms)),
                ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ]
            # Different arguments → a connection of its own (gRPC shares a
            # subchannel only between equal arguments).
            watch_options = options + [("deltaserve.watch_channel", 1)]
            if watch_window_bytes > 0:
                watch_options += [("grpc.http2.bdp_probe", 0),
                                  ("grpc.http2.lookahead_bytes", int(watch_window_bytes))]
            overrides = dict(channel_options or ())

            def merged(base: List[ChannelOption]) -> List[ChannelOption]:
                return [(k, v) for k, v in base if k not in overrides] + list(overrides.items())

            secured = dict(tls_ca_file=tls_ca_file, tls_cert_file=tls_cert_file,
                           tls_key_file=tls_key_file, tls_server_name=tls_server_name,
                           token=token, token_file=token_file)
            channel = security.create_channel(self.target, merged(options), **secured)
            watch_channel = security.create_channel(self.target, merged(watch_options), **secured)
        self._channel = channel
        self._stub = trainer_pb2_grpc.TrainerStub(self._channel)
        self._watch_channel = watch_channel if watch_channel is not None else channel
        self._watch_stub = trainer_pb2_grpc.TrainerStub(self._watch_channel)

    def close(self) -> None:
        """Closes the channels; ongoing calls and watch streams end with Cancelled."""
        if self._watch_channel is not self._channel:
            self._watch_channel.close()
        self._channel.close()

    def __enter__(self) -> "TrainerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "TrainerClient(%r, model=%r)" % (self.target, self.model)

    def _call(self, method: Callable[..., _Response], request: Message,
              timeout: Optional[float], wait_for_ready: Optional[bool]) -> _Response:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout,
                          wait_for_ready=self.wait_for_ready if wait_for_ready is None
                          else wait_for_ready)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def wait_until_ready(self, timeout: Optional[float] = None) -> None:
        """Blocks until the channel is connected to the server (e.g. after a restart).

        timeout: seconds; None → the client's ``timeout``. Raises DeadlineExceeded if
        the server did not become reachable in time.
        """
        timeout = self.timeout if timeout is None else timeout
        future = grpc.channel_ready_future(self._channel)
        try:
            future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            future.cancel()
            raise DeadlineExceeded("server %s not reachable within %.1f s"
                                   % (self.target, timeout)) from None

    def get_model_info(self, *, timeout: Optional[float] = None,
                       wait_for_ready: Optional[bool] = None) -> "trainer_pb2.ModelInfo":
        """The deltaserve.v1.ModelInfo: spec, version, parameter_count, output_dim,
        optimizer_steps and learning_rate (the rate the next optimizer step will
        use, under the spec's optimizer.schedule).

        Raises NotFound for an unknown model name.
        """
        return self._call(self._stub.GetModelInfo,
                          trainer_pb2.GetModelInfoRequest(model=self.model), timeout,
                          wait_for_ready)

    def forward(self, inputs: npt.ArrayLike, *, timeout: Optional[float] = None,
                wait_for_ready: Optional[bool] = None) -> Tuple[np.ndarray, int]:
        """y = f(X; Θ) on the server at its latest version.

        inputs: [n x input_dim] (or one row [input_dim]).
        Returns (outputs float32 [n x output_dim], version that produced them).
        Raises InvalidArgument for a wrong width or non-finite inputs.
        """
        return forward_result(self._call(self._stub.Forward, forward_request(self.model, inputs),
                                         timeout, wait_for_ready))

    def submit_delta(self, inputs: npt.ArrayLike, deltas: npt.ArrayLike, version: int,
                     outputs: Optional[npt.ArrayLike] = None, maximize: bool = False, *,
                     request_id: Optional[str] = None, retries: int = 2,
                     timeout: Optional[float] = None,
                     wait_for_ready: Optional[bool] = None,
                     metrics: Optional[Mapping[str, float]] = None,
                     return_input_gradient: bool = False,
                     return_parameters: bool = False
                     ) -> "trainer_pb2.SubmitDeltaResponse":
        """Submits δ = ∂loss/∂y for inputs X, whose outputs came from model ``version``.

        outputs: the acted output ỹ (same shape as deltas), or None for ỹ = y.
        maximize: True if deltas is ∂reward/∂y (the server negates it).
        request_id: unique per submission; None → a new random one. The server
        applies a request_id once, so a call that timed out (DeadlineExceeded) or
        found the server restarting (Unavailable) is sent again up to ``retries``
        times with the same id: if the first attempt was applied, the retry gets
        the original response (``duplicate`` set) and nothing is applied twice.
        metrics: values to report with it, e.g. ``{"episode_return": 195.0}``; the
        server keeps them if the submission is applied and shows the mean of each
        name's last 100 on /metrics (deltaserve_client_metric{model, name}). Names
        match [A-Za-z_][A-Za-z0-9_]{0,63}, values are finite, at most 64 names:
        otherwise InvalidArgument naming the rule, and nothing is sent.
        return_input_gradient: True → the response's ``input_gradient`` (a Matrix;
        ``convert.from_matrix``) is gᵀ·∂y/∂X [n x input_dim] for this submission's
        surrogate gradient g (docs/model.md, "Input gradients"); a duplicate
        carries the original's.
        return_parameters: True → the response's ``parameters`` is the model's newest
        ParameterUpdate when the server answered (version >= the response's;
        ``convert.parameters_result``): a client acting on its own copy of the model
        acts on the weights its δ made without another round trip. Sends the whole
        parameter buffer per answer: for small models.
        Returns the deltaserve.v1.SubmitDeltaResponse (version, surrogate_loss,
        staleness, stepped, duplicate) once the δ is applied. Raises Aborted if
        ``version`` is too stale, ResourceExhausted if the learner's queue is full,
        InvalidArgument for bad shapes or non-finite values (nothing is applied then).
        """
        req = submit_delta_request(self.model, inputs, deltas, version, outputs, maximize,
                                   request_id, metrics, return_input_gradient,
                                   return_parameters)
        # 100 ms, then 200 ms: the second retry comes after the channel's first
        # reconnect (160-240 ms after a failed connect; initial_reconnect_backoff 200 ms).
        backoff = 0.1
        for attempt in range(retries + 1):
            try:
                return self._call(self._stub.SubmitDelta, req, timeout, wait_for_ready)
            except (DeadlineExceeded, Unavailable):
                if attempt == retries:
                    raise
                time.sleep(backoff)
                backoff *= 2
        raise AssertionError("unreachable")

    def input_gradient(self, inputs: npt.ArrayLike, deltas: npt.ArrayLike, *,
                       timeout: Optional[float] = None, wait_for_ready: Optional[bool] = None
                       ) -> Tuple[np.ndarray, np.ndarray, int]:
        """δᵀ·∂y/∂X, the plain vector-Jacobian product (no surrogate, delta_scale or
        objective), and y = f(X), both at one version; read-only on the server.

        inputs: [n x input_dim], deltas: [n x output_dim] (or one row each).
        Returns (input_gradient float32 [n x input_dim], outputs float32
        [n x output_dim], version). Raises InvalidArgument for bad shapes or
        non-finite values, ResourceExhausted for too many rows.
        """
        return input_gradient_result(self._call(
            self._stub.InputGradient, input_gradient_request(self.model, inputs, deltas),
            timeout, wait_for_ready))

    def get_parameters(self, min_version: int = 0, *, timeout: Optional[float] = None,
                       wait_for_ready: Optional[bool] = None) -> Tuple[np.ndarray, int]:
        """Returns (parameters float32 [parameter_count], version); layout as in ModelSpec.

        min_version: 0 (or at most the model's version) answers at once. Above
        the version the call is a long-poll: the server answers once the model
        reaches min_version, with the NEWEST version at that moment (never an
        older one in between), so a client that pulls instead of watching asks
        for ``last_version + 1`` and always acts on the newest weights. Raises
        DeadlineExceeded if the model does not get there within ``timeout``
        seconds (None → the client's ``timeout``), Unavailable if the server
        shuts down meanwhile, ResourceExhausted if the model already has
        max_parameter_waiters_per_model such calls waiting, InvalidArgument
        (before sending) for a min_version that is not an int in [0, 2**64).
        """
        if (isinstance(min_version, bool) or not isinstance(min_version, (int, np.integer))
                or not 0 <= int(min_version) < 2**64):
            raise InvalidArgument("min_version: expected an int in [0, 2**64), got %r"
                                  % (min_version,))
        request = trainer_pb2.GetParametersRequest(model=self.model,
                                                   min_version=int(min_version))
        return parameters_result(self._call(self._stub.GetParameters, request, timeout,
                                            wait_for_ready))

    def list_models(self, *, timeout: Optional[float] = None,
                    wait_for_ready: Optional[bool] = None) -> List["trainer_pb2.ModelInfo"]:
        """Every model the server serves, each a deltaserve.v1.ModelInfo exactly as
        get_model_info returns it, the default model first (the client's ``model``
        does not matter here)."""
        response = self._call(self._stub.ListModels, trainer_pb2.ListModelsRequest(), timeout,
                              wait_for_ready)
        return list(response.models)

    def get_metrics_history(
            self, since_unix_ms: int = 0, *, timeout: Optional[float] = None,
            wait_for_ready: Optional[bool] = None) -> Dict[str, List[Tuple[int, float]]]:
        """The model's metrics history (GetMetricsHistory, OBSERVER): for every series
        name (loss, grad_norm, noise_scale, ..., "client/<name>"; docs/operations.md,
        "Metrics history") its points ``(unix_ms, value)`` newer than
        ``since_unix_ms``, oldest first."""
        request = trainer_pb2.GetMetricsHistoryRequest(model=self.model,
                                                       since_unix_ms=int(since_unix_ms))
        response = self._call(self._stub.GetMetricsHistory, request, timeout, wait_for_ready)
        return {s.name: list(zip(s.unix_ms, s.values)) for s in response.series}

    def session(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> Session:
        """A Session stream for this client's model: many forward / submit_delta calls
        in flight on one stream, answered by id (deltaserve_client.session). Use it
        as a context manager, or close() it. Like a watch, the stream has no deadline;
        each blocking call waits at most the client's ``timeout``."""
        return Session(self, max_in_flight)

    def watch(self, timeout: Optional[float] = None,
              wait_for_ready: Optional[bool] = None) -> "WatchStream":
        """A WatchParameters stream: yields (parameters, version) now and for each newer
        version. A slow reader skips to the newest: each update it gets is about one
        read's worth of learner steps old, however slow it is (the watch channel's
        small window, see the module docstring).

        The stream is long-lived, so unlike the unary calls it has no deadline unless
        ``timeout`` is given. Stop it with ``.cancel()`` (or by closing the client).
        Iterating raises a DeltaserveError when the stream fails (Unavailable when the
        server goes away, Cancelled after cancel()); it simply ends (StopIteration) if
        the server finishes it with OK.
        """
        call = self._watch_stub.WatchParameters(
            trainer_pb2.WatchParametersRequest(model=self.model), timeout=timeout,
            wait_for_ready=self.wait_for_ready if wait_for_ready is None else wait_for_ready)
        return WatchStream(call)


class _UpdateCall(Protocol):
    """A WatchParameters call as gRPC returns it: an iterator that can be cancelled."""

    def __next__(self) -> trainer_pb2.ParameterUpdate: ...

    def cancel(self) -> bool: ...


class WatchStream(Iterator[Tuple[np.ndarray, int]]):
    """Iterator over a WatchParameters stream of (parameters, version), with cancel()."""

    def __init__(self, call: _UpdateCall) -> None:
        self._call = call
        # The whole ParameterUpdate last yielded (None before the first), e.g. for its
        # input_statistics (deltaserve_client.mlp.InputNormalizer.from_update).
        self.last_update: Optional[trainer_pb2.ParameterUpdate] = None

    def __iter__(self) -> "WatchStream":
        return self

    def __next__(self) -> Tuple[np.ndarray, int]:
        try:
            update = next(self._call)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        self.last_update = update
        return parameters_result(update)

    def cancel(self) -> None:
        """Cancels the stream; a blocked or later next() raises Cancelled."""
        self._call.cancel()


_WatchIterator = WatchStream  # the former private name
