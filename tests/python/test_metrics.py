"""Metrics a Python simulator reports (submit_delta(..., metrics=)) against a real server with
its /metrics endpoint: good ones reach deltaserve_client_metric (unary and Session, and from
the CartPole example), and one that breaks a rule is refused before anything is sent, with
InvalidArgument (a ValueError) naming the rule."""

import math
import os
import re
import sys
import time
import unittest
import urllib.request

import numpy as np

import deltaserve_client
from deltaserve_client import LocalServer, TrainerClient
from deltaserve_client.convert import check_metrics
from support import BIN, model_config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python",
                                "examples"))
import cartpole  # noqa: E402  (the example under test)

CONFIG = model_config("m", 4, [(8, "TANH"), (2, "IDENTITY")], 4, "kind: SGD learning_rate: 0.01",
                      "  samples_per_step: 1\n")

# (metrics, words the refusal must contain)
BROKEN = [
    ({"episode-return": 1.0}, "must match [A-Za-z_][A-Za-z0-9_]{0,63}"),
    ({"": 1.0}, "must match"),
    ({"1st": 1.0}, "must match"),
    ({"a" * 65: 1.0}, "must match"),
    ({"caf\u00e9": 1.0}, "must match"),
    ({7: 1.0}, "must match"),
    ({"loss": float("nan")}, "'loss' must be finite"),
    ({"loss": np.float32("inf")}, "must be finite, got inf"),
    ({"loss": "1.0"}, "must be a real number, got str"),
    ({"loss": True}, "must be a real number, got bool"),
    ({"m%d" % i: i for i in range(65)}, "at most 64 names per model, got 65"),
    ([("loss", 1.0)], "expected a mapping"),
]


def scrape(port):
    """GET http://127.0.0.1:port/metrics, past any proxy the environment names."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://127.0.0.1:%d/metrics" % port, timeout=10) as response:
        return response.read().decode()


def sample(text, name, labels):
    """The value of name{labels} (labels as a dict, exact set), or None."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if not match or match.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if got == labels:
            return float(match.group(3))
    return None


def submit_calls(text):
    """SubmitDelta rpcs (unary and on Sessions) the server has finished, whatever the code."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("deltaserve_rpc_requests_total{") and re.search(
                r'rpc="(Session)?SubmitDelta"', line):
            total += float(line.rsplit(" ", 1)[1])
    return total


class ClientMetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LocalServer(BIN, CONFIG, extra_args=["--metrics_listen=127.0.0.1:0"])
        # The server logs "metrics on 127.0.0.1:PORT" before it prints its address; the
        # line may still be on its way through the reader thread.
        deadline = time.monotonic() + 10
        cls.metrics_port = None
        while cls.metrics_port is None and time.monotonic() < deadline:
            for line in list(cls.server.stderr_lines):
                match = re.search(r"metrics on 127\.0\.0\.1:(\d+)", line)
                if match:
                    cls.metrics_port = int(match.group(1))
            if cls.metrics_port is None:
                time.sleep(0.01)
        if cls.metrics_port is None:
            cls.server.stop()
            raise AssertionError("no 'metrics on' line in the server's log: %r"
                                 % cls.server.stderr_lines[-5:])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.client = TrainerClient(self.server.address, model="m", timeout=10.0)
        self.addCleanup(self.client.close)

    def gauge(self, name):
        return sample(scrape(self.metrics_port), "deltaserve_client_metric",
                      {"model": "m", "name": name})

    def submit(self, target, metrics, **kwargs):
        _, version = self.client.forward(np.zeros((1, 4), np.float32))
        return target.submit_delta(np.full((1, 4), 0.5, np.float32), np.ones((1, 2), np.float32),
                                   version, metrics=metrics, **kwargs)

    def test_broken_metrics_are_refused_before_sending_naming_the_rule(self):
        before = submit_calls(scrape(self.metrics_port))
        with self.client.session() as session:
            for metrics, rule in BROKEN:
                for target in (self.client, session):
                    with self.subTest(metrics=str(metrics)[:40], target=type(target).__name__):
                        with self.assertRaises(deltaserve_client.InvalidArgument) as raised:
                            self.submit(target, metrics)
                        self.assertIn(rule, str(raised.exception))
                        self.assertIsInstance(raised.exception, ValueError)
                with self.assertRaises(deltaserve_client.InvalidArgument):
                    session.submit_delta_async(np.ones((1, 4)), np.ones((1, 2)), 0,
                                               metrics=metrics)
            self.assertEqual(session.in_flight(), 0)
        self.assertEqual(submit_calls(scrape(self.metrics_port)), before)

    def test_reported_metrics_reach_the_gauge_from_unary_calls_and_sessions(self):
        self.submit(self.client, {"py_score": 5})
        with self.client.session() as session:
            self.submit(session, {"py_score": np.float32(15.0), "py_other": -1.5})
            self.submit(session, None)
        self.assertEqual(self.gauge("py_score"), 10.0)
        self.assertEqual(self.gauge("py_other"), -1.5)

    def test_check_metrics_returns_plain_floats(self):
        checked = check_metrics({"a": np.int64(3), "b_2": 0.25, "_c": np.float32(1.5)})
        self.assertEqual(checked, {"a": 3.0, "b_2": 0.25, "_c": 1.5})
        self.assertTrue(all(type(v) is float for v in checked.values()))
        self.assertEqual(check_metrics(None), {})
        self.assertEqual(check_metrics({"z" * 64: -math.pi}), {"z" * 64: -math.pi})

    def test_the_cartpole_example_reports_episode_return_and_length(self):
        average, episodes, _ = cartpole.train(self.server.address, threads=1,
                                              actions="roundtrip", episodes=3, progress=False)
        self.assertEqual(episodes, 3)
        # One thread, one submission per episode, none refused: the gauges are the
        # mean over the three episodes (CartPole pays 1 per step: return = length).
        self.assertAlmostEqual(self.gauge("episode_return"), average)
        self.assertAlmostEqual(self.gauge("episode_length"), average)


if __name__ == "__main__":
    unittest.main()
