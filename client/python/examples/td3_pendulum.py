#!/usr/bin/python3
"""TD3 on Pendulum through deltaserve: the same algorithm as tools/torch_td3.py, with the
server training the networks from the δ this client sends.

    /usr/bin/python3 client/python/examples/td3_pendulum.py --seed 1 --csv /tmp/td3_ds_1.csv

Three models on one server (started here from $DELTASERVE_BIN or build/, unless --target names
a running one with the config --print-config prints): the actor π (3 → h → h → 1, ReLU, tanh
output; the action is 2·π(s)) and the twin critics q1, q2 (4 → h → h → 1, ReLU). Adam 3e-4 on
each, samples_per_step = the minibatch, so every SubmitDelta is one optimizer step.

Per env step, after the 1,000 random steps:
  - act with the actor's NumpyReplica (weights the server pushes; no round trip);
  - y = r + γ·min(Q1', Q2')(s', ã) with the target networks, which this client keeps as Polyak
    averages of the weights the server pushed (WatchParameters), computed in numpy;
  - the critics: SubmitDelta to q1 and q2 at once (two Sessions), δ_k = (Q_k(s, a) − y)/N with
    Q_k from the critic's replica at the version it submits against;
  - every --policy-delay steps: InputGradient on q1 at (s, 2·π(s)) with δ = 1 per row gives
    ∂Q1/∂a; the actor gets δ = −2·∂Q1/∂a/N by SubmitDelta; then the targets move by τ.
The δ math is client/python/examples/actor_critic.py (tested against torch autograd).
Prints the learning curve, writes it to --csv in tools/torch_rl.py's columns, and ends with one
summary line like tools/torch_td3.py's.
"""

import argparse
import threading

import numpy as np

import actor_critic
import pendulum_env
import rl_common
from deltaserve_client import NumpyReplica

ACTION_SCALE = pendulum_env.MAX_TORQUE
OBS_DIM, ACT_DIM = pendulum_env.OBS_DIM, pendulum_env.ACTION_DIM


def layers(args):
    h = args.hidden
    actor = [(h, "relu"), (h, "relu"), (ACT_DIM, "tanh")]
    critic = [(h, "relu"), (h, "relu"), (1, "identity")]
    return actor, critic


