#!/usr/bin/python3
"""A CartPole REINFORCE client written from proto/deltaserve/v1/trainer.proto alone.

    PYTHONPATH=build/python /usr/bin/python3 tools/independent_cartpole.py \
        --server=127.0.0.1:PORT [--threads=8] [--target=475] [--time-limit=60]

What a third party would write: the raw generated stubs (trainer_pb2_grpc),
a channel with gRPC's DEFAULT options (no deltaserve_client, no watch-channel
settings), and replica mode: one thread reads WatchParameters and keeps the
newest weights, `--threads` workers act on them with a numpy forward pass,
and after each episode submit REINFORCE deltas (as the demo,
client/python/examples/cartpole.py): delta_t = (softmax(z_t) - onehot(a_t)) * A_t / N
with normalised returns-to-go, version = the oldest version the episode
acted on; then, like the demo, wait (at most 1 s) until the watched weights
include the episode. ABORTED (too stale) and RESOURCE_EXHAUSTED episodes are
dropped and counted. Stops when the mean return of the last 100 episodes
reaches --target, or at --time-limit.

The last line is JSON: {"solved", "seconds", "episodes", "aborted",
"resource_exhausted", "watch_reads", "act_lag_max", "act_lag_mean", ...};
act_lag is (the version a submission was applied at) - (the oldest version
its episode acted on), i.e. the staleness the server judged.
"""

import argparse
import faulthandler
import json
import signal
import math
import sys
import threading
import time

import grpc
import numpy as np

from deltaserve.v1 import config_pb2, trainer_pb2, trainer_pb2_grpc

SYNC_SECONDS = 1.0


class Weights:
    """The newest ParameterUpdate the watch thread has read, as numpy layers."""

    def __init__(self, spec):
        self.spec = spec
        self.cond = threading.Condition()
        self.version = -1
        self.layers = None
        self.reads = 0
        self.error = None

    def set(self, update):
        flat = np.asarray(update.parameters, dtype=np.float32)
        layers, offset, fan_in = [], 0, self.spec.input_dim
        for layer in self.spec.layers:
            w = flat[offset:offset + layer.units * fan_in].reshape(layer.units, fan_in)
            offset += layer.units * fan_in
            b = flat[offset:offset + layer.units]
            offset += layer.units
            layers.append((w, b, layer.activation))
            fan_in = layer.units
        with self.cond:
            self.reads += 1
            if update.version > self.version:
                self.version, self.layers = update.version, layers
                self.cond.notify_all()

    def get(self):
        with self.cond:
            return self.version, self.layers

    def wait_for(self, version, timeout):
        with self.cond:
            self.cond.wait_for(lambda: self.version >= version or self.error, timeout)


def forward(layers, x):
    a = x
    for w, b, activation in layers:
        a = a @ w.T + b
        if activation == config_pb2.ACTIVATION_TANH:
            a = np.tanh(a)
        elif activation == config_pb2.ACTIVATION_RELU:
            a = np.maximum(a, 0)
        elif activation == config_pb2.ACTIVATION_SIGMOID:
            a = 1 / (1 + np.exp(-a))
    return a


class CartPole:
    """gym CartPole-v1: Euler, 12 degrees / 2.4 m limits, 500-step cap."""

    def __init__(self, rng):
        self.rng = rng

    def reset(self):
        self.state = self.rng.uniform(-0.05, 0.05, size=4)
        self.steps = 0
        return self.state.astype(np.float32)

    def step(self, action):
        x, x_dot, theta, theta_dot = self.state
        force = 10.0 if action == 1 else -10.0
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + 0.05 * theta_dot ** 2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos ** 2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        self.state = np.array([x + 0.02 * x_dot, x_dot + 0.02 * x_acc,
                               theta + 0.02 * theta_dot, theta_dot + 0.02 * theta_acc])
        self.steps += 1
        fell = abs(self.state[0]) > 2.4 or abs(self.state[2]) > 12 * 2 * math.pi / 360
        return self.state.astype(np.float32), fell or self.steps >= 500


def reinforce_deltas(logits, actions, gamma=0.99):
    returns = np.zeros(len(actions), dtype=np.float32)
    g = 0.0
    for t in reversed(range(len(actions))):
        g = 1.0 + gamma * g
        returns[t] = g
    adv = (returns - returns.mean()) / (returns.std() + 1e-6)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    probs[np.arange(len(actions)), actions] -= 1.0
    return (probs * adv[:, None] / len(actions)).astype(np.float32)


