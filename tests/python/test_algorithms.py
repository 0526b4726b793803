"""The δ functions of client/python/examples/actor_critic.py against torch autograd of the
losses tools/torch_ppo.py and tools/torch_td3.py minimise (tools/torch_rl.py), to 1e-5:
what a deltaserve client sends must be the gradient the in-process reference follows."""

import os
import sys
import unittest

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_rl  # noqa: E402
from torch_rl import actor_critic  # noqa: E402

TOLERANCE = 1e-5


def leaf(array):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


class PpoDeltaTest(unittest.TestCase):
    def batch(self, seed, n=256, dims=2):
        rng = np.random.default_rng(seed)
        mu = rng.normal(0, 1, (n, dims))
        log_std = rng.normal(-0.3, 0.3, dims)
        actions = mu + np.exp(log_std) * rng.normal(0, 1, (n, dims))
        # The old policy differs enough that some ratios leave [1 - 0.2, 1 + 0.2] both ways.
        old_mu = mu + rng.normal(0, 0.3, (n, dims))
        old_log_prob = actor_critic.gaussian_log_prob(old_mu, log_std, actions)
        advantages = actor_critic.normalize_advantages(rng.normal(0, 1, n))
        return mu, log_std, actions, old_log_prob, advantages

    def test_policy_mean_and_log_std_deltas_equal_autograd_of_the_clipped_loss(self):
        for seed in range(3):
            mu, log_std, actions, old_log_prob, adv = self.batch(seed)
            ratio = np.exp(actor_critic.gaussian_log_prob(mu, log_std, actions) - old_log_prob)
            # The clip binds on both sides in this batch, so the mask is exercised.
            self.assertTrue(np.any((adv > 0) & (ratio > 1.2)))
            self.assertTrue(np.any((adv < 0) & (ratio < 0.8)))
            delta_mu, grad_log_std = actor_critic.ppo_policy_deltas(
                mu, log_std, actions, old_log_prob, adv, clip=0.2, ent_coef=0.01)
            mu_t, log_std_t = leaf(mu), leaf(log_std)
            torch_rl.ppo_policy_loss(mu_t, log_std_t, torch.tensor(actions),
                                     torch.tensor(old_log_prob), torch.tensor(adv),
                                     0.2, 0.01).backward()
            np.testing.assert_allclose(delta_mu, mu_t.grad.numpy(), atol=TOLERANCE, rtol=0)
            np.testing.assert_allclose(grad_log_std, log_std_t.grad.numpy(), atol=TOLERANCE,
                                       rtol=0)

    def test_backpropagating_delta_mu_gives_the_parameter_gradients_of_the_loss(self):
        mu, log_std, actions, old_log_prob, adv = self.batch(7, n=64, dims=1)
        torch.manual_seed(0)
        net = torch_rl.mlp([3, 16, 16, 1], torch.nn.Tanh).double()
        x = torch.randn(64, 3, dtype=torch.float64)
        out = net(x)
        torch_rl.ppo_policy_loss(out, torch.tensor(log_std), torch.tensor(actions),
                                 torch.tensor(old_log_prob), torch.tensor(adv), 0.2,
                                 0.0).backward()
        expected = [p.grad.clone() for p in net.parameters()]
        net.zero_grad()
        delta_mu, _ = actor_critic.ppo_policy_deltas(out.detach().numpy(), log_std, actions,
                                                     old_log_prob, adv, 0.2, 0.0)
        net(x).backward(torch.tensor(delta_mu))  # what the server does with δ
        for p, g in zip(net.parameters(), expected):
            np.testing.assert_allclose(p.grad.numpy(), g.numpy(), atol=TOLERANCE, rtol=0)

    def test_value_delta_equals_autograd_of_the_value_loss(self):
        rng = np.random.default_rng(2)
        values, returns = rng.normal(0, 3, 128), rng.normal(0, 3, 128)
        v = leaf(values)
        torch_rl.value_loss(v, torch.tensor(returns), 0.5).backward()
        np.testing.assert_allclose(actor_critic.value_deltas(values, returns, 0.5),
                                   v.grad.numpy(), atol=TOLERANCE, rtol=0)

    def test_log_prob_equals_torch_normal(self):
        mu, log_std, actions, _, _ = self.batch(3)
        expected = torch_rl.gaussian_log_prob(torch.tensor(mu), torch.tensor(log_std),
                                              torch.tensor(actions))
        np.testing.assert_allclose(actor_critic.gaussian_log_prob(mu, log_std, actions),
                                   expected.numpy(), atol=TOLERANCE, rtol=0)


