#!/usr/bin/python3
"""TD3 on Pendulum in PyTorch, in one process: the program a user would write instead of
deltaserve (CleanRL's td3_continuous_action.py, on the numpy Pendulum of
client/python/examples/pendulum_env.py).

    /usr/bin/python3 tools/torch_td3.py --seed 1 --steps 20000 --csv /tmp/td3_1.csv

Twin critics Q(s, a) and an actor tanh(π(s))·2, ReLU hidden layers; target networks Polyak-
averaged (tau); target policy smoothing (noise 0.2 clipped 0.5, in units of the action scale);
actor and targets updated every --policy-delay critic steps; exploration noise 0.1·2; uniform
random actions for the first --learning-starts steps. The losses and the δ each network would
receive through deltaserve are in client/python/examples/actor_critic.py (module docstring).
Prints the learning curve and, at the end, one summary line (average of the last 10 returns,
env steps, wall seconds).
"""

import argparse

import numpy as np
import torch

from torch_rl import (LearningCurve, actor_critic, mlp, pendulum_env, seed_everything,
                      td3_actor_loss, td3_critic_loss)

ACTION_SCALE = pendulum_env.MAX_TORQUE


def polyak(target, source, tau):
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - tau).add_(s, alpha=tau)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actor_critic.add_td3_arguments(p, hidden=256)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    rng = seed_everything(args.seed, args.threads)
    obs_dim, act_dim, h = pendulum_env.OBS_DIM, pendulum_env.ACTION_DIM, args.hidden
    actor = mlp([obs_dim, h, h, act_dim], torch.nn.ReLU, torch.nn.Tanh)
    critics = [mlp([obs_dim + act_dim, h, h, 1], torch.nn.ReLU) for _ in range(2)]
    actor_target = mlp([obs_dim, h, h, act_dim], torch.nn.ReLU, torch.nn.Tanh)
    critic_targets = [mlp([obs_dim + act_dim, h, h, 1], torch.nn.ReLU) for _ in range(2)]
    actor_target.load_state_dict(actor.state_dict())
    for t, c in zip(critic_targets, critics):
        t.load_state_dict(c.state_dict())
    actor_opt = torch.optim.Adam(actor.parameters(), lr=args.lr)
    critic_opt = torch.optim.Adam([q for c in critics for q in c.parameters()], lr=args.lr)

    env = pendulum_env.Pendulum(rng)
    buffer = actor_critic.ReplayBuffer(args.steps, obs_dim, act_dim)
    curve = LearningCurve(args.csv, window=10)
    obs, episode_return = env.reset(), 0.0
    for step in range(args.steps):
        if step < args.learning_starts:
            action = rng.uniform(-ACTION_SCALE, ACTION_SCALE, act_dim)
        else:
            with torch.no_grad():
                mean = actor(torch.from_numpy(obs)[None])[0].numpy() * ACTION_SCALE
            noise = rng.normal(0.0, ACTION_SCALE * args.exploration_noise, act_dim)
            action = np.clip(mean + noise, -ACTION_SCALE, ACTION_SCALE)
        next_obs, reward, truncated = env.step(action)
        # Pendulum never terminates: truncation keeps the bootstrap (terminated = 0).
        buffer.add(obs, action, reward, next_obs, 0.0)
        obs, episode_return = next_obs, episode_return + reward
        if truncated:
            curve.add(step + 1, episode_return)
            obs, episode_return = env.reset(), 0.0
        if step < args.learning_starts:
            continue

        s, a, r, s2, term = buffer.sample(rng, args.batch)
        s, a, s2 = torch.from_numpy(s), torch.from_numpy(a), torch.from_numpy(s2)
        with torch.no_grad():
            a2 = actor_critic.td3_smoothed_action(actor_target(s2).numpy(), rng, args.target_noise,
                                                  args.target_noise_clip, ACTION_SCALE)
            sa2 = torch.cat([s2, torch.from_numpy(a2.astype(np.float32))], dim=1)
            q_next = [t(sa2)[:, 0].numpy() for t in critic_targets]
        y = torch.from_numpy(
            actor_critic.td3_target(r, q_next[0], q_next[1], term, args.gamma).astype(np.float32))
        sa = torch.cat([s, a], dim=1)
        loss = sum(td3_critic_loss(c(sa)[:, 0], y) for c in critics)
        critic_opt.zero_grad()
        loss.backward()
        critic_opt.step()

        if step % args.policy_delay == 0:
            q1 = critics[0](torch.cat([s, actor(s) * ACTION_SCALE], dim=1))[:, 0]
            actor_opt.zero_grad()
            td3_actor_loss(q1).backward()
            actor_opt.step()
            polyak(actor_target, actor, args.tau)
            for t, c in zip(critic_targets, critics):
                polyak(t, c, args.tau)
    curve.close()
    print("TD3 seed %d hidden %d: average of the last 10 returns %.1f after %d env steps, "
          "%.1f s wall, %.1f s CPU" % (args.seed, h, curve.average(), args.steps, curve.elapsed(),
                                       curve.cpu_seconds()), flush=True)


if __name__ == "__main__":
    main()
