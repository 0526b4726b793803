"""The learning-curve CSV both implementations write: the deltaserve examples
(client/python/examples) and the in-process PyTorch references (tools/torch_rl.py), so one
plot (tools/bench_algorithms.py) draws both. Needs only numpy."""

import csv
import time

import numpy as np


class LearningCurve:
    """One CSV row per finished episode: episode, env_steps, wall_seconds, return, average
    (the mean of the last `window` returns); prints every `print_every`-th row. Thread-safe
    callers hold their own lock (ppo_pendulum.py's simulators do)."""

    def __init__(self, path, window, print_every=10):
        self.window, self.print_every = window, print_every
        self.returns = []
        self.start, self.cpu_start = time.monotonic(), time.process_time()
        self.file = open(path, "w", newline="") if path else None
        self.writer = csv.writer(self.file) if self.file else None
        if self.writer:
            self.writer.writerow(["episode", "env_steps", "wall_seconds", "return", "average"])

    def average(self):
        return float(np.mean(self.returns[-self.window:])) if self.returns else float("-inf")

    def add(self, env_steps, episode_return):
        self.returns.append(float(episode_return))
        wall = time.monotonic() - self.start
        row = [len(self.returns), env_steps, f"{wall:.3f}", f"{episode_return:.3f}",
               f"{self.average():.3f}"]
        if self.writer:
            self.writer.writerow(row)
            self.file.flush()
        if len(self.returns) % self.print_every == 0:
            print("episode %d  steps %d  wall %.1fs  return %.1f  avg%d %.1f" % (
                len(self.returns), env_steps, wall, episode_return, self.window, self.average()),
                flush=True)

    def elapsed(self):
        return time.monotonic() - self.start

    def cpu_seconds(self):
        """CPU time of this process since the curve started (a loaded machine stretches wall)."""
        return time.process_time() - self.cpu_start

    def close(self):
        if self.file:
            self.file.close()
