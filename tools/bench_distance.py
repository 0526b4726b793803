#!/usr/bin/python3
"""The cost of distance and how cost grows (docs/benchmarks.md).

  sudo /usr/bin/python3 tools/bench_distance.py [--part=distance|demo|growth|all]
      [--quick | --tiny] [--dry-run] [--rounds=N] [--seconds=S] [--rate=100mbit]
      [--server=build/server/deltaserve --sim=build/sim/cartpole_sim
       --forwarder=build/bench/deltaserve_delay_forwarder] [--out=out/bench_distance]
      [--plot-dir=docs/img]

Parts:
  distance  env steps/s of 8 and 64 cartpole_sim processes against one deltaserve, per mode
            (unary; Session with 1 and 16 one-row Forwards in flight; replica) and per
            round trip: "lo" (both on loopback, the reference) and 0, 1, 10, 50 ms between
            two network namespaces.
  demo      the CartPole demo (scripts/demo.sh: 8 simulators, Session, target 475; its default
            is 1 environment each acting on a replica with 4 episodes per submission,
            "1:replica+--episodes_per_submit=4"; "4:roundtrip" is the round trip per step)
            across the same distances: seconds to solve.
  growth    on loopback (no namespaces): server CPU per env step and env steps/s against the
            number of simulators (1 .. 256) and against the model's size (1k .. 10M
            parameters, 8 simulators).

Distance: namespaces dsd-<pid>-t (the trainer: deltaserve on 10.77.0.1, a private address
that exists only inside these namespaces) and dsd-<pid>-s (the simulators, and the delaying
forwarder on its 127.0.0.1), joined by one veth pair with a tbf bandwidth cap on both ends.
The delay is netem's where the kernel has it (delay rtt/2 on each veth end), else
deltaserve_delay_forwarder's (rtt/2 per direction); the output says which. Everything this
script starts is stopped, and its namespaces deleted, on every exit (normal, error, SIGINT,
SIGTERM, or the --max-minutes watchdog).

Measurement: per configuration a fresh server; simulators are started, the script waits until
all are connected (the server's deltaserve_connections) and have submitted, plus a warm-up,
then samples a step counter and the server's CPU (utime + stime from /proc/PID/stat) at the
start and end of --seconds. Env steps: deltaserve_forward_rows_total when the simulators ask
for actions by round trip (one Forward row per env step), deltaserve_submitted_rows_total in
replica mode (rows of applied submissions: every step is submitted once). Configurations are interleaved in --rounds rounds; the report is
the median per configuration. Nothing here asserts a number.

Output: lines "distance rtt=10 mode=session4 sims=8 steps_per_s=... cpu_us_per_step=...",
"demo rtt=10 seed=1 train_seconds=...", "growth sims=64 params=226 ...", then the medians
as markdown tables; results.csv in --out; PNGs in --plot-dir with gnuplot.
"""

import argparse
import atexit
import csv
import ctypes
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
TRAINER_ADDR = "10.77.0.1"
SIMS_ADDR = "10.77.0.2"
CLONE_NEWNET = 0x40000000

# mode -> cartpole_sim flags
MODES = {
    "unary": ["--transport=unary", "--envs=1"],
    "session1": ["--transport=session", "--envs=1"],
    "session4": ["--transport=session", "--envs=4", "--rows_per_forward=1"],
    "session16": ["--transport=session", "--envs=16", "--rows_per_forward=1"],
    "replica": ["--transport=session", "--envs=1", "--actions=replica"],
}


def log(msg):
    print(msg, flush=True)


class Cleanup:
    """Everything started here, stopped on exit: processes (by their own pid / process
    group, each started in a new session) and namespaces (by name)."""

    def __init__(self):
        self.procs = []
        self.namespaces = []
        self.done = False

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=5.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self, procs=None):
        procs = list(self.procs if procs is None else procs)
        for proc in procs:  # TERM all first, then wait: stopping 256 sims stays quick
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self.stop(proc, timeout=5)

    def run(self):
        if self.done:
            return
        self.done = True
        self.stop_all()
        for ns in self.namespaces:
            # What still runs inside was started by this script (through ip netns exec).
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = [ns for ns in self.namespaces if ns in netns_names()]
        if left:
            print("bench_distance: could not delete namespaces %s" % left, file=sys.stderr)


