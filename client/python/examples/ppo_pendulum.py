#!/usr/bin/python3
"""PPO on Pendulum through deltaserve, with asynchronous simulators: the algorithm of
tools/torch_ppo.py, with the server training the networks from the δ the client sends.

    /usr/bin/python3 client/python/examples/ppo_pendulum.py --seed 1 --csv /tmp/ppo_ds_1.csv

Three models on one server (started here from $DELTASERVE_BIN or build/, unless --target names
a running one loaded with the config --print-config prints):
  policy   3 → 64 → 64 → 1 (tanh; the Gaussian's mean μ), input normalisation RUNNING_MEAN_STD
  log_std  1 → 1 (identity), always fed x = 0: its bias is the state-independent log σ
  value    3 → 64 → 64 → 1 (tanh; V), input normalisation RUNNING_MEAN_STD
each Adam (eps 1e-5), gradient norm clipped to 0.5, the learning rate annealed linearly to 0 by
the server's schedule over the optimizer steps --max-steps env steps make, and samples_per_step
= the minibatch, so every SubmitDelta is one optimizer step. Observations are sent raw: the
server normalises them with statistics that belong to each version, and the replicas the
simulators act with apply the same statistics.

--envs simulator threads run without waiting for the learner: each acts on its own Pendulum
with the policy's NumpyReplica (the weights and statistics the server pushes), collects
--rollout steps, asks the server for V of its states (one Forward), computes GAE(λ) with
truncation bootstrapping and its own reward scaler, and hands the segment over. The learner
takes --envs segments (--rollout x --envs rows), recomputes log π_old with the policy as it is
now (one Forward), and runs --epochs passes of --minibatches minibatches: per minibatch μ and
log σ from the replicas (once they hold the version the last step made), the δ of
actor_critic.py, and one SubmitDelta to each model, all three at once. The value model's δ,
c_v·(V − R)/N, is computed by the server: its surrogate is ANCHORED with ỹ = R and δ = 0, MEAN
reduction, so ∂l/∂V = (V − R)/N (c_v only rescales the loss, which Adam does not see once the
clip norm is rescaled too). --forward-learner takes μ, log σ and V from Forward calls instead
(two round trips per minibatch). Meanwhile the simulators go on collecting with the policy as
the server moves it. docs/algorithms.md says how that staleness meets the clipped ratio.

Writes the learning curve to --csv in tools/torch_rl.py's columns and ends with one summary line
like tools/torch_ppo.py's.
"""

import argparse
import math
import queue
import sys
import threading
import time

import numpy as np

import actor_critic
import pendulum_env
import rl_common
from deltaserve_client import NumpyReplica

OBS_DIM, ACT_DIM = pendulum_env.OBS_DIM, pendulum_env.ACTION_DIM
HIDDEN = 64
ZERO = np.zeros((1, 1), np.float32)  # the log_std model's only input


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actor_critic.add_ppo_arguments(p, envs_help="simulator threads",
                                   rollout_help="steps per segment and simulator")
    p.add_argument("--forward-learner", dest="replica_learner", action="store_false",
                   help="learner takes μ, log σ and V from Forward calls (default: μ and log σ "
                        "from the replicas, V's δ from the value model's ANCHORED surrogate)")
    p.add_argument("--no-obs-norm", action="store_true", help="no input normalisation")
    p.add_argument("--max-steps", type=int, default=300000)
    p.add_argument("--target-return", type=float, default=-250.0,
                   help="stop once the average of the last 20 returns reaches it")
    p.add_argument("--csv", default="")
    p.add_argument("--target", default="", help="HOST:PORT of a running server (else start one)")
    p.add_argument("--print-config", action="store_true", help="print the server config, exit")
    p.add_argument("--print-every", type=int, default=10, help="episodes between progress lines")
    return p.parse_args(argv)


def optimizer_steps(args):
    """The optimizer steps --max-steps env steps make: the schedule's horizon."""
    updates = math.ceil(args.max_steps / (args.envs * args.rollout))
    return updates * args.epochs * args.minibatches


