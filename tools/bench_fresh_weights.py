#!/usr/bin/python3
"""Do default-settings WatchParameters clients act on fresh weights? (issue 23, item 1)

    PYTHONPATH=build/python /usr/bin/python3 tools/bench_fresh_weights.py \
        --server_binary=build/server/deltaserve [--pairs=6] [--doc=docs/benchmarks.md]

Three measurements, every client with gRPC's DEFAULT channel options:

(a) cartpole: tools/independent_cartpole.py against deltaserve and against
    tools/torch_param_server.py (same model, Adam, max_staleness 50), --pairs
    interleaved pairs (the order alternates); seconds to solve and ABORTED
    episodes per run, medians.
(b) slow_reader: a learner process submits 1-row deltas as fast as it can
    (--learner_threads threads) while a reader takes 5 ms per update; after
    --reader_seconds the lag = server version - the version last read.
(c) non_readers: learner steps/s alone and with --non_readers
    WatchParameters streams that never read, interleaved (--rounds each).

Every run starts a fresh server on 127.0.0.1:0. With --doc the results are
appended as a section of that file (command, uptime, vmstat steal). The
machine this runs on may be shared: the numbers are medians of interleaved
runs, and the load is printed with them.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from deltaserve.v1 import trainer_pb2, trainer_pb2_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"

CARTPOLE = """models {
  name: "cartpole"
  input_dim: 4
  layers { units: 32 activation: ACTIVATION_TANH }
  layers { units: 2 activation: ACTIVATION_IDENTITY }
  seed: 1
  optimizer { kind: ADAM learning_rate: 0.01 }
  surrogate { mode: CURRENT delta_scale: 1 reduction: SUM }
  samples_per_step: 1
  max_staleness: 50
}
"""
# For (b) and (c): the same model, no staleness limit (the learner's threads
# submit at whatever version they last saw).
LEARNER = CARTPOLE.replace("max_staleness: 50", "max_staleness: 0")


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        p for p in [os.path.join(ROOT, "build", "python"), e.get("PYTHONPATH", "")] if p)
    return e


class Server:
    """A server process that prints "listening on ADDR"."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env())
        deadline = time.monotonic() + 60
        self.address = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                self.address = line.split("listening on", 1)[1].split()[0].rstrip(",")
                break
        if self.address is None:
            self.stop()
            raise RuntimeError("%s did not print 'listening on'" % argv[0])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def deltaserve(args, config_path):
    return Server([args.server_binary, "--listen=127.0.0.1:0", "--log_level=error",
                   "--config=" + config_path])


def torch_server(config_path):
    return Server([PY, os.path.join(HERE, "torch_param_server.py"), "--config=" + config_path])


def cartpole_run(address, args):
    out = subprocess.run([PY, os.path.join(HERE, "independent_cartpole.py"), "--server=" + address,
                          "--quiet", "--time-limit=%g" % args.cartpole_time_limit],
                         capture_output=True, text=True, env=env(),
                         timeout=args.cartpole_time_limit + 60)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError("independent_cartpole.py printed no result: %s" % out.stderr[-2000:])
    return json.loads(lines[-1])


def learn(address, threads, stop, steps):
    """Submits 1-row deltas as fast as `threads` threads can until `stop`."""
    channel = grpc.insecure_channel(address)
    stub = trainer_pb2_grpc.TrainerStub(channel)
    info = stub.GetModelInfo(trainer_pb2.GetModelInfoRequest(), timeout=10)
    d_in, d_out = info.spec.input_dim, info.output_dim

    def loop():
        request = trainer_pb2.SubmitDeltaRequest(
            inputs=trainer_pb2.Matrix(rows=1, cols=d_in, data=[0.25] * d_in),
            deltas=trainer_pb2.Matrix(rows=1, cols=d_out, data=[1e-3] * d_out))
        while not stop.is_set():
            request.version = stub.SubmitDelta(request, timeout=10).version
            steps.append(1)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers, channel


def learner_main(argv):
    """`learn ADDR THREADS SECONDS`: a learner in its own process; prints steps/s."""
    address, threads, seconds = argv[0], int(argv[1]), float(argv[2])
    stop, steps = threading.Event(), []
    workers, channel = learn(address, threads, stop, steps)
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    channel.close()
    print(json.dumps({"steps": len(steps), "per_s": len(steps) / seconds}), flush=True)


def learner_process(address, threads, seconds):
    return subprocess.Popen([PY, os.path.abspath(__file__), "learn", address, str(threads),
                             str(seconds)], stdout=subprocess.PIPE, text=True, env=env())


def model_version(address):
    with grpc.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerStub(channel)
        return stub.GetModelInfo(trainer_pb2.GetModelInfoRequest(), timeout=10).version


def slow_reader_run(args, config_path):
    server = deltaserve(args, config_path)
    try:
        learner = learner_process(server.address, args.learner_threads, args.reader_seconds + 30)
        # Let the learner get going before the reader starts (as a client joining a
        # model that trains).
        deadline = time.monotonic() + 30
        while model_version(server.address) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        channel = grpc.insecure_channel(server.address)
        stub = trainer_pb2_grpc.TrainerStub(channel)
        start_version = model_version(server.address)
        stream = stub.WatchParameters(trainer_pb2.WatchParametersRequest())
        start = time.monotonic()
        reads, last = 0, 0
        for update in stream:
            reads += 1
            last = update.version
            if time.monotonic() - start >= args.reader_seconds:
                break
            time.sleep(args.read_ms / 1000.0)
        newest = model_version(server.address)
        stream.cancel()
        channel.close()
        learner.kill()
        learner.wait()
        return {"reads": reads, "last_read": last, "newest": newest,
                "trained_while_reading": newest - start_version, "lag": newest - last,
                "lag_fraction": round((newest - last) / max(1, newest - start_version), 4)}
    finally:
        server.stop()


