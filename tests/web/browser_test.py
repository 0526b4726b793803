"""The live page (server/web) in a real browser: Debian's chromium, headless.

A real `deltaserve` on 127.0.0.1 (OS-picked ports, --metrics_listen) is
trained by a cartpole_sim while chromium loads the page from the metrics
endpoint; the test reads the DOM chromium dumps and chromium's console log:

  * no console message at all (the page logs nothing when it works: an
    uncaught exception, a failed load or a console.error shows up here);
  * the page's own state: data-status="ok", data-errors="0", at least one
    poll done;
  * the curves hold points: the loss chart and a client/ chart (the
    simulator's episode_return) have data-points > 0 and a drawn canvas.

With --auth_file the page needs ?token=<OBSERVER token>, which its script
sends on as the Authorization header; without it the server answers 401.

chromium missing or failing to start fails the test, saying so (never a skip):
scripts/install_deps.sh's test profile installs it.

Environment (tests/web/CMakeLists.txt): DELTASERVE_BIN, CARTPOLE_SIM,
DELTASERVE_CONFIGS, PYTHONPATH with the client; CHROMIUM (default: chromium).
"""
import hashlib
import html.parser
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from deltaserve_client import LocalServer

BIN = os.environ["DELTASERVE_BIN"]
SIM = os.environ["CARTPOLE_SIM"]
with open(os.path.join(os.environ["DELTASERVE_CONFIGS"], "cartpole.textproto")) as _f:
    CONFIG = _f.read()  # LocalServer takes the text
CHROMIUM = os.environ.get("CHROMIUM", "chromium")
# Virtual time the page runs for: its first poll is at once, then one every
# 1.5 s; the data is there before chromium starts.
VIRTUAL_MS = 6000