CLEANUP = Cleanup()


def netns_names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def sh(cmd, dry_run=False, check=True):
    """Runs a setup command (a list), printed first."""
    log("+ " + " ".join(shlex.quote(c) for c in cmd))
    if dry_run:
        return subprocess.CompletedProcess(cmd, 0, "", "")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), result.stderr.strip()))
    return result


class Net:
    """Two namespaces joined by a veth pair, a tbf cap on both ends, optional netem."""

    def __init__(self, rate, dry_run):
        pid = os.getpid()
        self.trainer_ns = "dsd-%d-t" % pid
        self.sims_ns = "dsd-%d-s" % pid
        self.veth_t = "dsd%dt" % pid
        self.veth_s = "dsd%ds" % pid
        self.rate = rate
        self.dry_run = dry_run
        self.netem = False

    def up(self):
        for ns in (self.trainer_ns, self.sims_ns):
            if not self.dry_run:
                CLEANUP.namespaces.append(ns)  # before creating: a failure half-way cleans up
            sh(["ip", "netns", "add", ns], self.dry_run)
        sh(["ip", "link", "add", self.veth_t, "type", "veth", "peer", "name", self.veth_s],
           self.dry_run)
        sh(["ip", "link", "set", self.veth_t, "netns", self.trainer_ns], self.dry_run)
        sh(["ip", "link", "set", self.veth_s, "netns", self.sims_ns], self.dry_run)
        for ns, dev, addr in ((self.trainer_ns, self.veth_t, TRAINER_ADDR),
                              (self.sims_ns, self.veth_s, SIMS_ADDR)):
            sh(["ip", "-n", ns, "addr", "add", addr + "/30", "dev", dev], self.dry_run)
            sh(["ip", "-n", ns, "link", "set", dev, "up"], self.dry_run)
            sh(["ip", "-n", ns, "link", "set", "lo", "up"], self.dry_run)
        probe = sh(["ip", "netns", "exec", self.trainer_ns, "tc", "qdisc", "add", "dev",
                    self.veth_t, "root", "handle", "1:", "netem", "delay", "1ms"],
                   self.dry_run, check=False)
        self.netem = probe.returncode == 0 and not self.dry_run
        if self.netem:
            sh(["ip", "netns", "exec", self.trainer_ns, "tc", "qdisc", "del", "dev", self.veth_t,
                "root"])
        log("bench_distance: delay by %s" % (
            "netem (the kernel has it)" if self.netem else
            "deltaserve_delay_forwarder (no netem qdisc in this kernel: %s)" %
            (probe.stderr.strip() or "dry run")))
        self.set_rtt(0)

    def set_rtt(self, rtt_ms):
        """tbf on both ends; with netem, netem delay rtt/2 above it."""
        for ns, dev in ((self.trainer_ns, self.veth_t), (self.sims_ns, self.veth_s)):
            sh(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
               self.dry_run, check=False)
            tbf = ["tbf", "rate", self.rate, "burst", "64kb", "latency", "400ms"]
            if self.netem:
                sh(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                    "handle", "1:", "netem", "delay", "%gms" % (rtt_ms / 2.0), "limit", "100000"])
                sh(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "parent", "1:1",
                    "handle", "10:", *tbf])
            else:
                sh(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", *tbf],
                   self.dry_run)


def spawn(cmd, ns=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, nice=0):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    proc = CLEANUP.add(subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True,
                                        start_new_session=True))
    if nice:
        os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
    return proc


def start_forwarder(args, server_address, rtt, ns):
    """deltaserve_delay_forwarder in `ns` at rtt/2 per direction; its 127.0.0.1 address.
    It runs at nice -10: it stands in for the network, which takes no CPU from the hosts."""
    out = os.path.join(args.out, "forwarder.out")
    with open(out, "w") as f:
        proc = spawn([args.forwarder, "--listen=127.0.0.1:0", "--target=" + server_address,
                      "--delay_ms=%g" % (rtt / 2.0)], ns, stdout=f, nice=-10)
    return "127.0.0.1:" + wait_for_line(out, r"^listening on \S+:(\d+)", proc)


