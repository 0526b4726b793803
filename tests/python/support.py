"""What the Python tests share: the server binary, config text, a test case with one server."""
import os
import unittest

from deltaserve_client import LocalServer

BIN = os.environ["DELTASERVE_BIN"]  # the deltaserve binary under test (tests/python/CMakeLists.txt)


def model_config(name, input_dim, layers, seed, optimizer, extra=""):
    """One `models { ... }` entry of a ServerConfig in text format.

    layers: [(units, "TANH"), ...]; optimizer: e.g. "kind: SGD learning_rate: 0.1".
    """
    body = "".join("  layers { units: %d activation: ACTIVATION_%s }\n" % layer
                   for layer in layers)
    return ('models {\n  name: "%s"\n  input_dim: %d\n%s  seed: %d\n  optimizer { %s }\n%s}\n'
            % (name, input_dim, body, seed, optimizer, extra))


class ServerTestCase(unittest.TestCase):
    """A test case whose tests share one server started from CONFIG on 127.0.0.1:0."""
    CONFIG = ""

    @classmethod
    def setUpClass(cls):
        cls.server = LocalServer(BIN, cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
