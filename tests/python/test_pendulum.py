"""The numpy Pendulum (client/python/examples/pendulum_env.py) against hand-computed steps of
gymnasium Pendulum-v1's update rule, the same numbers tests/sim/pendulum_env_test.cc checks:
    r = -(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)
    theta_dot' = clip(theta_dot + (15 sin(theta) + 3 u) 0.05, -8, 8),  theta' = theta + 0.05 theta_dot'
"""

import math
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client",
                                "python", "examples"))
import pendulum_env  # noqa: E402
from pendulum_env import Pendulum, angle_normalize  # noqa: E402


class PendulumTest(unittest.TestCase):
    def env(self, theta, theta_dot):
        env = Pendulum(np.random.default_rng(1))
        env.set_state(theta, theta_dot)
        return env

    def test_three_steps_from_a_fixed_state_match_the_hand_computed_values(self):
        env = self.env(0.5, 1.0)
        # Step 1: r = -(0.25 + 0.1 + 0.001 * 2.25) = -0.35225;
        # theta_dot' = 1 + (15 * 0.479425538604203 + 4.5) * 0.05; theta' = 0.5 + 0.05 theta_dot'.
        obs, reward, truncated = env.step(np.array([1.5], np.float32))
        self.assertAlmostEqual(reward, -0.35225, places=12)
        self.assertAlmostEqual(env.theta_dot, 1.5845691539531521, places=12)
        self.assertAlmostEqual(env.theta, 0.5792284576976576, places=12)
        np.testing.assert_allclose(obs, [0.8368852245594731, 0.5473784074240052,
                                         1.5845691539531521], rtol=1e-6)
        self.assertEqual(obs.dtype, np.float32)
        self.assertFalse(truncated)
        _, reward, _ = env.step(1.5)
        self.assertAlmostEqual(reward, -0.588841546572788, places=12)
        self.assertAlmostEqual(env.theta_dot, 2.220102959521156, places=12)
        self.assertAlmostEqual(env.theta, 0.6902336056737155, places=12)
        _, reward, _ = env.step(1.5)
        self.assertAlmostEqual(reward, -0.9715581454887982, places=12)
        self.assertAlmostEqual(env.theta_dot, 2.922640958743781, places=12)
        self.assertAlmostEqual(env.theta, 0.8363656536109045, places=12)

    def test_torque_is_clipped_to_two_in_the_dynamics_and_the_reward(self):
        env = self.env(0.0, 0.0)
        _, reward, _ = env.step(5.0)
        self.assertAlmostEqual(reward, -0.004, places=12)
        self.assertAlmostEqual(env.theta_dot, 0.3, places=12)
        self.assertAlmostEqual(env.theta, 0.015, places=12)
        env.set_state(0.0, 0.0)
        _, reward, _ = env.step(-100.0)
        self.assertAlmostEqual(reward, -0.004, places=12)
        self.assertAlmostEqual(env.theta_dot, -0.3, places=12)

    def test_speed_is_clipped_to_eight_before_the_angle_moves(self):
        env = self.env(math.pi / 2, 7.9)  # 7.9 + (15 + 6) * 0.05 = 8.95 -> 8
        env.step(2.0)
        self.assertEqual(env.theta_dot, 8.0)
        self.assertAlmostEqual(env.theta, math.pi / 2 + 0.4, places=12)
        env.set_state(-math.pi / 2, -7.9)
        env.step(-2.0)
        self.assertEqual(env.theta_dot, -8.0)

    def test_reward_uses_the_angle_normalised_to_minus_pi_pi(self):
        self.assertAlmostEqual(angle_normalize(2 * math.pi + 0.1), 0.1, places=12)
        self.assertAlmostEqual(angle_normalize(-3.5), 2.7831853071795862, places=12)
        self.assertAlmostEqual(angle_normalize(math.pi), -math.pi, places=12)
        self.assertAlmostEqual(angle_normalize(-7 * math.pi / 2), math.pi / 2, places=12)
        _, reward, _ = self.env(-3.5, 0.0).step(0.0)
        self.assertAlmostEqual(reward, -2.7831853071795862 ** 2, places=12)
        _, reward, _ = self.env(4 * math.pi + 0.1, 0.0).step(0.0)
        self.assertAlmostEqual(reward, -0.01, places=12)

    def test_episode_is_truncated_at_the_two_hundredth_step(self):
        env = Pendulum(np.random.default_rng(4))
        for i in range(1, pendulum_env.MAX_STEPS):
            self.assertFalse(env.step(0.0)[2], i)
        self.assertTrue(env.step(0.0)[2])
        self.assertEqual(env.steps, 200)
        env.reset()
        self.assertFalse(env.step(0.0)[2])

    def test_reset_draws_angle_within_pi_and_speed_within_one(self):
        env = Pendulum(np.random.default_rng(5))
        thetas, speeds = [], []
        for _ in range(1000):
            obs = env.reset()
            thetas.append(env.theta)
            speeds.append(env.theta_dot)
            np.testing.assert_allclose(obs[:2], [math.cos(env.theta), math.sin(env.theta)],
                                       rtol=1e-6, atol=1e-7)
        self.assertGreaterEqual(min(thetas), -math.pi)
        self.assertLessEqual(max(thetas), math.pi)
        self.assertLess(min(thetas), -3.0)
        self.assertGreater(max(thetas), 3.0)
        self.assertGreaterEqual(min(speeds), -1.0)
        self.assertLessEqual(max(speeds), 1.0)

    def test_nan_torque_acts_as_zero(self):
        env = self.env(0.5, 1.0)
        _, reward, _ = env.step(float("nan"))
        self.assertAlmostEqual(reward, -0.35, places=12)
        self.assertAlmostEqual(env.theta_dot, 1.0 + 15 * 0.479425538604203 * 0.05, places=12)


if __name__ == "__main__":
    unittest.main()
