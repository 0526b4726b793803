"""TrainerClient and NumpyReplica across real server restarts on the same address.

Environment as for test_client (DELTASERVE_BIN, PYTHONPATH). The first server
of each test listens on 127.0.0.1:0; its replacement is started on the port
the first one got, after the first has exited. Every wait is bounded.
"""

import concurrent.futures
import os
import select
import socket
import threading
import time
import unittest

import grpc
import numpy as np

import deltaserve_client
from deltaserve_client import LocalServer, NumpyReplica, TrainerClient
from support import BIN, model_config

CONFIG = model_config("mlp", 3, [(8, "TANH"), (2, "IDENTITY")], 11,
                      "kind: SGD learning_rate: 0.1", "  samples_per_step: 1\n")
# Same name, another architecture and seed: a server restarted with a new config.
CONFIG_WIDER = CONFIG.replace("units: 8", "units: 16").replace("seed: 11", "seed: 12")

X = np.array([[0.5, -0.25, 1.0], [-1.0, 0.75, 0.1]], np.float32)


class RestartTest(unittest.TestCase):
    def start_server(self, config=CONFIG, listen="127.0.0.1:0"):
        server = LocalServer(BIN, config, listen=listen)
        self.addCleanup(server.stop)
        return server

    def client(self, address, **kwargs):
        c = TrainerClient(address, model="mlp", timeout=10.0, **kwargs)
        self.addCleanup(c.close)
        return c

    def train(self, client, steps):
        """Submits `steps` deltas; returns the version after the last."""
        for _ in range(steps):
            _, version = client.forward(X)
            resp = client.submit_delta(X, np.ones((2, 2), np.float32), version)
            self.assertTrue(resp.stepped)
        return resp.version

    def test_client_keeps_working_after_the_server_restarts(self):
        first = self.start_server()
        address = first.address
        c = self.client(address)
        waiting = self.client(address, wait_for_ready=True)
        self.assertEqual(self.train(c, 3), 3)
        first.kill()

        # Down: fail-fast calls raise Unavailable; wait_for_ready calls wait until
        # their deadline.
        with self.assertRaises(deltaserve_client.Unavailable) as ctx:
            c.forward(X)
        self.assertIsInstance(ctx.exception.cause, grpc.RpcError)
        with self.assertRaises(deltaserve_client.DeadlineExceeded):
            waiting.forward(X, timeout=0.3)
        with self.assertRaises(deltaserve_client.DeadlineExceeded):
            c.wait_until_ready(0.3)

        # A wait_for_ready call issued while the server is down completes once the
        # new server is up.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(waiting.forward, X, timeout=20.0)
            second = self.start_server(listen=address)
            self.assertEqual(second.address, address)
            y_waited, v_waited = pending.result(timeout=30.0)
        self.assertEqual(v_waited, 0)  # a new server: it starts again at version 0

        c.wait_until_ready(10.0)
        y, version = c.forward(X)
        self.assertEqual(version, 0)
        np.testing.assert_allclose(y, y_waited, rtol=1e-6)
        self.assertEqual(self.train(c, 1), 1)  # and it trains the new server

    def test_replica_follows_a_restarted_server_down_to_version_zero(self):
        first = self.start_server()
        address = first.address
        c = self.client(address)
        replica = NumpyReplica(c, backoff_max=0.5).start(timeout=10.0)
        self.addCleanup(replica.stop)
        strict = NumpyReplica(c, serve_while_disconnected=False).start(timeout=10.0)
        self.addCleanup(strict.stop)
        self.assertEqual(replica.subscriptions, 1)
        trained = self.train(c, 4)
        self.assertTrue(replica.wait_for_version(trained, 10.0))
        self.assertTrue(strict.wait_for_version(trained, 10.0))
        y_trained, _ = c.forward(X)
        local, local_version = replica.forward(X)
        self.assertEqual(local_version, trained)
        np.testing.assert_allclose(local, y_trained, rtol=1e-5, atol=1e-6)

        first.kill()
        self.assertTrue(replica.wait_disconnected(10.0), "replica never noticed the crash")
        self.assertTrue(strict.wait_disconnected(10.0))
        self.assertFalse(replica.connected)
        self.assertIsInstance(replica.error, deltaserve_client.DeltaserveError)
        # Disconnected: the last weights are still served, under their version...
        stale, stale_version = replica.forward(X)
        self.assertEqual(stale_version, trained)
        np.testing.assert_allclose(stale, y_trained, rtol=1e-5, atol=1e-6)
        # ...unless the replica was asked not to.
        with self.assertRaises(deltaserve_client.Unavailable):
            strict.forward(X)

        self.start_server(listen=address)
        self.assertTrue(replica.wait_for_subscription(2, 20.0),
                        "replica did not re-subscribe: error %r" % replica.error)
        self.assertTrue(strict.wait_for_subscription(2, 20.0))
        self.assertTrue(replica.connected)
        self.assertIsNone(replica.error)
        self.assertEqual(replica.version, 0)  # lower than before, and accepted
        fresh, fresh_version = c.forward(X)
        self.assertEqual(fresh_version, 0)
        self.assertFalse(np.allclose(fresh, y_trained), "the restart changed nothing?")
        local, local_version = replica.forward(X)
        self.assertEqual(local_version, 0)
        np.testing.assert_allclose(local, fresh, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(strict.forward(X)[0], fresh, rtol=1e-5, atol=1e-6)

        # It keeps following the new server's pushes.
        trained = self.train(c, 2)
        self.assertTrue(replica.wait_for_version(trained, 10.0))
        np.testing.assert_allclose(replica.forward(X)[0], c.forward(X)[0], rtol=1e-5,
                                   atol=1e-6)

    def test_replica_follows_a_graceful_restart_with_another_architecture(self):
        first = self.start_server()
        address = first.address
        c = self.client(address)
        replica = NumpyReplica(c, backoff_max=0.5).start(timeout=10.0)
        self.addCleanup(replica.stop)
        self.assertEqual(replica.mlp.parameter_count, 8 * 4 + 2 * 9)
        first.stop()  # SIGTERM: the server ends its streams itself
        self.assertTrue(replica.wait_disconnected(10.0))
        self.start_server(CONFIG_WIDER, listen=address)
        self.assertTrue(replica.wait_for_subscription(2, 20.0),
                        "replica did not re-subscribe: error %r" % replica.error)
        self.assertEqual(replica.mlp.parameter_count, 16 * 4 + 2 * 17)
        self.assertEqual(replica.info.spec.layers[0].units, 16)
        np.testing.assert_allclose(replica.forward(X)[0], c.forward(X)[0], rtol=1e-5,
                                   atol=1e-6)

    def test_stop_is_prompt_while_the_server_is_down(self):
        first = self.start_server()
        c = self.client(first.address)
        replica = NumpyReplica(c).start(timeout=10.0)
        first.kill()
        self.assertTrue(replica.wait_disconnected(10.0))
        start = time.monotonic()
        replica.stop()  # cancels the re-subscription that waits for the server
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertFalse(replica._thread.is_alive())
        self.assertFalse(replica.wait_for_version(0, 0.1))


class ReconnectBackoffTest(unittest.TestCase):
    """While the server is down the channel tries again at most max_reconnect_backoff
    apart (gRPC's own backoff grows to 120 s). Counted at a stand-in socket that
    accepts and closes every connection before gRPC's handshake (a failed attempt),
    during one call that waits for ready for 1.5 s: with a 0.1 s cap about 15
    attempts, with gRPC's backoff 2."""

    def count_attempts(self, call):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        address = "127.0.0.1:%d" % listener.getsockname()[1]
        done = threading.Event()
        outcome = []

        def run():
            try:
                call(address)
            except deltaserve_client.DeltaserveError as e:
                outcome.append(e)
            finally:
                done.set()

        caller = threading.Thread(target=run, daemon=True)
        caller.start()
        attempts = 0
        while not done.is_set():
            if select.select([listener], [], [], 0.02)[0]:
                connection, _ = listener.accept()
                connection.close()
                attempts += 1
        caller.join(10.0)
        return attempts, outcome

    def test_unary_and_watch_channels_reconnect_at_the_capped_backoff(self):
        def unary(address):
            with TrainerClient(address, model="mlp", timeout=1.5, wait_for_ready=True,
                               max_reconnect_backoff=0.1) as c:
                c.get_model_info()

        def watch(address):
            with TrainerClient(address, model="mlp", timeout=1.5, wait_for_ready=True,
                               max_reconnect_backoff=0.1) as c:
                for _ in c.watch(timeout=1.5):
                    pass

        for name, call in (("unary", unary), ("watch", watch)):
            attempts, outcome = self.count_attempts(call)
            self.assertEqual(len(outcome), 1, name)
            self.assertIsInstance(outcome[0], deltaserve_client.DeadlineExceeded, name)
            self.assertGreaterEqual(attempts, 6, "%s channel: %d attempts in 1.5 s; it waited "
                                    "longer than its 0.1 s cap between them" % (name, attempts))


if __name__ == "__main__":
    unittest.main()