def metrics_port(server):
    """The port of the server's metrics endpoint, from its "metrics on" log line."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(server.stderr_lines):
            match = re.search(r"metrics on 127\.0\.0\.1:(\d+)", line)
            if match:
                return int(match.group(1))
        time.sleep(0.01)
    raise AssertionError("no 'metrics on' line in the server's log: %r" % server.stderr_lines[-5:])


def get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


class Dom(html.parser.HTMLParser):
    """The attributes of <body>, of every <section class="chart"> and canvases per chart."""

    def __init__(self):
        super().__init__()
        self.body = {}
        self.charts = {}
        self.canvases = {}
        self._stack = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "section" and "data-chart" in attrs:
            self.charts[attrs["data-chart"]] = attrs
            self._stack.append(attrs["data-chart"])
        elif tag == "section":
            self._stack.append(None)
        if tag == "canvas":
            for chart in self._stack:
                if chart:
                    self.canvases[chart] = self.canvases.get(chart, 0) + 1

    def handle_endtag(self, tag):
        if tag == "section" and self._stack:
            self._stack.pop()


def load_page(url, workdir):
    """Runs headless chromium on `url`: (the DOM after VIRTUAL_MS, console lines)."""
    chromium = shutil.which(CHROMIUM)
    if chromium is None:
        raise AssertionError("%s not found on PATH: the browser test needs Debian's chromium "
                             "(scripts/install_deps.sh test installs it)" % CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=workdir)
    command = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=%d" % VIRTUAL_MS, "--window-size=1400,900",
               "--dump-dom", url]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=150,
                              env=dict(os.environ, HOME=workdir))
    except subprocess.TimeoutExpired as e:
        raise AssertionError("chromium did not finish within 150 s: %s" % (e.stderr or "")[-2000:])
    if done.returncode != 0 or "<body" not in done.stdout:
        raise AssertionError("chromium failed (exit %d), stderr:\n%s"
                             % (done.returncode, done.stderr[-3000:]))
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


class LivePageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="deltaserve-browser-")
        cls.server = LocalServer(BIN, CONFIG, extra_args=["--metrics_listen=127.0.0.1:0"])
        cls.sim = None
        try:
            cls.base = "http://127.0.0.1:%d/" % metrics_port(cls.server)
            cls.sim = subprocess.Popen(
                [SIM, "--server=" + cls.server.address, "--envs=4", "--seed=3",
                 "--max_seconds=120", "--quiet"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            cls.model = cls.wait_for_points()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sim is not None and cls.sim.poll() is None:
            cls.sim.kill()
            cls.sim.wait()
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def wait_for_points(cls):
        """The model's name once its loss and a client/ series hold points (60 s at most)."""
        deadline = time.monotonic() + 60
        last = None
        while time.monotonic() < deadline:
            models = json.loads(get(cls.base + "api/models"))["models"]
            if models:
                last = json.loads(get(cls.base + "api/history?model=" + models[0]))["series"]
                if len(last.get("loss", [])) >= 3 and any(
                        name.startswith("client/") and points for name, points in last.items()):
                    return models[0]
            if cls.sim.poll() is not None:
                raise AssertionError("cartpole_sim exited early (%d): %s"
                                     % (cls.sim.returncode, cls.sim.stderr.read()[-2000:]))
            time.sleep(0.2)
        raise AssertionError("no loss and client/ points within 60 s; series: %r"
                             % {name: len(points) for name, points in (last or {}).items()})

    def test_page_draws_the_curves_without_console_errors(self):
        dom_text, console = load_page(self.base, self.dir)
        self.assertEqual(console, [], "the page logged to the console")
        dom = Dom()
        dom.feed(dom_text)
        self.assertEqual(dom.body.get("data-status"), "ok", dom.body)
        self.assertEqual(dom.body.get("data-errors"), "0", dom.body)
        self.assertGreaterEqual(int(dom.body.get("data-polls", "0")), 1, dom.body)
        self.assertEqual(dom.body.get("data-model"), self.model)
        points = {chart: int(attrs.get("data-points", "0")) for chart, attrs in dom.charts.items()}
        self.assertGreater(points.get("loss", 0), 0, points)
        self.assertGreater(points.get("grad_norm", 0), 0, points)
        client = [chart for chart in points if chart.startswith("series:client/")]
        self.assertTrue(client, "no client/ chart: %r" % points)
        for chart in ["loss", "grad_norm"] + client:
            self.assertGreater(points[chart], 0, points)
            self.assertGreater(dom.canvases.get(chart, 0), 0,
                               "chart %s has points but no canvas (dygraphs drew nothing)" % chart)

    def test_csv_and_json_agree(self):
        series = json.loads(get(self.base + "api/history?model=" + self.model))["series"]
        csv = get(self.base + "api/history.csv?model=" + self.model).splitlines()
        self.assertEqual(csv[0], "unix_ms,series,value")
        names = {row.split(",")[1] for row in csv[1:]}
        self.assertTrue({"loss"} <= names <= set(series) | {"loss"}, names)

    def test_bad_queries_get_400_or_404_with_a_reason(self):
        for query, status in [("api/history?model=nosuch", 404),
                              ("api/history?model=%s&since=soon" % self.model, 400),
                              ("api/history?model=%00%zz", 400), ("nosuch", 404)]:
            with self.assertRaises(urllib.error.HTTPError) as raised:
                get(self.base + query)
            self.assertEqual(raised.exception.code, status, query)
            self.assertIn("expected", raised.exception.read().decode(), query)


class LivePageWithAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="deltaserve-browser-auth-")
        cls.token = secrets.token_hex(32)
        auth = os.path.join(cls.dir, "auth.textproto")
        with open(auth, "w") as f:
            f.write('principals { name: "obs" role: OBSERVER token_sha256: "%s" }\n'
                    % hashlib.sha256(cls.token.encode()).hexdigest())
        cls.server = LocalServer(BIN, CONFIG, extra_args=["--metrics_listen=127.0.0.1:0",
                                                          "--auth_file=" + auth])
        try:
            cls.base = "http://127.0.0.1:%d/" % metrics_port(cls.server)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_without_a_token_the_page_and_the_api_are_refused(self):
        for path in ["", "api/models", "?token=wrong"]:
            with self.assertRaises(urllib.error.HTTPError) as raised:
                get(self.base + path)
            self.assertEqual(raised.exception.code, 401, path)
        self.assertIn("models", get(self.base + "api/models", token=self.token))
        # /metrics stays as docs/security.md says: open on its (loopback) listener.
        self.assertIn("# TYPE", get(self.base + "metrics"))

    def test_the_page_sends_the_token_from_its_address(self):
        dom_text, console = load_page(self.base + "?token=" + self.token, self.dir)
        self.assertEqual(console, [], "the page logged to the console")
        dom = Dom()
        dom.feed(dom_text)
        self.assertEqual(dom.body.get("data-status"), "ok", dom.body)
        self.assertGreaterEqual(int(dom.body.get("data-polls", "0")), 1, dom.body)


if __name__ == "__main__":
    unittest.main()