def server_config(args):
    minibatch = args.envs * args.rollout // args.minibatches
    optimizer = ("kind: ADAM learning_rate: %g epsilon: 1e-5 clip_norm: %g schedule { kind: LINEAR "
                 "total_steps: %d final_learning_rate: 0 }" % (args.lr, args.max_grad_norm,
                                                               optimizer_steps(args)))
    value_optimizer, value_surrogate = optimizer, ""
    if args.replica_learner:
        # The server computes the value δ: ANCHORED with ỹ = R and δ = 0 gives ∂l/∂V = V − R,
        # MEAN reduction divides by N. That is c_v·(V − R)/N divided by c_v, which Adam does not
        # see (up to its ε) once the clip norm is divided by c_v too.
        value_optimizer = optimizer.replace("clip_norm: %g" % args.max_grad_norm,
                                            "clip_norm: %g" % (args.max_grad_norm / args.vf_coef))
        value_surrogate = "  surrogate { mode: ANCHORED reduction: MEAN }\n"
    norm = "" if args.no_obs_norm else "  input_normalization { kind: RUNNING_MEAN_STD }\n"
    tanh = [(HIDDEN, "tanh"), (HIDDEN, "tanh")]
    return (rl_common.model_config("policy", OBS_DIM, tanh + [(ACT_DIM, "identity")], optimizer,
                                   seed=1, samples_per_step=minibatch, extra=norm)
            + rl_common.model_config("log_std", 1, [(ACT_DIM, "identity")], optimizer, seed=2)
            + rl_common.model_config("value", OBS_DIM, tanh + [(1, "identity")], value_optimizer,
                                     seed=3, samples_per_step=minibatch,
                                     extra=norm + value_surrogate))


