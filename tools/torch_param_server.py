#!/usr/bin/python3
"""A ~200-line Python/PyTorch parameter server: the Trainer rpcs the independent client uses.

    PYTHONPATH=build/python /usr/bin/python3 tools/torch_param_server.py \
        --config=configs/cartpole.textproto [--listen=127.0.0.1:0] [--max_staleness=N]

The yardstick of tools/bench_fresh_weights.py: the same model, optimizer and
surrogate as the deltaserve config it is compared with (the first model of
--config: its layers and activations, ADAM or SGD at its learning_rate,
surrogate CURRENT with delta_scale, reduction SUM, samples_per_step 1,
max_staleness), served by grpcio's thread-pool server:

- GetModelInfo: spec, version, parameter_count, output_dim.
- GetParameters: the current parameters (no long-poll).
- SubmitDelta: ABORTED if the request's version is more than max_staleness
  behind, else one optimizer step on sum(delta * y) under a lock.
- WatchParameters: the current version, then each time the model moved on,
  the newest one (a generator: grpcio writes the next only after the
  previous one was handed to the transport, as deltaserve does).

Prints "listening on HOST:PORT" once serving. Not a product: no auth, no
persistence, one model.
"""

import argparse
import sys
import threading
from concurrent import futures

import grpc
import numpy as np
import torch
from google.protobuf import text_format

from deltaserve.v1 import config_pb2, trainer_pb2, trainer_pb2_grpc

ACTIVATIONS = {
    config_pb2.ACTIVATION_IDENTITY: None,
    config_pb2.ACTIVATION_TANH: torch.nn.Tanh,
    config_pb2.ACTIVATION_RELU: torch.nn.ReLU,
    config_pb2.ACTIVATION_SIGMOID: torch.nn.Sigmoid,
}


def build_mlp(spec):
    layers, fan_in = [], spec.input_dim
    torch.manual_seed(spec.seed)
    for layer in spec.layers:
        linear = torch.nn.Linear(fan_in, layer.units)
        bound = (6.0 / (fan_in + layer.units)) ** 0.5  # Glorot-uniform, zero bias (docs/model.md)
        if layer.activation == config_pb2.ACTIVATION_RELU:
            bound = (6.0 / fan_in) ** 0.5
        torch.nn.init.uniform_(linear.weight, -bound, bound)
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if ACTIVATIONS[layer.activation] is not None:
            layers.append(ACTIVATIONS[layer.activation]())
        fan_in = layer.units
    return torch.nn.Sequential(*layers)


def to_tensor(m, what, cols):
    if m.cols != cols or len(m.data) != m.rows * m.cols or m.rows == 0:
        raise ValueError("%s: expected rows x %d values" % (what, cols))
    return torch.tensor(np.asarray(m.data, dtype=np.float32).reshape(m.rows, m.cols))


class Model:
    def __init__(self, spec, max_staleness):
        self.spec = spec
        self.max_staleness = max_staleness
        self.mlp = build_mlp(spec)
        opt = spec.optimizer
        lr = opt.learning_rate or 0.01
        if opt.kind == config_pb2.OptimizerConfig.ADAM:
            self.optimizer = torch.optim.Adam(self.mlp.parameters(), lr=lr)
        else:
            self.optimizer = torch.optim.SGD(self.mlp.parameters(), lr=lr)
        self.delta_scale = spec.surrogate.delta_scale or 1.0
        self.output_dim = spec.layers[-1].units
        self.cond = threading.Condition()
        self.version = 0
        self.flat = self._flatten()

    def _flatten(self):
        with torch.no_grad():
            return np.concatenate([p.detach().numpy().ravel() for p in self.mlp.parameters()])

    def snapshot(self):
        with self.cond:
            return self.version, self.flat

    def submit(self, request):
        x = to_tensor(request.inputs, "inputs", self.spec.input_dim)
        delta = to_tensor(request.deltas, "deltas", self.output_dim)
        if delta.shape[0] != x.shape[0]:
            raise ValueError("deltas: expected as many rows as inputs")
        with self.cond:
            if self.max_staleness and self.version - request.version > self.max_staleness:
                return None, self.version - request.version
            self.optimizer.zero_grad()
            loss = (self.mlp(x) * delta).sum() * self.delta_scale
            loss.backward()
            self.optimizer.step()
            self.version += 1
            self.flat = self._flatten()
            self.cond.notify_all()
            return self.version, self.version - 1 - request.version


class Servicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, model, name):
        self.model = model
        self.name = name

    def _check(self, name, context):
        if name not in ("", self.name):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown model")

    def _update(self, version, flat):
        return trainer_pb2.ParameterUpdate(model=self.name, version=version,
                                           parameters=flat.tolist())

    def GetModelInfo(self, request, context):
        self._check(request.model, context)
        version, flat = self.model.snapshot()
        return trainer_pb2.ModelInfo(spec=self.model.spec, version=version,
                                     parameter_count=len(flat), output_dim=self.model.output_dim,
                                     optimizer_steps=version)

    def GetParameters(self, request, context):
        self._check(request.model, context)
        return self._update(*self.model.snapshot())

    def SubmitDelta(self, request, context):
        self._check(request.model, context)
        try:
            version, staleness = self.model.submit(request)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if version is None:
            context.abort(grpc.StatusCode.ABORTED, "too stale: %d versions" % staleness)
        return trainer_pb2.SubmitDeltaResponse(version=version, staleness=staleness,
                                               stepped=True)

    def WatchParameters(self, request, context):
        self._check(request.model, context)
        sent = -1
        while context.is_active():
            with self.model.cond:
                self.model.cond.wait_for(lambda: self.model.version > sent, timeout=0.5)
                version, flat = self.model.version, self.model.flat
            if version > sent:
                sent = version
                yield self._update(version, flat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a deltaserve ServerConfig textproto")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--max_staleness", type=int, default=-1,
                        help="override the config's max_staleness (-1: keep it)")
    parser.add_argument("--workers", type=int, default=32, help="grpcio handler threads")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.config) as f:
        config = text_format.Parse(f.read(), config_pb2.ServerConfig())
    spec = config.models[0]
    if args.max_staleness >= 0:
        spec.max_staleness = args.max_staleness
    model = Model(spec, spec.max_staleness)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    trainer_pb2_grpc.add_TrainerServicer_to_server(Servicer(model, spec.name), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print("cannot listen on %s" % args.listen, file=sys.stderr)
        return 2
    server.start()
    print("listening on %s:%d" % (args.listen.rsplit(":", 1)[0], port), flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
