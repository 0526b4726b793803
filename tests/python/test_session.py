"""Specifications of deltaserve_client.Session against a real server: answers equal
the unary calls', errors are the unary calls' (and the stream goes on), many calls
in flight from many threads within the bound, close, and server shutdown."""

import threading
import unittest

import numpy as np

import deltaserve_client
from deltaserve_client import LocalServer, TrainerClient
from support import BIN, ServerTestCase, model_config

CONFIG = model_config("m", 3, [(8, "TANH"), (2, "IDENTITY")], 4, "kind: SGD learning_rate: 0.05",
                      "  samples_per_step: 1\n  max_staleness: 100\n")


class SessionTest(ServerTestCase):
    CONFIG = CONFIG

    def setUp(self):
        self.rng = np.random.default_rng(1)
        self.client = TrainerClient(self.server.address, model="m", timeout=10.0)
        self.addCleanup(self.client.close)

    def test_answers_equal_the_unary_calls(self):
        x = self.rng.uniform(-1, 1, size=(5, 3)).astype(np.float32)
        with self.client.session() as s:
            y, version = s.forward(x)
            y_unary, version_unary = self.client.forward(x)
            self.assertEqual(version, version_unary)
            np.testing.assert_array_equal(y, y_unary)  # bit for bit
            resp = s.submit_delta(x, np.ones((5, 2), np.float32), version, outputs=y)
            self.assertTrue(resp.stepped)
            self.assertEqual(resp.version, version + 1)

    def test_a_bad_call_raises_the_unary_error_and_the_stream_goes_on(self):
        bad = np.ones((1, 4), np.float32)
        with self.assertRaises(deltaserve_client.InvalidArgument) as unary:
            self.client.forward(bad)
        with self.client.session() as s:
            with self.assertRaises(deltaserve_client.InvalidArgument) as streamed:
                s.forward(bad)
            self.assertEqual(streamed.exception.message, unary.exception.message)
            y, _ = s.forward(np.zeros((1, 3), np.float32))
            self.assertEqual(y.shape, (1, 2))

    def test_many_threads_many_calls_in_flight(self):
        xs = [self.rng.uniform(-1, 1, size=(1, 3)).astype(np.float32) for _ in range(40)]
        results = {}
        in_flight = []
        with self.client.session(max_in_flight=4) as s:
            def run(t):
                futures = []
                for i in range(t, len(xs), 4):
                    futures.append(s.forward_async(xs[i]))
                    in_flight.append(s.in_flight())
                for i, f in zip(range(t, len(xs), 4), futures):
                    results[i] = f.result(10)
            threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(len(results), len(xs))
        self.assertLessEqual(max(in_flight), 4)
        for i, (y, version) in results.items():  # nothing trains meanwhile
            y_unary, version_unary = self.client.forward(xs[i])
            self.assertEqual(version, version_unary)
            np.testing.assert_array_equal(y, y_unary)

    def test_calls_after_close_fail(self):
        s = self.client.session()
        s.forward(np.zeros((1, 3), np.float32))
        s.close()
        s.close()  # idempotent
        with self.assertRaises(deltaserve_client.FailedPrecondition):
            s.forward(np.zeros((1, 3), np.float32))


class SessionShutdownTest(unittest.TestCase):
    def test_server_shutdown_ends_the_session_unavailable(self):
        server = LocalServer(BIN, CONFIG)
        self.addCleanup(server.stop)
        client = TrainerClient(server.address, model="m", timeout=10.0)
        self.addCleanup(client.close)
        s = client.session()
        s.forward(np.zeros((1, 3), np.float32))
        server.stop()
        with self.assertRaises(deltaserve_client.Unavailable):
            s.forward(np.zeros((1, 3), np.float32))
        s.close()


if __name__ == "__main__":
    unittest.main()
