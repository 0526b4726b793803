"""What tools/torch_ppo.py and tools/torch_td3.py share: the environment and δ math from
client/python/examples (imported, not copied), the losses whose gradients
client/python/examples/actor_critic.py writes out by hand, MLPs, and the learning-curve log.
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client",
                                "python", "examples"))
import actor_critic  # noqa: E402,F401  (re-exported for the scripts)
import pendulum_env  # noqa: E402,F401
from learning_curve import LearningCurve  # noqa: E402,F401  (shared with the deltaserve examples)


def mlp(sizes, hidden_activation, output_activation=None):
    """Linear layers sizes[0] → ... → sizes[-1], hidden_activation after each hidden layer."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(hidden_activation())
    if output_activation is not None:
        layers.append(output_activation())
    return torch.nn.Sequential(*layers)


def gaussian_log_prob(mu, log_std, actions):
    return torch.distributions.Normal(mu, log_std.exp()).log_prob(actions).sum(dim=1)


def ppo_policy_loss(mu, log_std, actions, old_log_prob, advantages, clip, ent_coef):
    """−mean min(r Â, clip(r, 1 ± ε) Â) − c_ent · mean H; Â already normalised."""
    ratio = (gaussian_log_prob(mu, log_std, actions) - old_log_prob).exp()
    surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    entropy = torch.distributions.Normal(mu, log_std.exp()).entropy().sum(dim=1)
    return surrogate.mean() - ent_coef * entropy.mean()


def value_loss(values, returns, vf_coef):
    return vf_coef * 0.5 * ((values - returns) ** 2).mean()


def td3_critic_loss(q, target):
    return 0.5 * ((q - target) ** 2).mean()


def td3_actor_loss(q1):
    return -q1.mean()


def seed_everything(seed, threads):
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    return np.random.default_rng(seed)
