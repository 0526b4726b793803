"""The cost-of-distance tooling: deltaserve_delay_forwarder and tools/bench_distance.py.

DELAY_FORWARDER: the built forwarder; BENCH_DISTANCE: tools/bench_distance.py;
DELTASERVE_BIN, CARTPOLE_SIM: the release binaries the driver runs.

The forwarder's tests assert lower bounds only (a delay can come late on a busy
machine, never early), and that every byte arrives intact and in order.
"""

import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

FORWARDER = os.environ.get("DELAY_FORWARDER", "")
BENCH_DISTANCE = os.environ.get("BENCH_DISTANCE", "")


class EchoServer:
    """A loopback TCP server that echoes every byte back, until the peer closes."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(data)

    def close(self):
        self.sock.close()


class Forwarder:
    """deltaserve_delay_forwarder started on 127.0.0.1:0 in front of `target_port`."""

    def __init__(self, target_port, delay_ms, extra=()):
        self.proc = subprocess.Popen(
            [FORWARDER, "--listen=127.0.0.1:0", "--target=127.0.0.1:%d" % target_port,
             "--delay_ms=%g" % delay_ms, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError("forwarder did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(match.group(1))

    def close(self):
        self.proc.terminate()
        self.proc.communicate(timeout=10)


def recv_exactly(sock, n):
    parts = []
    while n > 0:
        data = sock.recv(min(n, 1 << 20))
        if not data:
            raise AssertionError("connection closed with %d bytes still expected" % n)
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


class DelayForwarderTest(unittest.TestCase):

    def setUp(self):
        # A missing setting is a broken test setup, never a skip.
        self.assertTrue(FORWARDER, "set DELAY_FORWARDER to the built deltaserve_delay_forwarder")
        self.assertTrue(os.access(FORWARDER, os.X_OK), "not executable: %s" % FORWARDER)
        self.echo = EchoServer()
        self.addCleanup(self.echo.close)

    def start(self, delay_ms, extra=()):
        forwarder = Forwarder(self.echo.port, delay_ms, extra)
        self.addCleanup(forwarder.close)
        sock = socket.create_connection(("127.0.0.1", forwarder.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addCleanup(sock.close)
        return sock

    def test_round_trip_takes_at_least_twice_the_delay(self):
        sock = self.start(delay_ms=20)
        for i in range(5):
            message = b"ping %d" % i
            start = time.monotonic()
            sock.sendall(message)
            self.assertEqual(recv_exactly(sock, len(message)), message)
            rtt_ms = (time.monotonic() - start) * 1000
            self.assertGreaterEqual(rtt_ms, 40.0, "round trip %d was %.2f ms" % (i, rtt_ms))

    def test_bytes_arrive_intact_and_in_order(self):
        # 4 MB of random bytes in uneven writes, read back concurrently; a small
        # queue limit makes the forwarder pause and resume reading.
        sock = self.start(delay_ms=1, extra=["--max_queue_bytes=65536"])
        rng = random.Random(7)
        payload = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 64
        received = []

        def reader():
            received.append(recv_exactly(sock, len(payload)))

        thread = threading.Thread(target=reader)
        thread.start()
        offset = 0
        while offset < len(payload):
            n = rng.randint(1, 100000)
            sock.sendall(payload[offset:offset + n])
            offset += n
        thread.join(timeout=60)
        self.assertFalse(thread.is_alive(), "echo through the forwarder did not finish")
        self.assertEqual(len(received[0]), len(payload))
        self.assertTrue(received[0] == payload, "bytes changed on the way")

    def test_end_of_stream_is_passed_on(self):
        sock = self.start(delay_ms=5)
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_exactly(sock, 10), b"last words")
        self.assertEqual(sock.recv(1), b"", "the echo server's FIN did not come through")

    def test_many_connections_at_once(self):
        forwarder = Forwarder(self.echo.port, delay_ms=2)
        self.addCleanup(forwarder.close)
        socks = [socket.create_connection(("127.0.0.1", forwarder.port), timeout=30)
                 for _ in range(64)]
        for i, s in enumerate(socks):
            s.sendall(b"conn %03d" % i)
        for i, s in enumerate(socks):
            self.assertEqual(recv_exactly(s, 8), b"conn %03d" % i)
            s.close()

    def test_bad_flags_are_refused(self):
        for flags, words in ((["--delay_ms=-1"], "--delay_ms"),
                             (["--delay_ms=1"], "--target"),
                             (["--target=nocolon", "--delay_ms=1"], "expected host:port")):
            proc = subprocess.run([FORWARDER, *flags], capture_output=True, text=True, timeout=30)
            self.assertEqual(proc.returncode, 2, (flags, proc.stderr))
            self.assertIn(words, proc.stderr)


def netns_list():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout


class BenchDistanceTest(unittest.TestCase):

    def setUp(self):
        # A missing setting is a broken test setup, never a skip.
        for name in ("BENCH_DISTANCE", "DELAY_FORWARDER", "DELTASERVE_BIN", "CARTPOLE_SIM"):
            self.assertTrue(os.environ.get(name), "set %s (tests/distance/CMakeLists.txt does)" % name)

    def test_dry_run_prints_the_plan_and_leaves_no_namespace(self):
        proc = subprocess.run(
            [sys.executable, BENCH_DISTANCE, "--quick", "--dry-run", "--part=all",
             "--server=" + os.environ["DELTASERVE_BIN"], "--sim=" + os.environ["CARTPOLE_SIM"],
             "--forwarder=" + FORWARDER],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("ip netns add dsd-", proc.stdout)
        self.assertIn("tbf", proc.stdout)
        planned = set(re.findall(r"ip netns add (dsd-\S+)", proc.stdout))
        self.assertTrue(planned, proc.stdout)
        self.assertFalse(planned & set(netns_list().split()), "a dry run created a namespace")

    def test_tiny_run_cleans_up_its_namespaces(self):
        self.assertEqual(os.geteuid(), 0,
                         "creating network namespaces needs root (make test runs as root; "
                         "else exclude this test with ctest -E distance.netns)")
        before = netns_list()
        proc = subprocess.run(
            [sys.executable, BENCH_DISTANCE, "--tiny", "--part=distance",
             "--server=" + os.environ["DELTASERVE_BIN"], "--sim=" + os.environ["CARTPOLE_SIM"],
             "--forwarder=" + FORWARDER, "--out=" + os.environ.get("TMPDIR", "/tmp") +
             "/bench_distance_test_%d" % os.getpid()],
            capture_output=True, text=True, timeout=240)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"distance rtt=10 .*steps_per_s=\d")
        self.assertEqual([l for l in netns_list().splitlines() if l.startswith("dsd-")],
                         [l for l in before.splitlines() if l.startswith("dsd-")])


if __name__ == "__main__":
    unittest.main()
