"""NumpyReplica: a local copy of a model's weights, kept fresh by WatchParameters.

A background thread reads the weight stream and swaps in each new
(parameters, version) pair; forward() runs the MLP locally in numpy on the
newest pair, so acting costs no round trip. Readers never wait for the
watcher: the pair is replaced as one immutable tuple.

Server restarts. When the stream ends (the server stopped, crashed or
restarted; the network broke), the replica marks itself disconnected
(``connected`` is False, ``error`` holds the reason) and re-subscribes, with
exponential backoff (``backoff_initial`` doubling up to ``backoff_max``
seconds, with jitter) between attempts that fail at once. The re-subscription
waits for the server to be reachable again. The first update of every new
stream is taken as the truth, even when its version is LOWER than the one
held: a restarted server starts again at version 0, and its weights are the
ones submissions are now judged against. On a re-subscription the replica
also refetches the model spec, so a server restarted with a different
architecture is followed too.

While disconnected, forward() keeps serving the last weights received and
their version (``serve_while_disconnected=True``, the default: a simulator
keeps acting, and its later submit_delta tells it whether the server is
back); with ``serve_while_disconnected=False`` it raises Unavailable instead.
Check ``connected`` / ``version`` / ``subscriptions`` to see which weights
you get.

Freshness: the stream runs on the client's watch channel (small HTTP/2 window,
no BDP probing; ``TrainerClient(watch_window_bytes=...)``), so even a watcher
thread slower than the learner holds the newest version, not a backlog.
"""

from __future__ import annotations

import random
import threading
from typing import Callable, Optional, Tuple

import numpy as np
import numpy.typing as npt

from deltaserve_client.client import TrainerClient, WatchStream
from deltaserve_client.errors import (DeadlineExceeded, DeltaserveError, FailedPrecondition,
                                      Unavailable)
from deltaserve_client.mlp import InputNormalizer, NumpyMlp


