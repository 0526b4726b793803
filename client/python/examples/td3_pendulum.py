#!/usr/bin/python3
"""TD3 on Pendulum through deltaserve: the same algorithm as tools/torch_td3.py, with the
server training the networks from the δ this client sends.

    /usr/bin/python3 client/python/examples/td3_pendulum.py --seed 1 --csv /tmp/td3_ds_1.csv

Three models on one server (started here from $DELTASERVE_BIN or build/, unless --target names
a running one with the config --print-config prints): the actor π (3 → h → h → 1, ReLU, tanh
output; the action is 2·π(s)) and the twin critics q1, q2 (4 → h → h → 1, ReLU). Adam 3e-4 on
each, samples_per_step = the minibatch, so every SubmitDelta is one optimizer step.

Per env step, after the 1,000 random steps, nothing waits for the server unless more than
--in-flight steps of calls are unanswered:
  - act with the actor's newest fetched weights (numpy, no round trip);
  - y = r + γ·min(Q1', Q2')(s', ã) with the target networks, which this client keeps as Polyak
    averages of the weights it fetches, computed in numpy;
  - the critics: SubmitDelta to q1 and q2 with ỹ = y and δ = 0: under their ANCHORED/MEAN
    surrogate the server forms δ_k = (Q_k(s, a) − y)/N itself, with Q_k at its current
    parameters, so the client needs no Q and no current critic weights;
  - every --policy-delay steps: InputGradient on q1 at (s, 2·π(s)) with δ = 1 per row gives
    ∂Q1/∂a; when it answers, the actor gets δ = −2·∂Q1/∂a/N by SubmitDelta (CURRENT: applied
    at the server's current actor); the targets move by τ towards the newest fetched weights,
    and GetParameters asks for the next ones.
All calls are unary futures on one channel. The lag this brings (weights one policy-delay
period old for acting, π(s) and the Polyak update; at most --in-flight steps of submissions
queued) is in docs/algorithms.md.
The δ math is client/python/examples/actor_critic.py (tested against torch autograd).
Prints the learning curve, writes it to --csv in tools/torch_rl.py's columns, and ends with one
summary line like tools/torch_td3.py's.
"""

import argparse
import collections
import threading
from concurrent.futures import Future

import grpc
import numpy as np

import actor_critic
import pendulum_env
import rl_common
from deltaserve_client.convert import (input_gradient_request, input_gradient_result,
                                       parameters_result, submit_delta_request)
from deltaserve_client.mlp import NumpyMlp
from deltaserve.v1 import trainer_pb2, trainer_pb2_grpc  # importable once deltaserve_client is

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
                   help="debugging aid: ∂Q1/∂a in numpy from q1's fetched weights, not "
                   "InputGradient")
    p.add_argument("--in-flight", type=int, default=2,
                   help="steps of critic (and actor) submissions left unanswered at most")
    p.add_argument("--print-every", type=int, default=10, help="episodes between progress lines")
    return p.parse_args(argv)


