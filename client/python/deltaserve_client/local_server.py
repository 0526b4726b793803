"""LocalServer: runs the `deltaserve` binary as a child process (tests, demos).

The server is started with --listen=127.0.0.1:0 and the bound address is read
from its stdout line `listening on ADDR`. stop() terminates it (SIGTERM, then
SIGKILL after a grace period); kill() ends it abruptly (a crash). Use as a
context manager so it always stops. To restart a server on the same address,
start a new LocalServer with ``listen=old.address``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from typing import List, Optional, Union

from google.protobuf import text_format

from deltaserve_client._stubs import config_pb2


class LocalServer:
    """A `deltaserve` child process; ``address`` is the "host:port" it listens on."""

    def __init__(self, binary: str, config: Union[str, "config_pb2.ServerConfig"],
                 listen: str = "127.0.0.1:0", startup_timeout: float = 30.0,
                 extra_args: Optional[List[str]] = None) -> None:
        """binary: path to `deltaserve`; config: a ServerConfig message or its text format;
        listen: the --listen address; extra_args: more command-line flags.

        Raises RuntimeError (with the server's last stderr lines) if it does not print
        its address within startup_timeout seconds.
        """
        if not isinstance(config, str):
            config = text_format.MessageToString(config)
        else:
            text_format.Parse(config, config_pb2.ServerConfig())  # fail early on typos
        self._config_file = tempfile.NamedTemporaryFile(
            "w", suffix=".textproto", prefix="deltaserve-", delete=False)
        self._config_file.write(config)
        self._config_file.close()
        self.process = subprocess.Popen(
            [binary, "--config=" + self._config_file.name, "--listen=" + listen]
            + list(extra_args or []),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.address: Optional[str] = None
        self.stderr_lines: List[str] = []
        ready = threading.Event()

        def read_stdout():
            for line in self.process.stdout:
                if self.address is None and line.startswith("listening on "):
                    self.address = line[len("listening on "):].strip()
                    ready.set()
            ready.set()

        def read_stderr():
            for line in self.process.stderr:
                self.stderr_lines.append(line)

        self._readers = [threading.Thread(target=read_stdout, daemon=True),
                         threading.Thread(target=read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()
        ready.wait(startup_timeout)
        if self.address is None:
            self.stop()
            raise RuntimeError("deltaserve did not print 'listening on' within %.0f s; stderr:\n%s"
                               % (startup_timeout, "".join(self.stderr_lines[-20:])))

    @property
    def port(self) -> int:
        """The TCP port of ``address``."""
        assert self.address is not None
        return int(self.address.rsplit(":", 1)[1])

    def kill(self) -> int:
        """Kills the server with SIGKILL (no graceful shutdown); returns its exit code."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        return self.stop()

    def stop(self, grace: float = 5.0) -> int:
        """Stops the server (SIGTERM, SIGKILL after ``grace`` s); returns its exit code.

        Idempotent.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=grace)  # they end at EOF once the process is gone
        for pipe in (self.process.stdout, self.process.stderr):
            if not pipe.closed:
                pipe.close()
        try:
            os.unlink(self._config_file.name)
        except FileNotFoundError:
            pass
        return self.process.returncode

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
