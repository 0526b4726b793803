#!/usr/bin/python3
"""PyTorch counterpart of bench/model_bench.cc, on one thread.

    /usr/bin/python3 tools/torch_bench.py [--min-time 1.0]

Same network (64→256→256→8, tanh hidden layers, identity output), batch 1,
32 and 256: forward (no_grad, like deltaserve's Forward), forward+backward,
one Adam step, and forward+backward+Adam step (zero_grad, forward, backward
of a fixed ∂l/∂y, step). Prints microseconds per iteration (median of 5
repeats, CPU and wall time) and GFLOP/s with the FLOP count bench/model_bench.cc uses. Also
prints which BLAS library the process actually mapped (from /proc/self/maps),
and with --json FILE writes everything for tools/bench_vs_torch.sh.

Use tools/bench_vs_torch.sh to run it against OpenBLAS without installing it.
"""
import argparse
import json
import statistics
import time

import torch

SIZES = [64, 256, 256, 8]


def make_model():
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.Tanh(),
        torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.Tanh(),
        torch.nn.Linear(SIZES[2], SIZES[3]))


def forward_flops(batch):
    return 2.0 * batch * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))


def backward_flops(batch):
    # dW for every layer, dA for every layer but the first (no dX).
    return 2.0 * forward_flops(batch) - 2.0 * batch * SIZES[0] * SIZES[1]


def time_it(fn, min_time):
    """(wall, cpu) seconds per call: medians over 5 repeats of ≥ min_time/5.

    CPU time (time.process_time, one compute thread) is what Google
    Benchmark's "CPU" column reports; it is the fairer number on a shared
    machine, where wall time also counts time spent descheduled.
    """
    for _ in range(10):
        fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_time / 5:
            break
        calls *= 2
    walls, cpus = [], []
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        walls.append((time.perf_counter() - wall) / calls)
        cpus.append((time.process_time() - cpu) / calls)
    return statistics.median(walls), statistics.median(cpus)


def blas_libraries():
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if any(k in path for k in ("blas", "lapack", "mkl")):
                libs.add(path)
    return sorted(libs)


RESULTS = []


def report(name, batch, times, flops=None):
    wall, cpu = times
    gflops = "%8.2f" % (flops / cpu / 1e9) if flops else "       -"
    print("%-26s batch %4s  cpu %10.2f us  wall %10.2f us  %s GFLOP/s (cpu)"
          % (name, batch, cpu * 1e6, wall * 1e6, gflops))
    RESULTS.append(dict(name=name, batch=batch, cpu_us=cpu * 1e6, wall_us=wall * 1e6,
                        flops=flops))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("torch %s, threads %d" % (torch.__version__, torch.get_num_threads()))

    for batch in (1, 32, 256):
        model = make_model()
        x = torch.rand(batch, SIZES[0]) * 2 - 1
        delta = torch.rand(batch, SIZES[-1]) * 2 - 1

        def forward():
            with torch.no_grad():
                model(x)

        def forward_backward():
            model.zero_grad(set_to_none=True)
            model(x).backward(delta)

        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def train_step():
            opt.zero_grad(set_to_none=True)
            model(x).backward(delta)
            opt.step()

        report("forward", batch, time_it(forward, args.min_time), forward_flops(batch))
        report("forward+backward", batch, time_it(forward_backward, args.min_time),
               forward_flops(batch) + backward_flops(batch))
        report("forward+backward+adam", batch, time_it(train_step, args.min_time),
               forward_flops(batch) + backward_flops(batch))

    model = make_model()
    model(torch.rand(1, SIZES[0])).sum().backward()
    for foreach in (False, True):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=foreach)
        report("adam step (foreach=%s)" % foreach, "-", time_it(opt.step, args.min_time))

    a = torch.rand(512, 512)
    b = torch.rand(512, 512)
    report("peak gemm 512^3", "-", time_it(lambda: torch.mm(a, b), args.min_time),
           2.0 * 512 ** 3)
    blas = blas_libraries()
    print("BLAS mapped: %s" % (", ".join(blas) or "none found"))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(torch=torch.__version__, blas=blas, results=RESULTS), out, indent=1)


if __name__ == "__main__":
    main()