class Learner:
    """The three models on one server, the client's copies of their weights and target
    networks, and the training calls in flight (at most --in-flight steps of each kind
    unanswered). All calls are unary futures on one channel: in Python that is one gRPC
    polling thread for everything, and no thread hand-off per call beyond it."""

    def __init__(self, server, args, init_rng):
        self.args = args
        actor_layers, critic_layers = layers(args)
        self.channel = grpc.insecure_channel(server.address)
        self.stub = trainer_pb2_grpc.TrainerStub(self.channel)
        # Initial weights drawn as torch.nn.Linear's default (the reference's), imported.
        units = {"actor": [u for u, _ in actor_layers], "q1": [u for u, _ in critic_layers],
                 "q2": [u for u, _ in critic_layers]}
        dims = {"actor": OBS_DIM, "q1": OBS_DIM + ACT_DIM, "q2": OBS_DIM + ACT_DIM}
        # Per model: the newest version an answer named (what a submission names as the
        # version it was formed against: never ahead of the server's), the newest weights
        # fetched, the target network, and the GetParameters call in flight.
        self.version, self.params, self.targets, self.fetches = {}, {}, {}, {}
        for m in ("actor", "q1", "q2"):
            params = rl_common.torch_default_init(init_rng, dims[m], units[m])
            self.version[m] = rl_common.import_parameters(server.address, m, params)
            self.params[m], self.targets[m] = params, params.copy()
        self.mlp = {m: NumpyMlp(self.stub.GetModelInfo(trainer_pb2.GetModelInfoRequest(model=m),
                                                       timeout=60.0).spec)
                    for m in ("actor", "q1", "q2")}
        self.zeros = np.zeros((args.batch, 1), np.float32)  # the critics' δ (ANCHORED)
        self.ones = np.ones((args.batch, 1), np.float32)  # InputGradient's δ: ∂Q1/∂(s, a)
        self.critic_calls = collections.deque()  # (model, future), oldest first
        self.actor_calls = collections.deque()  # futures of the actor's SubmitDelta chains

    def fetch(self):
        """Takes each model's GetParameters answer if it has arrived, and asks again: the
        weights acting and the Polyak update use are the newest answered, about one
        --policy-delay period old (no waiting)."""
        for m in ("actor", "q1", "q2"):
            future = self.fetches.get(m)
            if future is not None:
                if not future.done():
                    continue
                self.params[m] = parameters_result(future.result())[0]
            self.fetches[m] = self.stub.GetParameters.future(
                trainer_pb2.GetParametersRequest(model=m), timeout=60.0)

    def act(self, obs):
        return self.mlp["actor"].forward(self.params["actor"], obs[None])[0]

    def critic_step(self, s, a, y):
        """SubmitDelta to q1 and q2 without waiting for the answers: ỹ = y and δ = 0 under the
        critics' ANCHORED/MEAN surrogate, so the server's ∂l/∂Q = (Q(s, a) − y)/N with Q at
        its current parameters (the critic loss ½·mean (Q − y)²'s gradient)."""
        request = submit_delta_request("q1", np.concatenate([s, a], axis=1), self.zeros,
                                       self.version["q1"], y[:, None], False, "")
        twin = trainer_pb2.SubmitDeltaRequest()
        twin.CopyFrom(request)  # the same rows for q2
        twin.model, twin.version = "q2", self.version["q2"]
        for m, r in (("q1", request), ("q2", twin)):
            self.critic_calls.append((m, self.stub.SubmitDelta.future(r, timeout=60.0)))
        while len(self.critic_calls) > 2 * self.args.in_flight:
            m, future = self.critic_calls.popleft()
            self.version[m] = max(self.version[m], int(future.result().version))

    def actor_step(self, s):
        """InputGradient on q1 at (s, 2·π(s)), π the actor's newest fetched weights; when it
        answers (on gRPC's thread), SubmitDelta to the actor with δ = −2·∂Q1/∂a/N (CURRENT:
        applied at the server's current actor). Does not wait."""
        a = self.mlp["actor"].forward(self.params["actor"], s) * ACTION_SCALE
        sa = np.concatenate([s, a], axis=1)
        version = self.version["actor"]
        done = Future()
        if self.args.replica_input_gradient:  # debugging aid: the same product in numpy
            dq_dsa = rl_common.numpy_input_gradient(self.params["q1"], sa, self.ones,
                                                    OBS_DIM + ACT_DIM, layers(self.args)[1])
            self._submit_actor(s, dq_dsa, version, done)
        else:
            gradient = self.stub.InputGradient.future(
                input_gradient_request("q1", sa, self.ones), timeout=60.0)
            gradient.add_done_callback(lambda f: self._submit_actor(s, f, version, done))
        self.actor_calls.append(done)
        while len(self.actor_calls) > self.args.in_flight:
            self.version["actor"] = max(self.version["actor"],
                                        int(self.actor_calls.popleft().result(120.0).version))

    def _submit_actor(self, s, gradient, version, done):
        """Sends the actor's δ once ∂Q1/∂(s, a) is known (`gradient`: the numpy product, or
        the InputGradient future, then on gRPC's thread); `done` gets the SubmitDelta's answer
        or the first error, so the main loop never waits on a chain that failed silently."""
        try:
            dq_dsa = (gradient if isinstance(gradient, np.ndarray)
                      else input_gradient_result(gradient.result())[0])
            delta = actor_critic.td3_actor_deltas(dq_dsa[:, OBS_DIM:], ACTION_SCALE)
            submit = self.stub.SubmitDelta.future(
                submit_delta_request("actor", s, delta, version, None, False, ""), timeout=60.0)
        except Exception as e:  # noqa: BLE001 (handed to whoever waits on `done`)
            done.set_exception(e)
            return
        submit.add_done_callback(
            lambda f: done.set_result(f.result()) if f.exception() is None
            else done.set_exception(f.exception()))

    def update_targets(self):
        """θ' ← (1 − τ)·θ' + τ·θ, θ each model's newest fetched weights; then fetches."""
        for m in ("actor", "q1", "q2"):
            rl_common.polyak(self.targets[m], self.params[m], self.args.tau)
        self.fetch()

    def target_values(self, rng, r, s2, term):
        a2 = actor_critic.td3_smoothed_action(
            self.mlp["actor"].forward(self.targets["actor"], s2), rng, self.args.target_noise,
            self.args.target_noise_clip, ACTION_SCALE)
        sa2 = np.concatenate([s2, a2.astype(np.float32)], axis=1)
        q1 = self.mlp["q1"].forward(self.targets["q1"], sa2)[:, 0]
        q2 = self.mlp["q2"].forward(self.targets["q2"], sa2)[:, 0]
        return actor_critic.td3_target(r, q1, q2, term, self.args.gamma).astype(np.float32)

    def drain(self):
        """Waits for every call in flight (raises the first error)."""
        for _, future in self.critic_calls:
            future.result()
        for future in self.actor_calls:
            future.result(120.0)
        for future in self.fetches.values():
            future.result()
        self.critic_calls.clear()
        self.actor_calls.clear()

    def close(self):
        self.channel.close()


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