def server_config(args):
    actor, critic = layers(args)
    optimizer = "kind: ADAM learning_rate: %g" % args.lr
    return "".join(rl_common.model_config(name, dim, spec, optimizer, seed=i + 1,
                                          samples_per_step=args.batch)
                   for i, (name, dim, spec) in enumerate(
                       [("actor", OBS_DIM, actor), ("q1", OBS_DIM + ACT_DIM, critic),
                        ("q2", OBS_DIM + ACT_DIM, critic)]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actor_critic.add_td3_arguments(p, hidden=64)
    p.add_argument("--target", default="", help="HOST:PORT of a running server (else start one)")
    p.add_argument("--print-config", action="store_true", help="print the server config, exit")
    p.add_argument("--replica-input-gradient", action="store_true",
                   help="debugging aid: ∂Q1/∂a in numpy from q1's replica, not InputGradient")
    p.add_argument("--print-every", type=int, default=10, help="episodes between progress lines")
    return p.parse_args(argv)


class Learner:
    """The models' replicas, sessions and target networks on one server."""

    def __init__(self, server, args, init_rng):
        self.args = args
        actor_layers, critic_layers = layers(args)
        self.clients = {m: server.client(m) for m in ("actor", "q1", "q2")}
        # Initial weights drawn as torch.nn.Linear's default (the reference's), imported.
        units = {"actor": [u for u, _ in actor_layers], "q1": [u for u, _ in critic_layers],
                 "q2": [u for u, _ in critic_layers]}
        dims = {"actor": OBS_DIM, "q1": OBS_DIM + ACT_DIM, "q2": OBS_DIM + ACT_DIM}
        self.version = {}
        self.targets = {}
        for m in ("actor", "q1", "q2"):
            params = rl_common.torch_default_init(init_rng, dims[m], units[m])
            self.version[m] = rl_common.import_parameters(server.address, m, params)
            self.targets[m] = params.copy()
        self.replicas = {m: NumpyReplica(c).start() for m, c in self.clients.items()}
        self.mlp = self.replicas["q1"].mlp  # q1 and q2 share the architecture
        self.actor_mlp = self.replicas["actor"].mlp
        self.sessions = {m: c.session() for m, c in self.clients.items()}

    def current(self, model):
        """(parameters, version) of `model` at its latest submitted version (waits for the
        replica to hold it; the push follows the step within milliseconds)."""
        replica = self.replicas[model]
        if not replica.wait_for_version(self.version[model], 60.0):
            raise RuntimeError("replica of %s did not reach version %d" % (model,
                                                                           self.version[model]))
        return replica.parameters()

    def act(self, obs):
        params, _ = self.current("actor")
        return self.actor_mlp.forward(params, obs[None])[0]

    def critic_step(self, s, a, y):
        sa = np.concatenate([s, a], axis=1)
        futures = []
        for m in ("q1", "q2"):
            params, version = self.current(m)
            q = self.mlp.forward(params, sa)[:, 0]
            delta = actor_critic.td3_critic_deltas(q, y)[:, None]
            futures.append((m, self.sessions[m].submit_delta_async(sa, delta, version)))
        for m, f in futures:
            self.version[m] = int(f.result(60.0).version)

    def actor_step(self, s):
        params, version = self.current("actor")
        a = self.actor_mlp.forward(params, s) * ACTION_SCALE
        sa = np.concatenate([s, a], axis=1)
        ones = np.ones((s.shape[0], 1), np.float32)
        if self.args.replica_input_gradient:  # debugging aid: the same product in numpy
            q1_params, _ = self.current("q1")
            dq_dsa = rl_common.numpy_input_gradient(q1_params, sa, ones, OBS_DIM + ACT_DIM,
                                                    layers(self.args)[1])
        else:
            dq_dsa, _, _ = self.sessions["q1"].input_gradient(sa, ones, timeout=60.0)
        delta = actor_critic.td3_actor_deltas(dq_dsa[:, OBS_DIM:], ACTION_SCALE)
        response = self.sessions["actor"].submit_delta(s, delta, version, timeout=60.0)
        self.version["actor"] = int(response.version)

    def update_targets(self):
        for m in ("actor", "q1", "q2"):
            params, _ = self.current(m)
            rl_common.polyak(self.targets[m], params, self.args.tau)

    def target_values(self, rng, r, s2, term):
        a2 = actor_critic.td3_smoothed_action(
            self.actor_mlp.forward(self.targets["actor"], s2), rng, self.args.target_noise,
            self.args.target_noise_clip, ACTION_SCALE)
        sa2 = np.concatenate([s2, a2.astype(np.float32)], axis=1)
        q1 = self.mlp.forward(self.targets["q1"], sa2)[:, 0]
        q2 = self.mlp.forward(self.targets["q2"], sa2)[:, 0]
        return actor_critic.td3_target(r, q1, q2, term, self.args.gamma).astype(np.float32)

    def close(self):
        for s in self.sessions.values():
            s.close()
        for r in self.replicas.values():
            r.stop()
        for c in self.clients.values():
            c.close()


def run(args, stop=None):
    """Trains; returns the LearningCurve. `stop` (a threading.Event) ends it early."""
    stop = stop or threading.Event()
    rng = np.random.default_rng(args.seed)
    with rl_common.Server(server_config(args), args.target) as server:
        learner = Learner(server, args, np.random.default_rng([args.seed, 7]))
        try:
            env = pendulum_env.Pendulum(rng)
            buffer = actor_critic.ReplayBuffer(args.steps, OBS_DIM, ACT_DIM)
            curve = rl_common.LearningCurve(args.csv, window=10, print_every=args.print_every)
            obs, episode_return = env.reset(), 0.0
            for step in range(args.steps):
                if stop.is_set():
                    break
                if step < args.learning_starts:
                    action = rng.uniform(-ACTION_SCALE, ACTION_SCALE, ACT_DIM)
                else:
                    mean = learner.act(obs) * ACTION_SCALE
                    noise = rng.normal(0.0, ACTION_SCALE * args.exploration_noise, ACT_DIM)
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
                learner.critic_step(s, a, learner.target_values(rng, r, s2, term))
                if step % args.policy_delay == 0:
                    learner.actor_step(s)
                    learner.update_targets()
            curve.close()
            return curve
        finally:
            learner.close()


def main():
    args = parse_args()
    if args.print_config:
        print(server_config(args), end="")
        return
    curve = run(args)
    print("TD3 (deltaserve) seed %d hidden %d: average of the last 10 returns %.1f after %d env "
          "steps, %.1f s wall, %.1f s CPU" % (args.seed, args.hidden, curve.average(),
                                              args.steps, curve.elapsed(), curve.cpu_seconds()),
          flush=True)


if __name__ == "__main__":
    main()
