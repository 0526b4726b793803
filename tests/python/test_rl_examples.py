"""Short runs of the deltaserve RL examples (client/python/examples) that must learn, each
against its own real server on 127.0.0.1:0 (the example starts it from $DELTASERVE_BIN):

- PPO: a short ppo_pendulum.py run must end far above the initial policy's return;
- TD3: a short td3_pendulum.py run likewise;
- chain: an encoder and a head trained through SubmitDelta + return_input_gradient end with
  the parameters torch's composed network reaches with the same optimizer.

The return thresholds sit between what the short runs reach and what the initial (random)
policy scores, with margin both ways (docs/algorithms.md, "Tests"); a δ with a flipped sign or
an actor acting with other input statistics than the server's does not reach them.
"""

import csv
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLES = os.path.join(ROOT, "client", "python", "examples")
sys.path.insert(0, EXAMPLES)


def run_example(script, *args):
    """Runs an example to completion; returns (summary line, CSV returns)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "curve.csv")
        done = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--csv", path,
                               "--print-every", "1000"] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=170)
        if done.returncode != 0:
            raise AssertionError("%s %s failed (%d):\n%s" % (script, " ".join(args),
                                                             done.returncode, done.stdout))
        with open(path) as f:
            returns = [float(row["return"]) for row in csv.DictReader(f)]
    return done.stdout.strip().splitlines()[-1], returns


class PpoShortTest(unittest.TestCase):
    # 24 updates of 8 x 256 steps at a learning rate of 3e-3 (annealed to 0 over them). The
    # initial policy (μ ≈ 0, σ = 1) scores about −1200 per episode; the short run ends near
    # −150 to −250 (seeds 1-3, docs/algorithms.md).
    STEPS = 24 * 2048
    THRESHOLD = -600.0

    def test_short_run_improves_far_over_the_initial_policy(self):
        line, returns = run_example("ppo_pendulum.py", "--seed", "3", "--lr", "3e-3",
                                    "--max-steps", str(self.STEPS), "--target-return", "0")
        print(line)
        self.assertGreaterEqual(len(returns), 100, line)
        first, last = np.mean(returns[:20]), np.mean(returns[-20:])
        self.assertLess(first, -1000.0, "the initial policy should score about -1200: " + line)
        self.assertGreater(last, self.THRESHOLD, "%s (first 20 episodes: %.1f)" % (line, first))


class Td3ShortTest(unittest.TestCase):
    # 5,000 steps with faster learning (lr 2e-3, τ 0.02, minibatch 64, 400 random steps) than
    # the benchmark's. Uniformly random actions score about −1400 per episode; the short run's
    # last 5 episodes average −160 to −270 (seeds 1-3, docs/algorithms.md). The example's calls
    # are asynchronous, so a run depends on timing too: one CI run ended at −853 over its last
    # 5 episodes and −505 over its last 10. The test judges the last 10 (of 25). A run that has
    # not learned yet by 5,000 steps still happens (a CI run of seed 2: −1,067 over the last
    # 10), so seed 3 runs when seed 2 misses; a negated δ misses with every seed by far more
    # (docs/algorithms.md).
    STEPS = 5000
    THRESHOLD = -600.0
    SEEDS = ("2", "3")

    def test_short_run_improves_far_over_random_actions(self):
        misses = []
        for seed in self.SEEDS:
            line, returns = run_example("td3_pendulum.py", "--seed", seed,
                                        "--steps", str(self.STEPS), "--learning-starts", "400",
                                        "--lr", "2e-3", "--tau", "0.02", "--batch", "64")
            print(line)
            self.assertEqual(len(returns), self.STEPS // 200, line)
            # The first 2 episodes act uniformly at random.
            first, last = np.mean(returns[:2]), np.mean(returns[-10:])
            self.assertLess(first, -1000.0, line)
            if last > self.THRESHOLD:
                return
            misses.append("%s (random actions: %.1f)" % (line, first))
        self.fail("no seed's last 10 episodes averaged above %.0f: %s"
                  % (self.THRESHOLD, "; ".join(misses)))

    def test_anchored_mean_critic_step_equals_the_delta_of_the_critic_loss(self):
        # td3_pendulum.py's critics send ỹ = y (the TD target) and δ = 0 under ANCHORED/MEAN:
        # the server's ∂l/∂Q is then (Q − y)/N, the δ of ½·mean (Q − y)² that
        # actor_critic.td3_critic_deltas gives (checked against autograd in
        # test_algorithms.py). One SGD step of each path from the same weights must agree,
        # and must lower that loss (a flipped sign raises it).
        import actor_critic
        import rl_common
        import td3_pendulum
        critic = td3_pendulum.layers(td3_pendulum.parse_args([]))[1]
        n, dim = 32, 4
        sgd = "kind: SGD learning_rate: 0.05"
        config = (rl_common.model_config("anchored", dim, critic, sgd, samples_per_step=n,
                                         extra=td3_pendulum.CRITIC_SURROGATE)
                  + rl_common.model_config("current", dim, critic, sgd, samples_per_step=n))
        rng = np.random.default_rng(5)
        initial = rl_common.torch_default_init(rng, dim, [u for u, _ in critic])
        x = rng.normal(size=(n, dim)).astype(np.float32)
        y = rng.normal(size=(n, 1)).astype(np.float32)
        with rl_common.Server(config) as server:
            clients = {m: server.client(m) for m in ("anchored", "current")}
            try:
                for m in clients:
                    rl_common.import_parameters(server.address, m, initial)
                q, version = clients["current"].forward(x)
                clients["current"].submit_delta(
                    x, actor_critic.td3_critic_deltas(q[:, 0], y[:, 0])[:, None], version)
                clients["anchored"].submit_delta(x, np.zeros_like(y), version, outputs=y)
                after = {m: c.get_parameters()[0] for m, c in clients.items()}
                q_after = clients["anchored"].forward(x)[0]
            finally:
                for c in clients.values():
                    c.close()
        self.assertGreater(np.max(np.abs(after["anchored"] - initial)), 1e-4)
        np.testing.assert_allclose(after["anchored"], after["current"], rtol=0, atol=1e-6)
        self.assertLess(np.mean((q_after - y) ** 2), np.mean((q - y) ** 2))


class ChainTest(unittest.TestCase):
    def test_two_models_train_as_the_composed_torch_network(self):
        import chain_example
        import rl_common
        for optimizer in ("kind: ADAM learning_rate: 0.01", "kind: SGD learning_rate: 0.1"):
            with self.subTest(optimizer=optimizer):
                args = chain_example.parse_args(["--steps", "30", "--optimizer", optimizer])
                with rl_common.Server(chain_example.server_config(args)) as server:
                    initial, final, losses = chain_example.train(server, args)
                reference = chain_example.torch_train(initial, args)
                for model in ("encoder", "head"):
                    moved = np.max(np.abs(final[model] - initial[model]))
                    self.assertGreater(moved, 1e-3, "%s did not train" % model)
                    np.testing.assert_allclose(final[model], reference[model], rtol=0,
                                               atol=2e-5, err_msg=model)
                self.assertLess(losses[-1], 0.8 * losses[0])


if __name__ == "__main__":
    unittest.main()
