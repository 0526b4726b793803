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
import collections
import threading
from concurrent.futures import Future

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


# The critics' surrogate: ANCHORED with ỹ = the TD target y and δ = 0 gives
# ∂l/∂Q = Q(s, a) − y per row, and MEAN divides by the N rows: the gradient of
# ½·mean (Q − y)², formed by the server at its current critic (docs/algorithms.md).
CRITIC_SURROGATE = "  surrogate { mode: ANCHORED reduction: MEAN }\n"


def server_config(args):
    actor, critic = layers(args)
    optimizer = "kind: ADAM learning_rate: %g" % args.lr
    return "".join(rl_common.model_config(name, dim, spec, optimizer, seed=i + 1,
                                          samples_per_step=args.batch, extra=extra)
                   for i, (name, dim, spec, extra) in enumerate(
                       [("actor", OBS_DIM, actor, ""),
                        ("q1", OBS_DIM + ACT_DIM, critic, CRITIC_SURROGATE),
                        ("q2", OBS_DIM + ACT_DIM, critic, CRITIC_SURROGATE)]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actor_critic.add_td3_arguments(p, hidden=64)
    p.add_argument("--target", default="", help="HOST:PORT of a running server (else start one)")
    p.add_argument("--print-config", action="store_true", help="print the server config, exit")
    p.add_argument("--replica-input-gradient", action="store_true",
                   help="debugging aid: ∂Q1/∂a in numpy from q1's replica, not InputGradient")
    p.add_argument("--in-flight", type=int, default=2,
                   help="steps of critic (and actor) submissions left unanswered at most")
    p.add_argument("--print-every", type=int, default=10, help="episodes between progress lines")
    return p.parse_args(argv)


class Learner:
    """The models' replicas, sessions and target networks on one server, and the training
    calls in flight (at most --in-flight steps of each kind unanswered)."""

    def __init__(self, server, args, init_rng):
        self.args = args
        actor_layers, critic_layers = layers(args)
        self.clients = {m: server.client(m) for m in ("actor", "q1", "q2")}
        # Initial weights drawn as torch.nn.Linear's default (the reference's), imported.
        units = {"actor": [u for u, _ in actor_layers], "q1": [u for u, _ in critic_layers],
                 "q2": [u for u, _ in critic_layers]}
        dims = {"actor": OBS_DIM, "q1": OBS_DIM + ACT_DIM, "q2": OBS_DIM + ACT_DIM}
        # The newest version each model answered with: what a submission names as the
        # version it was formed against (never ahead of the server's).
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
        self.zeros = np.zeros((args.batch, 1), np.float32)  # the critics' δ (ANCHORED)
        self.ones = np.ones((args.batch, 1), np.float32)  # InputGradient's δ: ∂Q1/∂(s, a)
        self.critic_calls = collections.deque()  # (model, future), oldest first
        self.actor_calls = collections.deque()  # futures of the actor's SubmitDelta chains

    def newest(self, model):
        """(parameters, version) the server last pushed for `model` (no waiting)."""
        return self.replicas[model].parameters()

    def act(self, obs):
        return self.actor_mlp.forward(self.newest("actor")[0], obs[None])[0]

    def critic_step(self, s, a, y):
        """SubmitDelta to q1 and q2 without waiting for the answers: ỹ = y, δ = 0 under the
        critics' ANCHORED/MEAN surrogate, so the server's ∂l/∂Q = (Q(s, a) − y)/N with Q at
        its current parameters (the critic loss ½·mean (Q − y)²'s gradient)."""
        sa = np.concatenate([s, a], axis=1)
        y = y[:, None]
        for m in ("q1", "q2"):
            self.critic_calls.append(
                (m, self.sessions[m].submit_delta_async(sa, self.zeros, self.version[m],
                                                        outputs=y, request_id="")))
        while len(self.critic_calls) > 2 * self.args.in_flight:
            self._settle_critic()

    def _settle_critic(self):
        m, future = self.critic_calls.popleft()
        self.version[m] = max(self.version[m], int(future.result(60.0).version))

    def actor_step(self, s):
        """InputGradient on q1 at (s, 2·π(s)) with π the actor's newest pushed weights; when it
        answers (on the session's reader thread), SubmitDelta to the actor with
        δ = −2·∂Q1/∂a/N (CURRENT: applied at the server's current actor). Does not wait."""
        params, version = self.newest("actor")
        a = self.actor_mlp.forward(params, s) * ACTION_SCALE
        sa = np.concatenate([s, a], axis=1)
        done = Future()
        if self.args.replica_input_gradient:  # debugging aid: the same product in numpy
            dq_dsa = rl_common.numpy_input_gradient(self.newest("q1")[0], sa, self.ones,
                                                    OBS_DIM + ACT_DIM, layers(self.args)[1])
            self._submit_actor(s, dq_dsa, version, done)
        else:
            gradient = self.sessions["q1"].input_gradient_async(sa, self.ones)
            gradient.add_done_callback(
                lambda f: self._submit_actor(s, f.result()[0], version, done)
                if f.exception() is None else done.set_exception(f.exception()))
        self.actor_calls.append(done)
        while len(self.actor_calls) > self.args.in_flight:
            self.actor_calls.popleft().result(60.0)

    def _submit_actor(self, s, dq_dsa, version, done):
        try:
            delta = actor_critic.td3_actor_deltas(dq_dsa[:, OBS_DIM:], ACTION_SCALE)
            submit = self.sessions["actor"].submit_delta_async(s, delta, version, request_id="")
        except Exception as e:  # noqa: BLE001 (handed to whoever waits on `done`)
            done.set_exception(e)
            return
        submit.add_done_callback(
            lambda f: done.set_result(f.result()) if f.exception() is None
            else done.set_exception(f.exception()))

    def update_targets(self):
        """θ' ← (1 − τ)·θ' + τ·θ with θ each model's newest pushed weights."""
        for m in ("actor", "q1", "q2"):
            rl_common.polyak(self.targets[m], self.newest(m)[0], self.args.tau)

    def target_values(self, rng, r, s2, term):
        a2 = actor_critic.td3_smoothed_action(
            self.actor_mlp.forward(self.targets["actor"], s2), rng, self.args.target_noise,
            self.args.target_noise_clip, ACTION_SCALE)
        sa2 = np.concatenate([s2, a2.astype(np.float32)], axis=1)
        q1 = self.mlp.forward(self.targets["q1"], sa2)[:, 0]
        q2 = self.mlp.forward(self.targets["q2"], sa2)[:, 0]
        return actor_critic.td3_target(r, q1, q2, term, self.args.gamma).astype(np.float32)

    def drain(self):
        """Waits for every call in flight (raises the first error)."""
        while self.critic_calls:
            self._settle_critic()
        while self.actor_calls:
            self.actor_calls.popleft().result(60.0)

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
            learner.drain()
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