class Shared:
    """What the simulators and the learner share: the curve, the step count, the stop flag."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.curve = rl_common.LearningCurve(args.csv, window=20, print_every=args.print_every)
        self.env_steps = 0
        self.stop = threading.Event()
        self.segments = queue.Queue()
        # A simulator starts a segment only with a credit; the learner hands out --envs credits
        # each time it takes a batch, so the segments of one update are collected while the
        # previous update trains (the acting version is at most one update behind π_old).
        self.credits = threading.Semaphore(args.envs)
        self.errors = []


def simulator(index, args, shared, policy, log_std, value):
    """One simulator thread: acts, collects --rollout steps, computes GAE, hands them over."""
    try:
        env = pendulum_env.Pendulum(np.random.default_rng([args.seed, index]))
        rng = np.random.default_rng([args.seed, 1000 + index])
        scaler = actor_critic.RewardScaler(1, args.gamma)
        obs, episode_return = env.observation(), 0.0
        T = args.rollout
        while not shared.stop.is_set():
            if not shared.credits.acquire(timeout=0.1):
                continue
            raw_obs = np.zeros((T, OBS_DIM), np.float32)
            actions = np.zeros((T, ACT_DIM), np.float32)
            rewards, ends, versions = np.zeros((T, 1)), np.zeros((T, 1)), np.zeros(T, np.int64)
            final = []  # (t, raw final observation) of each episode the segment ends
            for t in range(T):
                mu, versions[t] = policy.forward(obs[None])
                sigma = np.exp(log_std.forward(ZERO)[0][0])
                a = (mu[0] + sigma * rng.standard_normal(ACT_DIM)).astype(np.float32)
                raw_obs[t], actions[t] = obs, a
                next_obs, reward, truncated = env.step(a)
                rewards[t, 0], ends[t, 0] = reward, truncated
                episode_return += reward
                with shared.lock:
                    shared.env_steps += 1
                    if truncated:
                        shared.curve.add(shared.env_steps, episode_return)
                if truncated:
                    final.append((t, next_obs))
                    episode_return = 0.0
                    next_obs = env.reset()
                obs = next_obs
                if not args.no_reward_scaling:
                    rewards[t] = scaler(rewards[t], ends[t])
            # V of every state, of the state after the segment and of each final observation,
            # at one version, in one Forward.
            states = np.concatenate([raw_obs, obs[None]] + [f[1][None] for f in final])
            v, _ = value.forward(states)
            values = v[:T, :1].astype(np.float64)
            next_values = v[1:T + 1, :1].astype(np.float64)
            for k, (t, _) in enumerate(final):
                next_values[t, 0] = v[T + 1 + k, 0]
            advantages, returns = actor_critic.gae(rewards, values, next_values, np.zeros((T, 1)),
                                                   ends, args.gamma, args.lam)
            shared.segments.put((raw_obs, actions, advantages[:, 0], returns[:, 0], versions))
    except Exception as e:  # noqa: BLE001 -- reported by the learner, which stops the run
        shared.errors.append("simulator %d: %r" % (index, e))
        shared.stop.set()


def replica_forward(replica, version, x):
    """(outputs, version) from `replica` once it holds `version` (None: whatever it holds)."""
    if version is not None and not replica.wait_for_version(version, 60.0):
        raise RuntimeError("replica did not reach version %d" % version)
    return replica.forward(x)


def learn(args, shared, sessions, replicas):
    """The learner loop; returns (reached, staleness list) where reached is (env_steps, wall,
    cpu) when the target was reached, else None."""
    E, T = args.envs, args.rollout
    size = E * T // args.minibatches
    rng = np.random.default_rng(args.seed)
    staleness = []
    versions = {"policy": None, "log_std": None, "value": None}  # as the last step left them
    while not shared.stop.is_set():
        segments = []
        while len(segments) < E and not shared.stop.is_set():
            try:
                segments.append(shared.segments.get(timeout=0.1))
            except queue.Empty:
                pass
        if len(segments) < E:
            break
        for _ in range(E):
            shared.credits.release()
        b_obs = np.concatenate([s[0] for s in segments])
        b_actions = np.concatenate([s[1] for s in segments])
        b_adv = np.concatenate([s[2] for s in segments])
        b_returns = np.concatenate([s[3] for s in segments])
        acted = np.concatenate([s[4] for s in segments])
        # π_old: the policy as it is when this update starts (see docs/algorithms.md).
        mu_old, version_old = sessions["policy"].forward(b_obs)
        log_std_out, log_std_version = sessions["log_std"].forward(ZERO)
        log_std_old = log_std_out[0]
        b_log_prob = actor_critic.gaussian_log_prob(mu_old, log_std_old, b_actions)
        staleness.append(float(np.mean(version_old - acted)))
        versions.update(policy=version_old, log_std=log_std_version)
        for _ in range(args.epochs):
            order = rng.permutation(E * T)
            for start in range(0, E * T, size):
                idx = order[start:start + size]
                o = b_obs[idx]
                if args.replica_learner:
                    # μ and log σ from the replicas, once they hold the version the last step
                    # made; V is not needed: the value model's ANCHORED surrogate with ỹ = R
                    # gives the server's (V − R)/N itself.
                    (mu, pv), (ls, lv) = (
                        replica_forward(replicas[m], versions[m], x)
                        for m, x in (("policy", o), ("log_std", ZERO)))
                    v = vv = None
                else:
                    pf = sessions["policy"].forward_async(o)
                    vf = sessions["value"].forward_async(o)
                    lf = sessions["log_std"].forward_async(ZERO)
                    (mu, pv), (v, vv), (ls, lv) = pf.result(60), vf.result(60), lf.result(60)
                adv = actor_critic.normalize_advantages(b_adv[idx])
                delta_mu, grad_log_std = actor_critic.ppo_policy_deltas(
                    mu, ls[0], b_actions[idx], b_log_prob[idx], adv, args.clip, args.ent_coef)
                returns = b_returns[idx][:, None].astype(np.float32)
                if v is None:
                    value = sessions["value"].submit_delta_async(
                        o, np.zeros_like(returns), versions["value"] or 0, outputs=returns)
                else:
                    delta_v = actor_critic.value_deltas(v[:, 0], b_returns[idx], args.vf_coef)
                    value = sessions["value"].submit_delta_async(o, delta_v[:, None], vv)
                futures = {"policy": sessions["policy"].submit_delta_async(o, delta_mu, pv),
                           "value": value,
                           "log_std": sessions["log_std"].submit_delta_async(
                               ZERO, grad_log_std[None], lv)}
                for m, f in futures.items():
                    versions[m] = int(f.result(60).version)
        with shared.lock:
            if len(shared.curve.returns) >= 20 and shared.curve.average() >= args.target_return:
                shared.stop.set()
                return (shared.env_steps, shared.curve.elapsed(),
                        shared.curve.cpu_seconds()), staleness
            if shared.env_steps >= args.max_steps:
                shared.stop.set()
    return None, staleness


def initialise(server, args):
    """Imports CleanRL's initialisation (orthogonal; the policy's last layer at 0.01)."""
    rng = np.random.default_rng([args.seed, 7])
    units = [HIDDEN, HIDDEN]
    rl_common.import_parameters(server.address, "policy",
                                rl_common.orthogonal_init(rng, OBS_DIM, units + [ACT_DIM], 0.01))
    rl_common.import_parameters(server.address, "value",
                                rl_common.orthogonal_init(rng, OBS_DIM, units + [1], 1.0))
    rl_common.import_parameters(server.address, "log_std", np.zeros(2 * ACT_DIM, np.float32))


def run(args):
    """Trains; returns (curve, reached, env_steps, staleness per update)."""
    with rl_common.Server(server_config(args), args.target) as server:
        initialise(server, args)
        clients = {m: server.client(m) for m in ("policy", "log_std", "value")}
        replicas = {m: NumpyReplica(clients[m]).start() for m in ("policy", "log_std")}
        sessions = {m: c.session() for m, c in clients.items()}
        shared = Shared(args)
        threads = [threading.Thread(target=simulator, name="simulator-%d" % i, daemon=True,
                                    args=(i, args, shared, replicas["policy"],
                                          replicas["log_std"], clients["value"]))
                   for i in range(args.envs)]
        try:
            for t in threads:
                t.start()
            reached, staleness = learn(args, shared, sessions, replicas)
        finally:
            shared.stop.set()
            for t in threads:
                t.join(60)
            for s in sessions.values():
                s.close()
            for r in replicas.values():
                r.stop()
            for c in clients.values():
                c.close()
            shared.curve.close()
        if shared.errors:
            raise RuntimeError("; ".join(shared.errors))
        return shared.curve, reached, shared.env_steps, staleness


def main():
    args = parse_args()
    if args.print_config:
        print(server_config(args), end="")
        return
    # The simulator threads and the learner share the GIL. With the default 5 ms switch
    # interval, every answer the learner waits for (6 per minibatch) could wait up to 5 ms
    # more for a busy simulator to yield; 0.5 ms halved the wall time to -250 (seed 1).
    sys.setswitchinterval(5e-4)
    start = time.monotonic()
    curve, reached, env_steps, staleness = run(args)
    lag = "acting version behind π_old by %.1f optimizer steps on average" % (
        float(np.mean(staleness)) if staleness else 0.0)
    if reached:
        print("PPO (deltaserve) seed %d: average of the last 20 returns %.1f >= %.0f after %d env "
              "steps, %.1f s wall, %.1f s CPU (%s)" % (args.seed, curve.average(),
                                                       args.target_return, *reached, lag),
              flush=True)
    else:
        print("PPO (deltaserve) seed %d: target %.0f not reached; average of the last 20 returns "
              "%.1f after %d env steps, %.1f s wall, %.1f s CPU (%s)" % (
                  args.seed, args.target_return, curve.average(), env_steps,
                  time.monotonic() - start, curve.cpu_seconds(), lag), flush=True)


if __name__ == "__main__":
    main()
