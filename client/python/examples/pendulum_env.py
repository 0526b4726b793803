"""Pendulum swing-up in numpy: gymnasium Pendulum-v1's dynamics, reward and limits.

State (theta, theta_dot) in float64, theta = 0 upright. One step of dt = 0.05 s with the
torque u clipped to [-2, 2]:

    reward      = -(angle_normalize(theta)^2 + 0.1 * theta_dot^2 + 0.001 * u^2)   (state before the step)
    theta_dot' = clip(theta_dot + (3 g / (2 l) * sin(theta) + 3 / (m l^2) * u) * dt, -8, 8)
    theta'     = theta + theta_dot' * dt

with g = 10, m = 1, l = 1. Observation (cos theta, sin theta, theta_dot) as float32. Reset draws
theta ~ U(-pi, pi) and theta_dot ~ U(-1, 1). Episodes never terminate; they are truncated after
200 steps (gymnasium's TimeLimit). Used by the examples and by tools/ (the PyTorch reference).
"""

import math

import numpy as np

GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
MAX_STEPS = 200
OBS_DIM = 3
ACTION_DIM = 1


def angle_normalize(x):
    """Maps an angle to [-pi, pi) as gymnasium does: ((x + pi) mod 2 pi) - pi."""
    return ((x + math.pi) % (2 * math.pi)) - math.pi


class Pendulum:
    """One pendulum; reset draws come from the numpy Generator `rng`."""

    def __init__(self, rng):
        self.rng = rng
        self.reset()

    def reset(self):
        """Starts a new episode and returns its first observation."""
        self.theta = float(self.rng.uniform(-math.pi, math.pi))
        self.theta_dot = float(self.rng.uniform(-1.0, 1.0))
        self.steps = 0
        return self.observation()

    def set_state(self, theta, theta_dot):
        self.theta, self.theta_dot = float(theta), float(theta_dot)

    def observation(self):
        return np.array([math.cos(self.theta), math.sin(self.theta), self.theta_dot],
                        dtype=np.float32)

    def step(self, torque):
        """Applies `torque` (a number or a 1-element array; NaN counts as 0) for one step.

        Returns (observation, reward, truncated); truncated is True on the 200th step of the
        episode (the caller resets). Stepping after that continues the physics.
        """
        u = float(np.asarray(torque).reshape(-1)[0])
        u = 0.0 if math.isnan(u) else min(max(u, -MAX_TORQUE), MAX_TORQUE)
        th, thdot = self.theta, self.theta_dot
        reward = -(angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2)
        thdot = thdot + (3.0 * GRAVITY / (2.0 * LENGTH) * math.sin(th)
                         + 3.0 / (MASS * LENGTH ** 2) * u) * DT
        thdot = min(max(thdot, -MAX_SPEED), MAX_SPEED)
        self.theta, self.theta_dot = th + thdot * DT, thdot
        self.steps += 1
        return self.observation(), reward, self.steps >= MAX_STEPS