def wait_for_line(path, pattern, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                match = re.search(pattern, f.read(), re.M)
            if match:
                return match.group(1)
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(path) as f:
        text = f.read()
    raise RuntimeError("no /%s/ in %s (exit %s): %s" % (pattern, path, proc.poll(), text[-2000:]))


_libc = ctypes.CDLL(None, use_errno=True)


def ns_socket(ns):
    """A TCP socket created inside network namespace `ns` (None: this one)."""
    if ns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    home = os.open("/proc/self/task/%d/ns/net" % _libc.gettid(), os.O_RDONLY)
    target = os.open("/var/run/netns/" + ns, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(home)
        os.close(target)


def metrics(ns, addr):
    """The server's /metrics as {name: value} (unlabelled samples, labelled ones summed)."""
    host, port = addr.rsplit(":", 1)
    sock = ns_socket(ns)
    sock.settimeout(10)
    with sock:
        sock.connect((host, int(port)))
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    values = {}
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        match = re.match(r"^([a-z_]+)(\{[^}]*\})? ([-+0-9.eE]+|NaN)$", line)
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
    return values


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """deltaserve with --metrics_listen, in `ns` (or here), on `host`:0."""

    def __init__(self, args, config, ns=None, host="127.0.0.1", tag="server"):
        self.ns = ns
        out = os.path.join(args.out, tag + ".out")
        err = os.path.join(args.out, tag + ".err")
        cmd = [args.server, "--config=" + config, "--listen=%s:0" % host,
               "--metrics_listen=%s:0" % host, "--log_level=info"]
        if host != "127.0.0.1":
            cmd.append("--allow_unauthenticated")  # a private address in a private namespace
        with open(out, "w") as fo, open(err, "w") as fe:
            self.proc = spawn(cmd, ns, stdout=fo, stderr=fe)
        self.address = wait_for_line(out, r"^listening on (\S+)", self.proc)
        self.metrics_address = wait_for_line(err, r"metrics on (\S+)", self.proc)
        self.pid = self.proc.pid  # ip netns exec execs the server: same pid

    def sample(self):
        cpu = cpu_seconds(self.pid)
        m = metrics(self.ns, self.metrics_address)
        return time.monotonic(), cpu, m

    def stop(self):
        CLEANUP.stop(self.proc)


def measure(args, server, sims, warmup, seconds, replica=False):
    """(steps/s, server CPU us/step, server CPU cores) over `seconds` after all of `sims`
    connected and `warmup` passed; None if a simulator died or they never connected."""
    deadline = time.monotonic() + 60
    while True:
        if sim_died(args, sims):
            return None
        m = server.sample()[2]
        connected = m.get("deltaserve_connections", 0)
        applied = m.get("deltaserve_submissions_applied_total", 0)
        if connected >= len(sims) and applied >= len(sims):
            break  # all connected, and as many submissions applied as there are simulators
        if time.monotonic() > deadline:
            log("bench_distance: after 60 s only %d of %d simulators connected, %d submissions"
                % (connected, len(sims), applied))
            return None
        time.sleep(0.2)
    time.sleep(warmup)
    t0, c0, m0 = server.sample()
    time.sleep(seconds)
    t1, c1, m1 = server.sample()
    if sim_died(args, sims):
        return None
    # Round trip: one Forward row per env step, counted as it happens. Replica: no Forwards;
    # rows of applied submissions (whole episodes, so a little lumpy).
    counter = "deltaserve_submitted_rows_total" if replica else "deltaserve_forward_rows_total"
    rows = m1.get(counter, 0) - m0.get(counter, 0)
    cpu = c1 - c0
    steps_per_s = rows / (t1 - t0)
    return steps_per_s, (cpu / rows * 1e6 if rows else float("inf")), cpu / (t1 - t0)


def start_sims(args, server_address, n, mode_flags, ns=None, extra=()):
    sims = []
    os.makedirs(os.path.join(args.out, "sims"), exist_ok=True)
    for i in range(n):
        with open(os.path.join(args.out, "sims", "%d.err" % i), "w") as err:
            sims.append(spawn([args.sim, "--server=" + server_address, "--sim=%d" % i,
                               "--seed=%d" % (1000 + i), "--quiet", *mode_flags, *extra], ns,
                              stderr=err))
    return sims


def sim_died(args, sims):
    """True (and says which and why) if a simulator exited."""
    for i, proc in enumerate(sims):
        if proc.poll() is not None:
            with open(os.path.join(args.out, "sims", "%d.err" % i)) as f:
                tail = f.read()[-600:]
            log("bench_distance: simulator %d exited with %s: %s" % (i, proc.returncode, tail))
            return True
    return False


def config_file(args, name, hidden, lr):
    """A CartPole-shaped config: 4 -> hidden... (tanh) -> 2; returns (path, parameters).
    max_staleness 1024, not configs/cartpole.textproto's 32: replica simulators on loopback
    outrun a bound of 32 versions (a submission ABORTED three times ends the simulator), and
    these parts measure transport and compute, not learning. The distance and growth parts
    pass lr 1e-9: every submission still runs the backward pass and the Adam step, but the
    policy stays random, so every configuration and every second sees the same workload
    (episodes of about 22 steps, one SubmitDelta per 2 episodes per environment)."""
    layers = "".join("  layers { units: %d activation: ACTIVATION_TANH }\n" % h for h in hidden)
    path = os.path.join(args.out, name + ".textproto")
    with open(path, "w") as f:
        f.write('models {\n  name: "cartpole"\n  input_dim: 4\n%s'
                '  layers { units: 2 activation: ACTIVATION_IDENTITY }\n  seed: 1\n'
                '  optimizer { kind: ADAM learning_rate: %g }\n'
                '  surrogate { mode: CURRENT delta_scale: 1 reduction: SUM }\n'
                '  samples_per_step: 1\n  max_staleness: 1024\n}\n' % (layers, lr))
    params, prev = 0, 4
    for h in list(hidden) + [2]:
        params += prev * h + h
        prev = h
    return path, params


RESULTS = []


def record(kind, **fields):
    RESULTS.append(dict(kind=kind, **fields))
    log(kind + " " + " ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v)
                              for k, v in fields.items()))


# ---- part: distance ---------------------------------------------------------------------


def run_distance_config(args, net, rtt, mode, n):
    config = config_file(args, "cartpole_bench", [32], 1e-9)[0]
    try:
        if rtt == "lo":
            server = Server(args, config, tag="server_lo")
            target = server.address
            ns = None
        else:
            if net.netem:
                net.set_rtt(rtt)
            server = Server(args, config, ns=net.trainer_ns, host=TRAINER_ADDR,
                            tag="server_dist")
            target = server.address
            ns = net.sims_ns
            if not net.netem:
                target = start_forwarder(args, server.address, rtt, ns)
        sims = start_sims(args, target, n, MODES[mode], ns)
        result = measure(args, server, sims, args.warmup, args.seconds, mode == "replica")
        return result
    finally:
        CLEANUP.stop_all([p for p in CLEANUP.procs])


def part_distance(args, net):
    configs = [(rtt, mode, n) for n, mode in args.combos for rtt in args.rtts]
    for rnd in range(args.rounds):
        for rtt, mode, n in configs:
            result = run_distance_config(args, net, rtt, mode, n)
            if result is None:
                record("distance", rtt=rtt, mode=mode, sims=n, round=rnd, steps_per_s="failed")
                continue
            steps, cpu_us, cores = result
            record("distance", rtt=rtt, mode=mode, sims=n, round=rnd, steps_per_s=steps,
                   cpu_us_per_step=cpu_us, server_cores=cores)


# ---- part: demo -------------------------------------------------------------------------


def run_demo(args, net, rtt, seed, variant):
    config = os.path.join(REPO, "configs", "cartpole.textproto")
    envs, label = variant
    actions, *sim_flags = label.split("+")  # "replica+--replica_catch_up=push": extra flags
    try:
        if rtt == "lo":
            server = Server(args, config, tag="demo_lo")
            target, ns = server.address, None
        else:
            if net.netem:
                net.set_rtt(rtt)
            server = Server(args, config, ns=net.trainer_ns, host=TRAINER_ADDR, tag="demo_dist")
            target, ns = server.address, net.sims_ns
            if not net.netem:
                target = start_forwarder(args, server.address, rtt, ns)
        cmd = [PYTHON, os.path.join(REPO, "sim", "run_simulators.py"), "--server=" + target,
               "--sim=" + args.sim, "--num=8", "--actions=" + actions, "--seed=%d" % seed,
               "--target=475", "--time-limit=%g" % args.demo_time_limit, "--quiet", "--",
               "--envs=%d" % envs, "--transport=session"] + sim_flags
        runner = spawn(cmd, ns, stdout=subprocess.PIPE)
        out, _ = runner.communicate(timeout=args.demo_time_limit + 60)
        line = ([l for l in out.splitlines() if l.startswith("result ")] or [""])[-1]
        match = re.search(r"solved=1 train_seconds=([0-9.]+)", line)
        steps = re.search(r" steps=(\d+)", line)
        startup = re.search(r" startup_seconds=([0-9.]+)", line)
        return (float(match.group(1)) if match else float("inf"),
                int(steps.group(1)) if steps else 0,
                float(startup.group(1)) if startup else float("nan"))
    finally:
        CLEANUP.stop_all([p for p in CLEANUP.procs])


def part_demo(args, net):
    for seed in args.demo_seeds:
        for variant in args.demo_variants:
            for rtt in args.rtts:
                t, steps, startup = run_demo(args, net, rtt, seed, variant)
                record("demo", rtt=rtt, envs=variant[0], actions=variant[1], seed=seed,
                       train_seconds=t, env_steps=steps, startup_seconds=startup)


# ---- part: growth -----------------------------------------------------------------------


def part_growth(args):
    base_config, base_params = config_file(args, "cartpole_bench", [32], 1e-9)
    sizes = []
    for target in args.growth_params:
        hidden = 1  # two equal hidden layers: parameters = h^2 + 8h + 2
        while hidden * hidden + 8 * hidden + 2 < target:
            hidden += 1
        sizes.append(config_file(args, "growth_h%d" % hidden, [hidden, hidden], 1e-9))
    configs = [("sims", n, base_config, base_params) for n in args.growth_sims]
    configs += [("params", args.growth_params_sims, path, params) for path, params in sizes]
    for rnd in range(args.rounds):
        for axis, n, config, params in configs:
            try:
                server = Server(args, config, tag="growth")
                sims = start_sims(args, server.address, n, MODES["session1"])
                # Many processes take a while to start on 2 cores: the warm-up grows with them.
                result = measure(args, server, sims, args.warmup + n / 128.0, args.seconds)
            finally:
                CLEANUP.stop_all([p for p in CLEANUP.procs])
            if result is None:
                record("growth", axis=axis, sims=n, params=params, round=rnd,
                       steps_per_s="failed")
                continue
            steps, cpu_us, cores = result
            record("growth", axis=axis, sims=n, params=params, round=rnd, steps_per_s=steps,
                   cpu_us_per_step=cpu_us, server_cores=cores)


# ---- report -----------------------------------------------------------------------------


def median_of(rows, key):
    values = [r[key] for r in rows if isinstance(r.get(key), float)]
    return statistics.median(values) if values else float("nan")


def report(args):
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        keys = sorted({k for r in RESULTS for k in r})
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(RESULTS)
    dist = [r for r in RESULTS if r["kind"] == "distance"]
    if dist:
        log("\n### env steps/s (median of %d rounds); server CPU us/step in brackets\n" %
            args.rounds)
        log("| sims | mode | " + " | ".join("%s" % (("RTT %g ms" % r) if r != "lo" else "loopback")
                                           for r in args.rtts) + " |")
        log("|---|---|" + "---:|" * len(args.rtts))
        table = {}
        for n, mode in args.combos:
            cells = []
            for rtt in args.rtts:
                rows = [r for r in dist if r["sims"] == n and r["mode"] == mode
                        and r["rtt"] == rtt]
                s, c = median_of(rows, "steps_per_s"), median_of(rows, "cpu_us_per_step")
                table[(n, mode, rtt)] = (s, c)
                cells.append("%.0f (%.0f)" % (s, c))
            log("| %d | %s | %s |" % (n, mode, " | ".join(cells)))
        with open(os.path.join(args.out, "distance.dat"), "w") as f:
            for n, mode in args.combos:
                f.write("# sims=%d mode=%s\n" % (n, mode))
                for rtt in args.rtts:
                    x = 0.03 if rtt == "lo" else max(rtt, 0.1)
                    f.write("%g %g\n" % (x, table[(n, mode, rtt)][0]))
                f.write("\n\n")
    demo = [r for r in RESULTS if r["kind"] == "demo"]
    if demo:
        log("\n### demo: seconds to solve (median over seeds; inf = not within %g s)\n" %
            args.demo_time_limit)
        log("| simulators x envs, actions | " + " | ".join(
            ("RTT %g ms" % r) if r != "lo" else "loopback" for r in args.rtts) +
            " | 10 ms / loopback |")
        log("|---|" + "---:|" * (len(args.rtts) + 1))
        with open(os.path.join(args.out, "demo.dat"), "w") as f:
            for envs, actions in args.demo_variants:
                med = {}
                for rtt in args.rtts:
                    times = sorted(r["train_seconds"] for r in demo if r["rtt"] == rtt
                                   and r["envs"] == envs and r["actions"] == actions)
                    med[rtt] = statistics.median(times) if times else float("nan")
                ratio = med.get(10, float("nan")) / med.get("lo", float("nan"))
                log("| 8 x %d, %s | %s | %.2fx |" % (envs, actions, " | ".join(
                    "%.2f" % med[r] for r in args.rtts), ratio))
                f.write("# envs=%d actions=%s\n" % (envs, actions))
                for rtt in args.rtts:
                    f.write("%g %g\n" % (0.03 if rtt == "lo" else max(rtt, 0.1), med[rtt]))
                f.write("\n\n")
    growth = [r for r in RESULTS if r["kind"] == "growth"]
    if growth:
        log("\n### growth (median of %d rounds)\n" % args.rounds)
        log("| axis | sims | parameters | env steps/s | server CPU us/step | server cores |")
        log("|---|---:|---:|---:|---:|---:|")
        for axis, fname in (("sims", "growth_sims.dat"), ("params", "growth_params.dat")):
            keys = []
            for r in growth:
                if r["axis"] == axis and (r["sims"], r["params"]) not in keys:
                    keys.append((r["sims"], r["params"]))
            with open(os.path.join(args.out, fname), "w") as f:
                for n, p in keys:
                    rows = [r for r in growth if r["axis"] == axis and r["sims"] == n
                            and r["params"] == p]
                    s, c, k = (median_of(rows, "steps_per_s"), median_of(rows, "cpu_us_per_step"),
                               median_of(rows, "server_cores"))
                    log("| %s | %d | %d | %.0f | %.1f | %.2f |" % (axis, n, p, s, c, k))
                    f.write("%d %d %g %g %g\n" % (n, p, s, c, k))
    if args.plot_dir:
        plot(args, bool(dist), bool(demo), bool(growth))


def plot(args, dist, demo, growth):
    os.makedirs(args.plot_dir, exist_ok=True)
    out = args.out
    script = ['set terminal pngcairo size 1200,520 font ",10"', "set grid",
              "set key inside bottom left box opaque", "set logscale xy",
              'set format x "%g"']
    if dist or demo:
        script += [
            'set output "%s/distance.png"' % args.plot_dir,
            "set multiplot layout 1,2",
            'set xlabel "round trip, ms (loopback drawn at 0.03, 0 ms at 0.1)"',
            'set ylabel "env steps/s"',
            'set title "env steps/s against round trip (%s)"' % args.note,
        ]
        if dist:
            lines = ['"%s/distance.dat" index %d using 1:2 with linespoints lw 2 '
                     'title "%d sims, %s"' % (out, i, n, mode)
                     for i, (n, mode) in enumerate(args.combos)]
            script.append("plot " + ", ".join(lines))
        else:
            script.append("plot 1 notitle")
        script += ['set title "CartPole demo: seconds to solve (not solved in %g s: not drawn)"'
                   % args.demo_time_limit, 'set ylabel "seconds to solve"',
                   "set key inside top left box opaque"]
        if demo:
            lines = ['"%s/demo.dat" index %d using 1:2 with linespoints lw 2 '
                     'title "8 sims x %d env, %s"' % (out, i, v[0], v[1])
                     for i, v in enumerate(args.demo_variants)]
            script.append("plot " + ", ".join(lines))
        else:
            script.append("plot 1 notitle")
        script += ["unset multiplot"]
    if growth:
        script += [
            'set output "%s/growth.png"' % args.plot_dir,
            "set multiplot layout 1,2", "set key inside top right box opaque",
            "set y2tics", "set logscale y2", "set ytics nomirror", 'set format y2 "%g"',
            'set ylabel "env steps/s"', 'set y2label "server CPU us per env step"',
            'set xlabel "simulator processes (model 4-32-2, 226 parameters)"',
            'set title "against simulators (%s)"' % args.note,
            'plot "%s/growth_sims.dat" using 1:3 with linespoints lw 2 title "env steps/s" '
            'axes x1y1, "" using 1:4 with linespoints lw 2 title "server CPU us/step" axes x1y2'
            % out,
            'set xlabel "model parameters (4-h-h-2, 8 simulators)"', 'set format x "10^{%L}"',
            'set title "against model size"',
            'plot "%s/growth_params.dat" using 2:3 with linespoints lw 2 title "env steps/s" '
            'axes x1y1, "" using 2:4 with linespoints lw 2 title "server CPU us/step" axes x1y2'
            % out,
            "unset multiplot",
        ]
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)
    log("bench_distance: plots in %s" % args.plot_dir)


