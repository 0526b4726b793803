#!/usr/bin/python3
"""CartPole in numpy, learning through deltaserve with REINFORCE.

    /usr/bin/python3 client/python/examples/cartpole.py --server=127.0.0.1:PORT \
        --threads=8 --actions=replica --target=475

Each thread runs one CartPole (gym CartPole-v1 physics), takes the policy's
logits from the server (a Forward round trip per step) or from a shared
NumpyReplica (weights pushed by the server), and after each episode submits
X = states, y~ = logits used, delta = (softmax(z) - onehot(a)) * A / N; with
a replica it then waits (at most 1 s) until the replica holds the version that
includes the episode, so a lagging replica cannot make every thread act, and
submit, on weights many steps old.
Prints progress and stops at the target average return over the last 100
episodes (or after --episodes / --time-limit). Needs deltaserve_client: pip
installed, or found next to this file (client/python), with its stubs (see
client/python/README.md).
"""

import argparse
import collections
import math
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from deltaserve_client import (Aborted, NumpyReplica, ResourceExhausted,  # noqa: E402
                               TrainerClient, security)


REPLICA_SYNC_SECONDS = 1.0  # longest wait for the replica to hold a thread's own update


class CartPole:
    """gym CartPole-v1: Euler, 12 degrees / 2.4 m limits, 500-step cap."""

    def __init__(self, rng):
        self.rng = rng
        self.reset()

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
        terminated = abs(self.state[0]) > 2.4 or abs(self.state[2]) > 12 * 2 * math.pi / 360
        return self.state.astype(np.float32), terminated or self.steps >= 500


def reinforce_deltas(logits, actions, rewards, gamma=0.99):
    """delta_t = (softmax(z_t) - onehot(a_t)) * A_t / N with normalised returns-to-go."""
    returns = np.zeros(len(rewards), dtype=np.float32)
    g = 0.0
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * g
        returns[t] = g
    adv = (returns - returns.mean()) / (returns.std() + 1e-6)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    probs[np.arange(len(actions)), actions] -= 1.0
    return (probs * adv[:, None] / len(actions)).astype(np.float32)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.returns = collections.deque(maxlen=100)
        self.episodes = 0
        self.version = 0
        self.stop = threading.Event()

    def add(self, ret, version, target):
        with self.lock:
            self.returns.append(ret)
            self.episodes += 1
            self.version = max(self.version, version)
            if target and len(self.returns) == 100 and np.mean(self.returns) >= target:
                self.stop.set()

    def average(self):
        with self.lock:
            return float(np.mean(self.returns)) if self.returns else 0.0


def simulate(client, policy, replica, seed, stats, args):
    rng = np.random.default_rng(seed)
    env = CartPole(rng)
    episodes = 0
    while not stats.stop.is_set() and (not args.episodes or episodes < args.episodes):
        obs = env.reset()
        states, logits, actions, versions = [], [], [], []
        done = False
        while not done:
            z, version = policy(obs[None, :])
            p = np.exp(z[0] - z[0].max())
            action = int(rng.random() < p[1] / p.sum())
            states.append(obs)
            logits.append(z[0])
            actions.append(action)
            versions.append(version)
            obs, done = env.step(action)
        episodes += 1
        x, y = np.array(states), np.array(logits)
        delta = reinforce_deltas(y, np.array(actions), np.ones(len(actions), np.float32))
        try:
            # Reward 1 per step: the return is the episode's length.
            metrics = {"episode_return": float(len(actions)), "episode_length": len(actions)}
            applied = client.submit_delta(x, delta, min(versions), outputs=y,
                                          metrics=metrics).version
            if replica:
                # Act on weights that include this episode: without the wait a
                # replica that lags (a busy machine) has every thread push the
                # same stale direction for many steps, and REINFORCE can collapse.
                replica.wait_for_version(applied, timeout=REPLICA_SYNC_SECONDS)
        except (Aborted, ResourceExhausted):
            pass  # too stale, or the learner's queue is full: drop this episode
        stats.add(len(actions), versions[-1], args.target)


def train(server, threads=8, actions="replica", seed=1, target=475.0, episodes=0,
          time_limit=120.0, progress=True, security_kwargs=None):
    """Runs `threads` simulators; returns (average of the last 100 returns, episodes, seconds).

    security_kwargs: TrainerClient's TLS/token arguments (deltaserve_client.security)."""
    args = argparse.Namespace(episodes=episodes, target=target)
    client = TrainerClient(server, **(security_kwargs or {}))
    replica = NumpyReplica(client).start() if actions == "replica" else None
    policy = replica.forward if replica else client.forward
    stats = Stats()
    workers = [threading.Thread(target=simulate,
                                args=(client, policy, replica, seed * 1000 + i, stats, args),
                                daemon=True) for i in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    try:
        while any(w.is_alive() for w in workers):
            if time.monotonic() - start > time_limit:
                stats.stop.set()
            for w in workers:
                w.join(timeout=1.0 if progress else 0.1)
            if progress:
                print("[%5.1fs] episodes=%d avg_return_last100=%.1f version=%d" % (
                    time.monotonic() - start, stats.episodes, stats.average(), stats.version),
                    flush=True)
    finally:
        stats.stop.set()
        if replica:
            replica.stop()
        client.close()
    return stats.average(), stats.episodes, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--actions", choices=["replica", "roundtrip"], default="replica")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--episodes", type=int, default=0, help="per thread; 0 = no limit")
    parser.add_argument("--time-limit", type=float, default=120.0)
    security.add_arguments(parser)
    args = parser.parse_args()
    avg, episodes, seconds = train(args.server, args.threads, args.actions, args.seed,
                                   args.target, args.episodes, args.time_limit,
                                   security_kwargs=security.security_kwargs(args))
    solved = avg >= args.target
    print("result solved=%d seconds=%.2f episodes=%d avg_return=%.1f" % (
        solved, seconds, episodes, avg))
    return 0 if solved else 1


if __name__ == "__main__":
    sys.exit(main())
