"""Session: many Forward / SubmitDelta / InputGradient calls on one Trainer/Session stream.

    with client.session() as s:                      # TrainerClient.session()
        y, version = s.forward(x)                    # blocking
        f = s.forward_async(x)                       # concurrent.futures.Future
        s.submit_delta(x, delta, version, outputs=y)
        dx, y3, v3 = s.input_gradient(x, delta)      # δᵀ·∂y/∂X, read-only
        y2, v2 = f.result()

One bidirectional stream pays gRPC's per-call cost once instead of per call;
answers come back by id, in any order. A bad call raises the same
DeltaserveError subclass with the same message as the unary call would, and
the stream goes on. If the stream itself ends (server shutdown → Unavailable,
close()), unanswered calls fail with that error and later calls raise it at
once: open a new session. A submit that failed so may or may not have been
applied: send it again with the same ``request_id`` and the server applies it
at most once. At most ``max_in_flight`` calls are unanswered: one more waits
for an answer. Thread-safe.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Dict, Iterator, Mapping, Optional, Protocol, Tuple, Union, cast

import grpc
import numpy as np
import numpy.typing as npt

from deltaserve_client._stubs import trainer_pb2, trainer_pb2_grpc
from deltaserve_client.convert import (forward_request, forward_result, input_gradient_request,
                                       input_gradient_result, submit_delta_request)
from deltaserve_client.errors import (DeltaserveError, FailedPrecondition, Unavailable,
                                      error_class, from_rpc_error)

DEFAULT_MAX_IN_FLIGHT = 64


class _End:
    """Put on the request queue: half-close the stream."""


_END = _End()
_Answer = Union[Tuple[np.ndarray, int], trainer_pb2.SubmitDeltaResponse]


class SessionOwner(Protocol):
    """What a Session uses of the TrainerClient that opens it (TrainerClient is one)."""

    model: str
    timeout: float
    wait_for_ready: bool
    _stub: trainer_pb2_grpc.TrainerStub


class _ResponseCall(Protocol):
    """A Session call as gRPC returns it: an iterator of answers that can be cancelled."""

    def __iter__(self) -> Iterator[trainer_pb2.SessionResponse]: ...

    def cancel(self) -> bool: ...


class Session:
    """One Session stream of ``client`` (a TrainerClient) for ``client.model``."""

    def __init__(self, client: SessionOwner, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise FailedPrecondition("max_in_flight must be >= 1, got %r" % (max_in_flight,))
        self._client = client
        self._room = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._pending: Dict[int, Tuple[Future[_Answer], str]] = {}
        self._next_id = 1
        self._ended: Optional[DeltaserveError] = None
        self._closing = False
        self._requests: queue.SimpleQueue[Union[trainer_pb2.SessionRequest, _End]] = \
            queue.SimpleQueue()
        self._call: _ResponseCall = client._stub.Session(self._request_iterator(),
                                                         wait_for_ready=client.wait_for_ready)
        self._reader = threading.Thread(target=self._read, name="deltaserve-session",
                                        daemon=True)
        self._reader.start()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- asynchronous calls ----

    def forward_async(self, inputs: npt.ArrayLike) -> Future[Tuple[np.ndarray, int]]:
        """Future of (outputs float32 [n x output_dim], version), as TrainerClient.forward."""
        request = trainer_pb2.SessionRequest(forward=forward_request(self._client.model, inputs))
        return cast("Future[Tuple[np.ndarray, int]]", self._issue(request, "forward"))

    def submit_delta_async(self, inputs: npt.ArrayLike, deltas: npt.ArrayLike, version: int,
                           outputs: Optional[npt.ArrayLike] = None, maximize: bool = False, *,
                           request_id: Optional[str] = None,
                           metrics: Optional[Mapping[str, float]] = None,
                           return_input_gradient: bool = False,
                           return_parameters: bool = False
                           ) -> Future[trainer_pb2.SubmitDeltaResponse]:
        """Future of the SubmitDeltaResponse, as TrainerClient.submit_delta (no retries).
        Metrics that break a rule raise InvalidArgument here, before anything is sent."""
        submit = submit_delta_request(self._client.model, inputs, deltas, version, outputs,
                                      maximize, request_id, metrics, return_input_gradient,
                                      return_parameters)
        return cast("Future[trainer_pb2.SubmitDeltaResponse]",
                    self._issue(trainer_pb2.SessionRequest(submit=submit), "submit"))

    def input_gradient_async(self, inputs: npt.ArrayLike, deltas: npt.ArrayLike
                             ) -> Future[Tuple[np.ndarray, np.ndarray, int]]:
        """Future of (input_gradient, outputs, version), as TrainerClient.input_gradient."""
        request = trainer_pb2.SessionRequest(
            input_gradient=input_gradient_request(self._client.model, inputs, deltas))
        return cast("Future[Tuple[np.ndarray, np.ndarray, int]]",
                    self._issue(request, "input_gradient"))

    # ---- the blocking wrapper ----

    def forward(self, inputs: npt.ArrayLike, timeout: Optional[float] = None
                ) -> Tuple[np.ndarray, int]:
        """y = f(X; Θ); blocks for the answer (``timeout`` seconds, None → the client's)."""
        return self.forward_async(inputs).result(self._timeout(timeout))

    def submit_delta(self, inputs: npt.ArrayLike, deltas: npt.ArrayLike, version: int,
                     outputs: Optional[npt.ArrayLike] = None, maximize: bool = False, *,
                     request_id: Optional[str] = None,
                     timeout: Optional[float] = None,
                     metrics: Optional[Mapping[str, float]] = None,
                     return_input_gradient: bool = False,
                     return_parameters: bool = False) -> "trainer_pb2.SubmitDeltaResponse":
        """Submits δ and blocks until it is applied; see TrainerClient.submit_delta."""
        return self.submit_delta_async(
            inputs, deltas, version, outputs, maximize, request_id=request_id, metrics=metrics,
            return_input_gradient=return_input_gradient,
            return_parameters=return_parameters).result(self._timeout(timeout))

    def input_gradient(self, inputs: npt.ArrayLike, deltas: npt.ArrayLike,
                       timeout: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray, int]:
        """δᵀ·∂y/∂X, y and the version; blocks; see TrainerClient.input_gradient."""
        return self.input_gradient_async(inputs, deltas).result(self._timeout(timeout))

    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Half-closes the stream, waits for every answer and for the stream to end.
        Idempotent. Later calls raise FailedPrecondition."""
        with self._lock:
            first = not self._closing
            self._closing = True
        if first:
            self._requests.put(_END)
        self._reader.join()

    def cancel(self) -> None:
        """Ends the stream now: unanswered calls fail with Cancelled."""
        self._call.cancel()
        self.close()

    # ---- internals ----

    def _timeout(self, timeout: Optional[float]) -> float:
        return self._client.timeout if timeout is None else timeout

    def _issue(self, request: trainer_pb2.SessionRequest, kind: str) -> Future[_Answer]:
        self._room.acquire()  # Bounded: waits while max_in_flight calls are unanswered.
        future: Future[_Answer] = Future()
        with self._lock:
            refusal = FailedPrecondition("Session is closed") if self._closing else self._ended
            if refusal is None:
                request.id = self._next_id
                self._next_id += 1
                self._pending[request.id] = (future, kind)
        if refusal is not None:
            self._room.release()
            future.set_exception(refusal)
            return future
        self._requests.put(request)
        return future

    def _request_iterator(self) -> Iterator[trainer_pb2.SessionRequest]:
        while True:
            request = self._requests.get()
            if isinstance(request, _End):
                return
            yield request

    def _read(self) -> None:
        ended: Optional[DeltaserveError] = None
        try:
            for response in self._call:
                self._answer(response)
        except grpc.RpcError as e:
            ended = from_rpc_error(e)
        with self._lock:
            self._ended = ended or Unavailable("Session stream ended")
            pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            self._room.release()
            future.set_exception(self._ended if ended is not None else
                                 Unavailable("Session stream ended before the call was answered"))
        self._requests.put(_END)  # Ends the request iterator if it is still waiting.

    def _answer(self, response: trainer_pb2.SessionResponse) -> None:
        with self._lock:
            entry = self._pending.pop(response.id, None)
        if entry is None:
            return
        self._room.release()
        future, kind = entry
        which = response.WhichOneof("result")
        if which == "error":
            code = _CODES.get(response.error.code, grpc.StatusCode.UNKNOWN)
            future.set_exception(error_class(code)(response.error.message, code))
        elif which == "forward" and kind == "forward":
            future.set_result(forward_result(response.forward))
        elif which == "submit" and kind == "submit":
            future.set_result(response.submit)
        elif which == "input_gradient" and kind == "input_gradient":
            future.set_result(input_gradient_result(response.input_gradient))
        else:
            future.set_exception(DeltaserveError("Session: expected a %s answer, got %r"
                                                 % (kind, which), grpc.StatusCode.INTERNAL))


_CODES = {code.value[0]: code for code in grpc.StatusCode}