class GaeTest(unittest.TestCase):
    def test_hand_computed_three_steps_with_a_truncation(self):
        # One environment; the episode ends after step 1 (truncated, bootstrapped with
        # V(final) = 4), a new one runs steps 2-3 and bootstraps with V = 5 at the end.
        r = np.array([[1.0], [2.0], [3.0]])
        v = np.array([[0.5], [1.0], [2.0]])
        v_next = np.array([[4.0], [2.0], [5.0]])
        ends = np.array([[1.0], [0.0], [0.0]])
        adv, ret = actor_critic.gae(r, v, v_next, np.zeros_like(r), ends, gamma=0.9, lam=0.5)
        d = [1 + 0.9 * 4 - 0.5, 2 + 0.9 * 2 - 1, 3 + 0.9 * 5 - 2]  # 4.1, 2.8, 5.5
        expected = [d[0], d[1] + 0.45 * d[2], d[2]]
        np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-12)
        np.testing.assert_allclose(ret, adv + v, rtol=1e-12)

    def test_termination_drops_the_bootstrap(self):
        adv, _ = actor_critic.gae(np.array([[1.0]]), np.array([[0.5]]), np.array([[9.0]]),
                                  np.array([[1.0]]), np.array([[1.0]]), gamma=0.9, lam=0.95)
        self.assertAlmostEqual(adv[0, 0], 0.5, places=12)


class Td3DeltaTest(unittest.TestCase):
    def test_critic_delta_equals_autograd_of_half_the_squared_error(self):
        rng = np.random.default_rng(4)
        r, q1n, q2n = rng.normal(-3, 1, 256), rng.normal(-20, 5, 256), rng.normal(-20, 5, 256)
        terminated = (rng.random(256) < 0.1).astype(np.float64)
        y = actor_critic.td3_target(r, q1n, q2n, terminated, 0.99)
        np.testing.assert_allclose(y, r + 0.99 * (1 - terminated) * np.minimum(q1n, q2n))
        q = rng.normal(-20, 5, 256)
        q_t = leaf(q)
        torch_rl.td3_critic_loss(q_t, torch.tensor(y)).backward()
        np.testing.assert_allclose(actor_critic.td3_critic_deltas(q, y), q_t.grad.numpy(),
                                   atol=TOLERANCE, rtol=0)

    def test_actor_delta_from_the_critic_input_gradient_equals_autograd_through_the_critic(self):
        torch.manual_seed(1)
        critic = torch_rl.mlp([4, 32, 32, 1], torch.nn.ReLU).double()
        rng = np.random.default_rng(5)
        s = torch.tensor(rng.normal(0, 1, (128, 3)))
        pi = np.tanh(rng.normal(0, 1, (128, 1)))  # actor output in [-1, 1]
        scale = 2.0
        # ∂Q1/∂a per row: the critic's input gradient at the action column with δ = 1 per row
        # (deltaserve's InputGradient).
        sa = torch.cat([s, torch.tensor(pi * scale)], dim=1).requires_grad_(True)
        critic(sa).sum().backward()
        dq_da = sa.grad[:, 3:].numpy()
        pi_t = leaf(pi)
        torch_rl.td3_actor_loss(critic(torch.cat([s, pi_t * scale], dim=1))[:, 0]).backward()
        np.testing.assert_allclose(actor_critic.td3_actor_deltas(dq_da, scale),
                                   pi_t.grad.numpy(), atol=TOLERANCE, rtol=0)

    def test_smoothed_target_action_stays_within_the_clipped_noise_and_the_bounds(self):
        rng = np.random.default_rng(6)
        out = np.tanh(rng.normal(0, 2, (10000, 1)))
        a = actor_critic.td3_smoothed_action(out, rng, 0.2, 0.5, 2.0)
        self.assertLessEqual(np.abs(a).max(), 2.0)
        inside = np.abs(out * 2.0) < 1.0  # far from the bounds only the noise clip acts
        self.assertLessEqual(np.abs(a - out * 2.0)[inside].max(), 1.0 + 1e-12)
        self.assertGreater(np.abs(a - out * 2.0)[inside].max(), 0.9)


class RunningMeanStdTest(unittest.TestCase):
    def test_merged_batches_equal_the_float64_statistics_of_all_rows(self):
        rng = np.random.default_rng(8)
        rows = rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 3.0], (3000, 3))
        stats = actor_critic.RunningMeanStd(3)
        for chunk in np.array_split(rows, 7):
            stats.update(chunk)
        # The prior (mean 0, var 1, count 1e-4) shifts the result by ~1e-7 of 3000 rows.
        np.testing.assert_allclose(stats.mean, rows.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(stats.var, rows.var(axis=0), rtol=1e-6)
        z = stats.normalize(np.array([[1.0, -2.0, 1e9]]))
        self.assertEqual(z[0, 2], 10.0)  # clipped


if __name__ == "__main__":
    unittest.main()