# ---- main -------------------------------------------------------------------------------


def release_binary(path, what):
    parts = os.path.abspath(path).split(os.sep)
    for bad in ("sanitizers", "isa_builds", "fuzz", "asan", "tsan", "ubsan"):
        if bad in parts:
            raise SystemExit("bench_distance: --%s %s is not a release build (%s/ in its path)"
                             % (what, path, bad))
    if not os.access(path, os.X_OK):
        raise SystemExit("bench_distance: --%s %s is not an executable; build it "
                         "(cmake --build build -j2 --target deltaserve cartpole_sim "
                         "deltaserve_delay_forwarder)" % (what, path))
    return os.path.abspath(path)


def parse_rtt(text):
    return [t if t == "lo" else float(t) for t in text.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    build = os.path.join(REPO, "build")
    p.add_argument("--server", default=os.path.join(build, "server", "deltaserve"))
    p.add_argument("--sim", default=os.path.join(build, "sim", "cartpole_sim"))
    p.add_argument("--forwarder", default=os.path.join(build, "bench",
                                                       "deltaserve_delay_forwarder"))
    p.add_argument("--part", default="all", choices=["distance", "demo", "growth", "all"])
    p.add_argument("--quick", action="store_true", help="a short version (about a minute)")
    p.add_argument("--tiny", action="store_true", help="one distance configuration (tests)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the namespace and tc commands, run nothing")
    p.add_argument("--rounds", type=int, default=None, help="default 2 (--quick: 1)")
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per config")
    p.add_argument("--warmup", type=float, default=None, help="seconds after all connected")
    p.add_argument("--rate", default="100mbit", help="tbf bandwidth cap on both veth ends")
    p.add_argument("--rtts", default="lo,0,1,10,50", help="'lo' = loopback, else ms")
    p.add_argument("--combos", dest="combos_text", default=None,
                   help="distance part: SIMS:MODE,... (modes: %s)" % ", ".join(MODES))
    p.add_argument("--demo-variants", default="1:replica+--episodes_per_submit=4,4:roundtrip",
                   help="demo part: ENVS:ACTIONS,... (8 simulators each); ACTIONS may carry "
                   "cartpole_sim flags after '+', e.g. 1:replica+--replica_catch_up=push")
    p.add_argument("--demo-seeds", default="1", help="demo part: seeds, comma-separated")
    p.add_argument("--demo-time-limit", type=float, default=None,
                   help="seconds (default 30; --quick: 10)")
    p.add_argument("--max-minutes", type=float, default=20, help="watchdog for the whole run")
    p.add_argument("--out", default=os.path.join(REPO, "out", "bench_distance"))
    p.add_argument("--plot-dir", default=None, help="write distance.png / growth.png here")
    p.add_argument("--note", default="shared 2-core machine", help="in the plot titles")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw --plot-dir from the .dat files a run left in --out")
    args = p.parse_args()
    args.rtts = parse_rtt(args.rtts)
    args.combos = [(8, "unary"), (8, "session1"), (8, "session16"), (8, "replica"),
                   (64, "session16")]
    args.demo_seeds = [int(x) for x in args.demo_seeds.split(",")]
    args.demo_variants = [(int(v.split(":")[0]), v.split(":")[1])
                          for v in args.demo_variants.split(",")]
    args.growth_sims = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    args.growth_params = [1e3, 1e4, 1e5, 1e6, 1e7]
    args.growth_params_sims = 8
    rounds, seconds, warmup, demo_limit = 2, 1.5, 0.5, 30.0
    if args.quick:
        rounds, seconds, warmup, demo_limit = 1, 1.0, 0.3, 10.0
        args.combos = [(8, "unary"), (8, "session16"), (8, "replica")]
        args.rtts = [r for r in args.rtts if r in ("lo", 10.0)] or args.rtts
        args.demo_variants = args.demo_variants[:1]
        args.growth_sims = [1, 16]
        args.growth_params = [1e3, 1e6]
    if args.tiny:
        rounds, seconds, warmup = 1, 0.5, 0.3
        args.combos = [(2, "session1")]
        args.rtts = [10.0]
    if args.combos_text:
        args.combos = [(int(c.split(":")[0]), c.split(":")[1])
                       for c in args.combos_text.split(",")]
        for _, mode in args.combos:
            if mode not in MODES:
                raise SystemExit("bench_distance: unknown mode %r in --combos" % mode)
    args.rounds = args.rounds or rounds
    args.seconds = args.seconds or seconds
    args.warmup = args.warmup if args.warmup is not None else warmup
    args.demo_time_limit = args.demo_time_limit or demo_limit
    if args.plot_only:
        names = os.listdir(args.out)
        plot(args, "distance.dat" in names, "demo.dat" in names, "growth_sims.dat" in names)
        return 0
    for name in ("server", "sim", "forwarder"):
        if not args.dry_run:
            setattr(args, name, release_binary(getattr(args, name), name))
    os.makedirs(args.out, exist_ok=True)

    atexit.register(CLEANUP.run)

    def on_signal(signum, _frame):
        raise SystemExit("bench_distance: signal %d, cleaning up" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(args.max_minutes * 60))

    parts = ["distance", "demo", "growth"] if args.part == "all" else [args.part]
    log("# %s %s, %d cores; uptime: %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                           os.uname().release, os.cpu_count(),
                                           subprocess.run(["uptime"], capture_output=True,
                                                          text=True).stdout.strip()))
    log("# steal (vmstat 1 2, last line 'st'): %s" % steal())
    try:
        net = None
        if any(p in parts for p in ("distance", "demo")) and any(r != "lo" for r in args.rtts):
            if os.geteuid() != 0 and not args.dry_run:
                raise SystemExit("bench_distance: network namespaces need root")
            net = Net(args.rate, args.dry_run)
            net.up()
        if args.dry_run:
            log("bench_distance: dry run; would run parts %s, rtts %s, modes %s, rounds %d"
                % (parts, args.rtts, args.combos, args.rounds))
            return 0
        for part in parts:
            if part == "distance":
                part_distance(args, net)
            elif part == "demo":
                part_demo(args, net)
            else:
                part_growth(args)
        report(args)
    finally:
        log("# end %s; uptime: %s" % (time.strftime("%H:%M:%SZ", time.gmtime()), subprocess.run(
            ["uptime"], capture_output=True, text=True).stdout.strip()))
        log("# steal at end: %s" % steal())
        CLEANUP.run()
    return 0


def steal():
    out = subprocess.run(["vmstat", "1", "2"], capture_output=True, text=True).stdout.split("\n")
    lines = [l.split() for l in out if l.strip()]
    if len(lines) < 3:
        return "vmstat unavailable"
    header = lines[1]
    return "st=%s (us=%s sy=%s id=%s)" % tuple(
        lines[-1][header.index(k)] for k in ("st", "us", "sy", "id"))


if __name__ == "__main__":
    sys.exit(main())