def non_readers_run(args, config_path, watchers):
    server = deltaserve(args, config_path)
    try:
        channels, streams = [], []
        for i in range(watchers):
            if i % args.watchers_per_channel == 0:
                channels.append(grpc.insecure_channel(server.address))
            stub = trainer_pb2_grpc.TrainerStub(channels[-1])
            streams.append(stub.WatchParameters(trainer_pb2.WatchParametersRequest()))
        if watchers:  # every stream is open (its first update sent) before the learner starts
            for s in streams:
                s.initial_metadata()
        learner = learner_process(server.address, args.learner_threads, args.learner_seconds)
        out, _ = learner.communicate(timeout=args.learner_seconds + 60)
        result = json.loads(out.strip().splitlines()[-1])
        for s in streams:
            s.cancel()
        for c in channels:
            c.close()
        return result["per_s"]
    finally:
        server.stop()


def median(values):
    return statistics.median(values) if values else float("nan")


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def vmstat_steal(seconds=5):
    out = subprocess.run(["vmstat", "1", str(seconds)], capture_output=True, text=True).stdout
    rows = [l.split() for l in out.splitlines()[2:] if l.strip()]
    header = out.splitlines()[1].split()
    st = header.index("st")
    idle = header.index("id")
    return (median([float(r[st]) for r in rows[1:]]), median([float(r[idle]) for r in rows[1:]]))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "learn":
        return learner_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server_binary", default=os.path.join(ROOT, "build/server/deltaserve"))
    parser.add_argument("--only", default="cartpole,slow_reader,non_readers")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--cartpole_time_limit", type=float, default=60)
    parser.add_argument("--reader_runs", type=int, default=3)
    parser.add_argument("--reader_seconds", type=float, default=4)
    parser.add_argument("--read_ms", type=float, default=5)
    parser.add_argument("--learner_threads", type=int, default=4)
    parser.add_argument("--learner_seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--non_readers", type=int, default=300)
    parser.add_argument("--watchers_per_channel", type=int, default=100)
    parser.add_argument("--doc", default="")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    only = set(args.only.split(","))

    before = uptime()
    steal_before = vmstat_steal()
    lines = []

    def say(line):
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        config_path = os.path.join(tmp, "cartpole.textproto")
        with open(config_path, "w") as f:
            f.write(CARTPOLE)
        learner_config = os.path.join(tmp, "learner.textproto")
        with open(learner_config, "w") as f:
            f.write(LEARNER)
        if "cartpole" in only:
            runs = {"deltaserve": [], "torch": []}
            for pair in range(args.pairs):
                order = ["deltaserve", "torch"] if pair % 2 == 0 else ["torch", "deltaserve"]
                for which in order:
                    server = deltaserve(args, config_path) if which == "deltaserve" \
                        else torch_server(config_path)
                    try:
                        r = cartpole_run(server.address, args)
                    finally:
                        server.stop()
                    runs[which].append(r)
                    say("  pair %d %-10s solved=%s %.2f s, %d episodes, ABORTED %d, "
                        "staleness max %d mean %.1f, %d watch reads" % (
                            pair + 1, which, r["solved"], r["seconds"], r["episodes"],
                            r["aborted"], r["act_lag_max"], r["act_lag_mean"],
                            r["watch_reads"]) +
                        (" ERROR %s" % r["error"] if "error" in r else "") +
                        (" WATCH ERROR %s" % r["watch_error"] if "watch_error" in r else ""))
            for which in ("deltaserve", "torch"):
                rs = runs[which]
                say("(a) %-10s median %.2f s (%.2f-%.2f), solved %d/%d, ABORTED per run %s" % (
                    which, median([r["seconds"] for r in rs]),
                    min(r["seconds"] for r in rs), max(r["seconds"] for r in rs),
                    sum(r["solved"] for r in rs), len(rs), [r["aborted"] for r in rs]))
        if "slow_reader" in only:
            rs = [slow_reader_run(args, learner_config) for _ in range(args.reader_runs)]
            for r in rs:
                say("  slow reader: %d reads, last read v%d, newest v%d (%d trained while "
                    "reading): %d behind (%.1f%%)" % (
                        r["reads"], r["last_read"], r["newest"], r["trained_while_reading"],
                        r["lag"], 100 * r["lag_fraction"]))
            say("(b) %g ms reader after %g s: median lag %d versions (%.1f%% of those trained)" % (
                args.read_ms, args.reader_seconds, median([r["lag"] for r in rs]),
                100 * median([r["lag_fraction"] for r in rs])))
        if "non_readers" in only:
            alone, loaded = [], []
            for _ in range(args.rounds):
                alone.append(non_readers_run(args, learner_config, 0))
                loaded.append(non_readers_run(args, learner_config, args.non_readers))
                say("  learner alone %.0f steps/s, with %d non-reading watchers %.0f steps/s" % (
                    alone[-1], args.non_readers, loaded[-1]))
            say("(c) learner with %d non-reading watchers: median %.0f vs %.0f steps/s alone "
                "(%.2fx)" % (args.non_readers, median(loaded), median(alone),
                             median(loaded) / median(alone)))
    after = uptime()
    steal_after = vmstat_steal()
    say("uptime before: %s" % before)
    say("uptime after:  %s" % after)
    say("vmstat (median of 4 s) before: steal %g%%, idle %g%%; after: steal %g%%, idle %g%%" % (
        steal_before + steal_after))
    if args.doc:
        with open(args.doc, "a") as f:
            f.write("\n```\n$ PYTHONPATH=build/python /usr/bin/python3 %s\n%s\n```\n" % (
                " ".join(["tools/bench_fresh_weights.py"] + sys.argv[1:]), "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
