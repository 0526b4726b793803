#!/usr/bin/python3
"""PPO on Pendulum in PyTorch, in one process: the program a user would write instead of
deltaserve (CleanRL's ppo_continuous_action.py, on the numpy Pendulum of
client/python/examples/pendulum_env.py).

    /usr/bin/python3 tools/torch_ppo.py --seed 1 --csv /tmp/ppo_1.csv

--envs Pendulums step in lockstep for --rollout steps each; then --epochs passes of
--minibatches minibatches over the batch: clipped ratio, GAE(λ) that bootstraps at truncation,
advantages normalised per minibatch, value loss ½(V − R)² without clipping, entropy bonus.
Gaussian policy: a tanh 64x64 network for the mean, a state-independent log-std parameter; a
separate tanh 64x64 value network; Adam (eps 1e-5) with the learning rate annealed linearly to 0
over --max-steps, gradients clipped to --max-grad-norm per network. Observations are normalised
with running statistics merged once per rollout (frozen while the rollout is collected and
learned from); rewards are divided by the running std of the discounted return
(actor_critic.RewardScaler). Stops when the average of the last 20 returns reaches --target or
after --max-steps env steps. The δ each network would receive through deltaserve are in
client/python/examples/actor_critic.py.
"""

import argparse

import numpy as np
import torch

from torch_rl import (LearningCurve, actor_critic, mlp, pendulum_env, ppo_policy_loss,
                      seed_everything, value_loss)


def orthogonal_init(net, output_std):
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for i, layer in enumerate(linears):
        torch.nn.init.orthogonal_(layer.weight, output_std if i == len(linears) - 1 else 2 ** 0.5)
        torch.nn.init.zeros_(layer.bias)
    return net


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actor_critic.add_ppo_arguments(p, envs_help=None, rollout_help="steps per environment per update")
    p.add_argument("--max-steps", type=int, default=300000)
    p.add_argument("--target", type=float, default=-250.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", default="")
    args = p.parse_args()

    rng = seed_everything(args.seed, args.threads)
    obs_dim, act_dim = pendulum_env.OBS_DIM, pendulum_env.ACTION_DIM
    actor = orthogonal_init(mlp([obs_dim, 64, 64, act_dim], torch.nn.Tanh), 0.01)
    log_std = torch.nn.Parameter(torch.zeros(act_dim))
    critic = orthogonal_init(mlp([obs_dim, 64, 64, 1], torch.nn.Tanh), 1.0)
    actor_params = list(actor.parameters()) + [log_std]
    actor_opt = torch.optim.Adam(actor_params, lr=args.lr, eps=1e-5)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=args.lr, eps=1e-5)

    E, T = args.envs, args.rollout
    envs = [pendulum_env.Pendulum(np.random.default_rng([args.seed, i])) for i in range(E)]
    obs_stats = actor_critic.RunningMeanStd(obs_dim)
    reward_scaler = actor_critic.RewardScaler(E, args.gamma)
    curve = LearningCurve(args.csv, window=20)
    obs = np.stack([env.observation() for env in envs])
    episode_returns = np.zeros(E)
    env_steps, reached = 0, None
    while env_steps < args.max_steps and reached is None:
        lr = args.lr * (1.0 - env_steps / args.max_steps)
        for opt in (actor_opt, critic_opt):
            opt.param_groups[0]["lr"] = lr
        raw_obs = np.zeros((T, E, obs_dim), np.float32)
        actions = np.zeros((T, E, act_dim), np.float32)
        log_probs, values, next_values, rewards, ends = (np.zeros((T, E)) for _ in range(5))
        final = []  # (t, env, raw final observation) of every episode the rollout ends
        for t in range(T):
            with torch.no_grad():
                x = torch.from_numpy(obs_stats.normalize(obs))
                mu = actor(x).numpy()
                values[t] = critic(x)[:, 0].numpy()
            std = np.exp(log_std.detach().numpy())
            a = (mu + std * rng.standard_normal(mu.shape)).astype(np.float32)
            raw_obs[t], actions[t] = obs, a
            log_probs[t] = actor_critic.gaussian_log_prob(mu, log_std.detach().numpy(), a)
            for i, env in enumerate(envs):
                next_obs, reward, truncated = env.step(a[i])
                rewards[t, i], ends[t, i] = reward, truncated
                episode_returns[i] += reward
                env_steps += 1
                if truncated:
                    final.append((t, i, next_obs))
                    curve.add(env_steps, episode_returns[i])
                    episode_returns[i] = 0.0
                    next_obs = env.reset()
                obs[i] = next_obs
            if not args.no_reward_scaling:
                rewards[t] = reward_scaler(rewards[t], ends[t])
        with torch.no_grad():
            next_values[:-1] = values[1:]
            next_values[-1] = critic(torch.from_numpy(obs_stats.normalize(obs)))[:, 0].numpy()
            if final:
                v = critic(torch.from_numpy(obs_stats.normalize(np.stack([f[2] for f in final]))))
                for (t, i, _), value in zip(final, v[:, 0].numpy()):
                    next_values[t, i] = value
        advantages, returns = actor_critic.gae(rewards, values, next_values, np.zeros((T, E)),
                                               ends, args.gamma, args.lam)

        b_obs = torch.from_numpy(obs_stats.normalize(raw_obs.reshape(T * E, obs_dim)))
        b_actions = torch.from_numpy(actions.reshape(T * E, act_dim))
        b_log_probs = torch.from_numpy(log_probs.reshape(-1).astype(np.float32))
        b_advantages = advantages.reshape(-1)
        b_returns = torch.from_numpy(returns.reshape(-1).astype(np.float32))
        size = T * E // args.minibatches
        for _ in range(args.epochs):
            order = rng.permutation(T * E)
            for start in range(0, T * E, size):
                idx = order[start:start + size]
                adv = torch.from_numpy(
                    actor_critic.normalize_advantages(b_advantages[idx]).astype(np.float32))
                loss = ppo_policy_loss(actor(b_obs[idx]), log_std, b_actions[idx],
                                       b_log_probs[idx], adv, args.clip, args.ent_coef)
                actor_opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(actor_params, args.max_grad_norm)
                actor_opt.step()
                loss = value_loss(critic(b_obs[idx])[:, 0], b_returns[idx], args.vf_coef)
                critic_opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
                critic_opt.step()
        obs_stats.update(raw_obs.reshape(T * E, obs_dim))
        if len(curve.returns) >= 20 and curve.average() >= args.target:
            reached = (env_steps, curve.elapsed(), curve.cpu_seconds())
    curve.close()
    if reached:
        print("PPO seed %d: average of the last 20 returns %.1f >= %.0f after %d env steps, "
              "%.1f s wall, %.1f s CPU" % (args.seed, curve.average(), args.target, *reached),
              flush=True)
    else:
        print("PPO seed %d: target %.0f not reached; average of the last 20 returns %.1f after "
              "%d env steps, %.1f s wall, %.1f s CPU" % (
                  args.seed, args.target, curve.average(), env_steps, curve.elapsed(),
                  curve.cpu_seconds()), flush=True)


if __name__ == "__main__":
    main()