def matrix(a):
    a = np.asarray(a, dtype=np.float32)
    return trainer_pb2.Matrix(rows=a.shape[0], cols=a.shape[1], data=a.ravel().tolist())


class Run:
    def __init__(self, target):
        self.lock = threading.Lock()
        self.target = target
        self.returns = []
        self.episodes = 0
        self.aborted = 0
        self.exhausted = 0
        self.lags = []
        self.error = None
        self.stop = threading.Event()

    def add(self, ret):
        with self.lock:
            self.returns.append(ret)
            self.episodes += 1
            last = self.returns[-100:]
            if len(last) == 100 and np.mean(last) >= self.target:
                self.stop.set()

    def average(self):
        with self.lock:
            return float(np.mean(self.returns[-100:])) if self.returns else 0.0


def watch(stub, model, weights, run):
    try:
        for update in stub.WatchParameters(trainer_pb2.WatchParametersRequest(model=model)):
            weights.set(update)
            if run.stop.is_set():
                break
    except grpc.RpcError as e:
        if not run.stop.is_set():
            with weights.cond:
                weights.error = e
                weights.cond.notify_all()
            run.stop.set()


def work(stub, model, weights, seed, run):
    rng = np.random.default_rng(seed)
    env = CartPole(rng)
    while not run.stop.is_set():
        obs = env.reset()
        states, logits, actions, versions = [], [], [], []
        done = False
        while not done:
            version, layers = weights.get()
            z = forward(layers, obs[None, :])[0]
            p = np.exp(z - z.max())
            action = int(rng.random() < p[1] / p.sum())
            states.append(obs)
            logits.append(z)
            actions.append(action)
            versions.append(version)
            obs, done = env.step(action)
        y = np.array(logits)
        request = trainer_pb2.SubmitDeltaRequest(
            model=model, inputs=matrix(np.array(states)), outputs=matrix(y),
            deltas=matrix(reinforce_deltas(y, np.array(actions))), version=min(versions))
        try:
            response = stub.SubmitDelta(request, timeout=10)
            with run.lock:
                run.lags.append(response.version - min(versions))
            weights.wait_for(response.version, SYNC_SECONDS)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ABORTED:
                with run.lock:
                    run.aborted += 1
            elif e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                with run.lock:
                    run.exhausted += 1
            else:  # anything else ends the run, and is reported
                with run.lock:
                    run.error = "SubmitDelta: %s %s" % (e.code(), e.details())
                run.stop.set()
                return
        run.add(len(actions))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--model", default="")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: where every thread is

    channel = grpc.insecure_channel(args.server)  # gRPC's default options, nothing else
    stub = trainer_pb2_grpc.TrainerStub(channel)
    info = stub.GetModelInfo(trainer_pb2.GetModelInfoRequest(model=args.model), timeout=10)
    weights = Weights(info.spec)
    run = Run(args.target)
    watcher = threading.Thread(target=watch, args=(stub, args.model, weights, run), daemon=True)
    watcher.start()
    weights.wait_for(0, 10)
    if weights.layers is None:
        print("no weights from WatchParameters", file=sys.stderr)
        return 2
    start = time.monotonic()
    workers = [threading.Thread(target=work, args=(stub, args.model, weights,
                                                   args.seed * 1000 + i, run), daemon=True)
               for i in range(args.threads)]
    for w in workers:
        w.start()
    next_print = start + 1
    while any(w.is_alive() for w in workers):
        now = time.monotonic()
        if now - start > args.time_limit:
            run.stop.set()
        if not args.quiet and now >= next_print:
            next_print += 1
            print("[%5.1fs] episodes=%d avg_last100=%.1f version=%d aborted=%d" % (
                now - start, run.episodes, run.average(), weights.version, run.aborted),
                flush=True)
        for w in workers:
            w.join(timeout=0.05)
    seconds = time.monotonic() - start
    channel.close()
    average = run.average()
    with run.lock:
        lags = run.lags or [0]
        result = {"solved": average >= args.target, "seconds": round(seconds, 3),
                  "episodes": run.episodes, "aborted": run.aborted,
                  "resource_exhausted": run.exhausted, "avg_return": round(average, 1),
                  "watch_reads": weights.reads, "last_version": weights.version,
                  "act_lag_max": int(max(lags)), "act_lag_mean": round(float(np.mean(lags)), 1)}
    if weights.error is not None:
        result["watch_error"] = str(weights.error.code())
    if run.error is not None:
        result["error"] = run.error
    print(json.dumps(result), flush=True)
    return 0 if result["solved"] else 1


if __name__ == "__main__":
    sys.exit(main())