class NumpyReplica:
    """Local forward passes at the newest version pushed by the server.

    Args:
        client: the TrainerClient (its model and channel are used).
        serve_while_disconnected: what forward() does while the stream is down: serve
            the last weights (True) or raise Unavailable (False).
        backoff_initial, backoff_max: re-subscription backoff bounds, in seconds.

    Use as a context manager (``with NumpyReplica(client) as r:``), or call start()
    and stop(). The constructor fetches the model spec (raises e.g. NotFound).
    """

    def __init__(self, client: TrainerClient, *, serve_while_disconnected: bool = True,
                 backoff_initial: float = 0.05, backoff_max: float = 2.0) -> None:
        self._client = client
        self.info = client.get_model_info()
        self.mlp = NumpyMlp(self.info.spec)
        self.serve_while_disconnected = serve_while_disconnected
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # (parameters, version, mlp, input statistics or None), replaced atomically
        self._latest: Optional[Tuple[np.ndarray, int, NumpyMlp, Optional[InputNormalizer]]] = None
        self._cond = threading.Condition()
        self._stream: Optional[WatchStream] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._connected = False
        self._subscriptions = 0
        #: The DeltaserveError that ended the last stream (None while connected).
        self.error: Optional[DeltaserveError] = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "NumpyReplica":
        """Starts the watcher and waits up to ``timeout`` s for the first weights.

        Raises the stream's DeltaserveError if the first subscription fails, or
        DeadlineExceeded (a TimeoutError) if no weights arrive in time.
        """
        if self._thread is not None:
            raise FailedPrecondition("NumpyReplica.start called twice")
        self._thread = threading.Thread(target=self._run, name="deltaserve-replica",
                                        daemon=True)
        self._thread.start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._subscriptions > 0 or self.error is not None or self._stopped,
                timeout)
            ready = self._subscriptions > 0
            error = self.error
        if not ready:
            self.stop()
            if error is not None:
                raise error
            raise DeadlineExceeded("no parameters from WatchParameters within %.1f s" % timeout)
        return self

    def stop(self) -> None:
        """Cancels the stream and joins the watcher thread. Idempotent."""
        with self._cond:
            self._stopped = True
            self._connected = False
            stream = self._stream
            self._cond.notify_all()
        if stream is not None:
            stream.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)

    def __enter__(self) -> "NumpyReplica":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the watcher thread --------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_initial
        while True:
            with self._cond:
                if self._stopped:
                    return
                first = self._subscriptions == 0
            # The first subscription follows the client's wait_for_ready (start() reports
            # a failure at once); re-subscriptions wait for the server to come back.
            delivered = False
            try:
                stream = self._client.watch(wait_for_ready=None if first else True)
                with self._cond:
                    self._stream = stream
                    if self._stopped:
                        stream.cancel()
                        return
                mlp = self.mlp
                for params, version in stream:
                    if not delivered:
                        mlp = self._mlp_for_new_stream(first, params)
                    statistics = self._statistics(mlp, stream.last_update)
                    with self._cond:
                        self._latest = (params, version, mlp, statistics)
                        if not delivered:
                            self._subscriptions += 1
                            self._connected = True
                            self.error = None
                        self._cond.notify_all()
                    delivered = True
                error: DeltaserveError = Unavailable("WatchParameters stream ended by the server")
            except DeltaserveError as e:
                error = e
            with self._cond:
                self._connected = False
                if self._stopped:
                    return
                self.error = error
                self._cond.notify_all()
                if first and not delivered:
                    return  # start() raises it
                if delivered:
                    delay = self.backoff_initial
                wait = delay * random.uniform(0.5, 1.0)
                delay = min(delay * 2, self.backoff_max)
                self._cond.wait_for(lambda: self._stopped, wait)  # backoff, woken by stop()

    def _mlp_for_new_stream(self, first: bool, params: np.ndarray) -> NumpyMlp:
        """The MLP for a stream's first update; refetches the spec after a reconnect."""
        if not first:
            info = self._client.get_model_info()
            if info.spec != self.info.spec:
                self.mlp = NumpyMlp(info.spec)
            self.info = info
        if params.shape != (self.mlp.parameter_count,):
            raise FailedPrecondition(
                "WatchParameters sent %d parameters, model spec says %d"
                % (params.size, self.mlp.parameter_count))
        return self.mlp

    @staticmethod
    def _statistics(mlp: NumpyMlp, update: object) -> Optional[InputNormalizer]:
        """The update's input statistics, which a normalising model's updates carry."""
        try:
            statistics = InputNormalizer.from_update(update)  # type: ignore[arg-type]
        except ValueError as e:
            raise FailedPrecondition("WatchParameters sent invalid %s" % e) from e
        if (statistics is not None) != mlp.normalizes:
            raise FailedPrecondition(
                "WatchParameters sent an update %s input statistics for a model that %s"
                % ("with" if statistics is not None else "without",
                   "does not normalise its inputs" if statistics is not None
                   else "normalises its inputs"))
        if statistics is not None and statistics.input_dim != mlp.input_dim:
            raise FailedPrecondition("WatchParameters sent input statistics of %d columns, "
                                     "model spec says %d" % (statistics.input_dim, mlp.input_dim))
        return statistics

    # -- state ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a stream is up and has delivered its first weights."""
        return self._connected

    @property
    def subscriptions(self) -> int:
        """How many streams have delivered weights (1 after start(); +1 per reconnect)."""
        return self._subscriptions

    @property
    def version(self) -> Optional[int]:
        """The version of the weights forward() uses, or None before the first."""
        latest = self._latest
        return None if latest is None else latest[1]

    def parameters(self) -> Optional[Tuple[np.ndarray, int]]:
        """(parameters, version) of the weights forward() uses, or None."""
        latest = self._latest
        return None if latest is None else (latest[0], latest[1])

    def input_statistics(self) -> Optional[InputNormalizer]:
        """The input statistics forward() uses (None without input normalisation or before
        the first weights)."""
        latest = self._latest
        return None if latest is None else latest[3]

    def _wait(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate() or self._stopped, timeout) \
                and predicate()

    def wait_for_version(self, version: int, timeout: Optional[float]) -> bool:
        """Blocks until weights of a version >= ``version`` are held and connected.

        Returns False on timeout or after stop(). Versions count from the current
        server's start: after a restart they begin again at 0.
        """
        return self._wait(lambda: self._connected and self._latest is not None
                          and self._latest[1] >= version, timeout)

    def wait_for_subscription(self, count: int, timeout: Optional[float]) -> bool:
        """Blocks until ``count`` streams have delivered weights and one is up now.

        ``wait_for_subscription(replica.subscriptions + 1, t)`` waits for the next
        reconnect. Returns False on timeout or after stop().
        """
        return self._wait(lambda: self._connected and self._subscriptions >= count, timeout)

    def wait_disconnected(self, timeout: Optional[float]) -> bool:
        """Blocks until the stream is down (e.g. the server went away); False on timeout."""
        return self._wait(lambda: not self._connected, timeout)

    # -- forward -------------------------------------------------------------------------

    def forward(self, inputs: npt.ArrayLike) -> Tuple[np.ndarray, int]:
        """Returns (outputs float32 [n x output_dim], version), computed locally.

        Raises FailedPrecondition before start(), Unavailable while disconnected if
        ``serve_while_disconnected`` is False, InvalidArgument (a ValueError) for
        inputs of the wrong width.
        """
        latest = self._latest
        if latest is None:
            raise FailedPrecondition(
                "NumpyReplica.forward before any parameters arrived; call start()")
        if not self.serve_while_disconnected and not self._connected:
            error = self.error
            raise Unavailable("replica disconnected from %s%s" % (
                self._client.target, "" if error is None else " (%s)" % error))
        params, version, mlp, statistics = latest
        return mlp.forward(params, inputs, statistics), version
