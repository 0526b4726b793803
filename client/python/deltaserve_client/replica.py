"""NumpyReplica: a local copy of a model's weights, kept fresh by WatchParameters.

A background thread reads the weight stream and swaps in each new
(parameters, version) pair; forward() runs the MLP locally in numpy on the
newest pair, so acting costs no round trip. Readers never wait for the
watcher: the pair is replaced as one immutable tuple.
"""

import threading

import grpc

from deltaserve_client.mlp import NumpyMlp


class NumpyReplica:
    """Local forward passes at the newest version pushed by the server."""

    def __init__(self, client):
        """client: a TrainerClient. Fetches the spec; call start() to begin watching."""
        self._client = client
        self.info = client.get_model_info()
        self.mlp = NumpyMlp(self.info.spec)
        self._latest = None  # (params, version), replaced atomically
        self._cond = threading.Condition()
        self._stream = None
        self._thread = None
        self._stopped = False
        self.error = None  # the grpc.RpcError that ended the stream, if any

    def start(self, timeout=10.0):
        """Starts the watcher and waits up to `timeout` s for the first weights.

        Raises TimeoutError if none arrive, or the stream's grpc.RpcError.
        """
        self._stream = self._client.watch()
        self._thread = threading.Thread(target=self._run, name="deltaserve-replica", daemon=True)
        self._thread.start()
        if not self.wait_for_version(0, timeout):
            self.stop()
            if self.error is not None:
                raise self.error
            raise TimeoutError("no parameters from WatchParameters within %.1f s" % timeout)
        return self

    def stop(self):
        """Cancels the stream and joins the watcher thread. Idempotent."""
        with self._cond:
            self._stopped = True
        if self._stream is not None:
            self._stream.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        try:
            for params, version in self._stream:
                with self._cond:
                    self._latest = (params, version)
                    self._cond.notify_all()
        except grpc.RpcError as e:
            with self._cond:
                if not self._stopped:
                    self.error = e
                self._cond.notify_all()

    @property
    def version(self):
        """The newest version received, or None before the first."""
        latest = self._latest
        return None if latest is None else latest[1]

    def parameters(self):
        """(parameters, version) of the newest weights received, or None."""
        return self._latest

    def wait_for_version(self, version, timeout):
        """Blocks until a version >= `version` has arrived; False on timeout or stream end."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._latest is not None and self._latest[1] >= version)
                or self.error is not None or self._stopped, timeout) and \
                self._latest is not None and self._latest[1] >= version

    def forward(self, inputs):
        """Returns (outputs [n x output_dim], version) computed locally."""
        latest = self._latest
        if latest is None:
            raise RuntimeError("NumpyReplica.forward before any parameters arrived; call start()")
        params, version = latest
        return self.mlp.forward(params, inputs), version
