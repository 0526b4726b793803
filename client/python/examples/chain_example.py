#!/usr/bin/python3
"""Two deltaserve models in a chain, trained as one network: an encoder feeding a head.

    /usr/bin/python3 client/python/examples/chain_example.py --steps 200 --compare-torch

The composed network is head(encoder(x)); the loss ½·mean_i ‖head(encoder(x_i)) − t_i‖² on a
fixed regression problem. Per step the client:
  1. z = encoder(x)                  Forward on "encoder"
  2. y = head(z)                     Forward on "head"
  3. δ_head = (y − t)/N              ∂loss/∂y
  4. SubmitDelta(head, z, δ_head, return_input_gradient) → g = δ_headᵀ·∂y/∂z = ∂loss/∂z
  5. SubmitDelta(encoder, x, g)      the head's input gradient is the encoder's δ
Both models use the CURRENT surrogate with reduction SUM and samples_per_step = N, so each
submission is one optimizer step on exactly ∂loss/∂θ, and the head's input gradient is taken
at the parameters its step used: the two models move as torch's optimizer would move the
composed network. --compare-torch (needs python3-torch) trains that network in torch from
the server's initial parameters with the same optimizer and prints the largest parameter
difference; tests/python/test_rl_examples.py (ChainTest) asserts it is ~1e-5.
"""

import argparse
import csv

import numpy as np

import rl_common
from deltaserve_client import from_matrix

INPUT_DIM, LATENT, OUTPUT_DIM = 4, 8, 2
ENCODER = [(16, "tanh"), (LATENT, "tanh")]
HEAD = [(16, "tanh"), (OUTPUT_DIM, "identity")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", default="kind: ADAM learning_rate: 0.01",
                   help="the body of both models' `optimizer { }`")
    p.add_argument("--csv", default="", help="write step,loss rows")
    p.add_argument("--target", default="", help="HOST:PORT of a running server (else start one)")
    p.add_argument("--compare-torch", action="store_true",
                   help="train the composed network in torch too; print the parameter gap")
    p.add_argument("--print-config", action="store_true", help="print the server config, exit")
    return p.parse_args(argv)


def server_config(args):
    return (rl_common.model_config("encoder", INPUT_DIM, ENCODER, args.optimizer,
                                   seed=args.seed, samples_per_step=args.batch)
            + rl_common.model_config("head", LATENT, HEAD, args.optimizer, seed=args.seed + 1,
                                     samples_per_step=args.batch))


def problem(seed, batch, steps):
    """Fixed minibatches (x, t) of a smooth regression target."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (INPUT_DIM, OUTPUT_DIM))
    xs = rng.normal(0, 1, (steps, batch, INPUT_DIM)).astype(np.float32)
    ts = np.sin(xs @ a).astype(np.float32)
    return xs, ts


def train(server, args):
    """Trains the chain; returns (initial params, final params, losses) per model name."""
    encoder, head = server.client("encoder"), server.client("head")
    try:
        initial = {"encoder": encoder.get_parameters()[0], "head": head.get_parameters()[0]}
        xs, ts = problem(args.seed, args.batch, args.steps)
        losses = []
        with encoder.session() as enc, head.session() as hd:
            for x, t in zip(xs, ts):
                z, z_version = enc.forward(x)
                y, y_version = hd.forward(z)
                losses.append(0.5 * float(np.mean(np.sum((y - t) ** 2, axis=1))))
                delta = (y - t) / x.shape[0]
                response = hd.submit_delta(z, delta, y_version, return_input_gradient=True)
                enc.submit_delta(x, from_matrix(response.input_gradient), z_version)
        final = {"encoder": encoder.get_parameters()[0], "head": head.get_parameters()[0]}
        return initial, final, losses
    finally:
        encoder.close()
        head.close()


def torch_train(initial, args):
    """The composed network in torch, from `initial`, with the optimizer the config names
    (ADAM or SGD); returns its final flat parameters per model."""
    import torch
    from google.protobuf import text_format
    from deltaserve_client._stubs import config_pb2

    spec = text_format.Parse(args.optimizer, config_pb2.OptimizerConfig())
    acts = {"tanh": torch.nn.Tanh, "identity": torch.nn.Identity}

    def net(input_dim, layers, flat):
        mods, offset, fan_in = [], 0, input_dim
        for units, act in layers:
            linear = torch.nn.Linear(fan_in, units)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(
                    flat[offset:offset + units * fan_in].reshape(units, fan_in)))
                offset += units * fan_in
                linear.bias.copy_(torch.from_numpy(flat[offset:offset + units]))
                offset += units
            mods += [linear, acts[act]()]
            fan_in = units
        return torch.nn.Sequential(*mods)

    encoder = net(INPUT_DIM, ENCODER, initial["encoder"])
    head = net(LATENT, HEAD, initial["head"])
    params = list(encoder.parameters()) + list(head.parameters())
    lr = spec.learning_rate or 0.01
    if spec.kind == config_pb2.OptimizerConfig.ADAM:
        opt = torch.optim.Adam(params, lr=lr, betas=(spec.beta1 or 0.9, spec.beta2 or 0.999),
                               eps=spec.epsilon or 1e-8)
    elif spec.kind in (config_pb2.OptimizerConfig.SGD, config_pb2.OptimizerConfig.KIND_UNSPECIFIED):
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise SystemExit("--compare-torch knows ADAM and SGD, not %s" % args.optimizer)
    xs, ts = problem(args.seed, args.batch, args.steps)
    for x, t in zip(xs, ts):
        y = head(encoder(torch.from_numpy(x)))
        loss = 0.5 * ((y - torch.from_numpy(t)) ** 2).sum(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def flat(module):
        return np.concatenate([p.detach().numpy().reshape(-1) for p in module.parameters()])

    return {"encoder": flat(encoder), "head": flat(head)}


def main():
    args = parse_args()
    if args.print_config:
        print(server_config(args), end="")
        return
    with rl_common.Server(server_config(args), args.target) as server:
        initial, final, losses = train(server, args)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "loss"])
            writer.writerows((i + 1, "%.6f" % v) for i, v in enumerate(losses))
    line = "chain seed %d: loss %.4f at step 1, %.4f at step %d" % (args.seed, losses[0],
                                                                    losses[-1], len(losses))
    if args.compare_torch:
        reference = torch_train(initial, args)
        gap = max(float(np.max(np.abs(final[m] - reference[m]))) for m in final)
        line += "; largest parameter difference from torch's composed network %.2e" % gap
    print(line, flush=True)


if __name__ == "__main__":
    main()
