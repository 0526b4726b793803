"""The smallest deltaserve simulator in Python (README): CartPole + REINFORCE."""
import sys

import numpy as np
from cartpole import CartPole, reinforce_deltas  # numpy physics, delta in closed form
from deltaserve_client import NumpyReplica, TrainerClient

client = TrainerClient(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
rng = np.random.default_rng(1)
env = CartPole(rng)
with NumpyReplica(client) as policy:  # weights pushed by the server; or client.forward
    for episode in range(500):
        obs, done, xs, zs, acts, versions = env.reset(), False, [], [], [], []
        while not done:
            z, version = policy.forward(obs[None, :])  # logits [1 x 2] and their version
            p = np.exp(z[0] - z[0].max())
            action = int(rng.random() < p[1] / p.sum())
            xs.append(obs); zs.append(z[0]); acts.append(action); versions.append(version)
            obs, done = env.step(action)
        x, y = np.array(xs), np.array(zs)
        delta = reinforce_deltas(y, np.array(acts), np.ones(len(acts), np.float32))
        client.submit_delta(x, delta, min(versions), outputs=y,  # delta = d loss / d logits
                            metrics={"episode_return": len(acts), "episode_length": len(acts)})
        print("episode=%d return=%d version=%d" % (episode, len(acts), versions[-1]))
