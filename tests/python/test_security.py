"""The Python client over TLS with tokens, against the real `deltaserve` binary.

Certificates are made here with the openssl command; the server runs with
--tls_cert_file/--tls_key_file and an --auth_file of an OBSERVER and a SIMULATOR
(docs/security.md). Environment as in test_client.py.
"""

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import unittest
from unittest import mock

import numpy as np

from deltaserve_client import (LocalServer, PermissionDenied, TrainerClient, Unauthenticated,
                               Unavailable)
from deltaserve_client.errors import InvalidArgument
from support import BIN, model_config

CONFIG = model_config("m", 3, [(4, "TANH"), (2, "IDENTITY")], 7, "kind: SGD learning_rate: 0.1",
                      "  samples_per_step: 1\n")


def openssl(*args):
    """Runs openssl; a failure fails the test with its output (never skipped)."""
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError("openssl %s failed:\n%s" % (" ".join(args), done.stderr))


def make_pki(directory):
    """ca.pem/ca.key and server.pem/server.key (SAN localhost, 127.0.0.1) in directory."""
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=py-ca", "-keyout", p("ca.key"),
            "-out", p("ca.pem"))
    openssl("req", "-new", *ec, "-subj", "/CN=server", "-keyout", p("server.key"),
            "-out", p("server.csr"))
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-days", "1", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey",
            p("ca.key"), "-CAcreateserial", "-extfile", p("server.ext"), "-out", p("server.pem"))
    return p


class SecureServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="deltaserve-pytls-")
        cls.path = staticmethod(make_pki(cls.dir))
        cls.tokens = {"obs": secrets.token_hex(32), "sim": secrets.token_hex(32)}
        roles = {"obs": "OBSERVER", "sim": "SIMULATOR"}
        with open(cls.path("auth.textproto"), "w") as f:
            for name, token in cls.tokens.items():
                f.write('principals { name: "%s" role: %s token_sha256: "%s" }\n'
                        % (name, roles[name], hashlib.sha256(token.encode()).hexdigest()))
        cls.server = LocalServer(BIN, CONFIG, extra_args=[
            "--tls_cert_file=" + cls.path("server.pem"), "--tls_key_file=" + cls.path("server.key"),
            "--auth_file=" + cls.path("auth.textproto")])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        patcher = mock.patch.dict(os.environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop("DELTASERVE_TOKEN", None)

    def client(self, **kwargs):
        c = TrainerClient(self.server.address, timeout=10.0, **kwargs)
        self.addCleanup(c.close)
        return c

    def tls(self, **kwargs):
        return self.client(tls_ca_file=self.path("ca.pem"), **kwargs)

    def test_plaintext_client_fails_against_the_tls_server(self):
        with self.assertRaises(Unavailable):
            self.client(token=self.tokens["sim"]).get_model_info()

    def test_tls_without_a_token_is_unauthenticated(self):
        with self.assertRaises(Unauthenticated):
            self.tls().get_model_info()
        with self.assertRaises(Unauthenticated):
            self.tls(token="nope").forward(np.zeros((1, 3)))
        with self.assertRaises(Unauthenticated):
            next(iter(self.tls().watch(timeout=10.0)))

    def test_observer_reads_but_cannot_submit_and_nothing_changes(self):
        observer = self.tls(token=self.tokens["obs"])
        y, version = observer.forward(np.ones((1, 3)))
        before, v0 = observer.get_parameters()
        with self.assertRaises(PermissionDenied):
            observer.submit_delta(np.ones((1, 3)), np.ones_like(y), version, retries=0)
        after, v1 = observer.get_parameters()
        self.assertEqual(v1, v0)
        self.assertEqual(after.tobytes(), before.tobytes())

    def test_simulator_trains_with_a_token_file_and_watches(self):
        token_file = self.path("sim.token")
        with open(token_file, "w") as f:
            f.write(self.tokens["sim"] + "\n")
        sim = self.tls(token_file=token_file)
        watch = sim.watch(timeout=30.0)
        self.addCleanup(watch.cancel)
        _, first = next(watch)
        y, version = sim.forward(np.ones((1, 3)))
        result = sim.submit_delta(np.ones((1, 3)), np.full_like(y, 0.5), version)
        self.assertEqual(result.version, version + 1)
        _, seen = next(watch)
        self.assertGreater(seen, first)

    def test_token_from_the_environment_and_server_name_override(self):
        os.environ["DELTASERVE_TOKEN"] = self.tokens["obs"]
        info = self.tls(tls_server_name="localhost").get_model_info()
        self.assertEqual(info.spec.name, "m")

    def test_unusable_security_arguments_fail_at_construction(self):
        with self.assertRaises(InvalidArgument):
            self.client(tls_ca_file=self.path("missing.pem"))
        with self.assertRaises(InvalidArgument):
            self.client(tls_ca_file=self.path("ca.pem"), tls_cert_file=self.path("server.pem"))
        with self.assertRaises(InvalidArgument):
            self.tls(token="two words")


if __name__ == "__main__":
    unittest.main()
