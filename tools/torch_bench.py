#!/usr/bin/python3
"""PyTorch counterpart of bench/model_bench.cc, on one thread.

    /usr/bin/python3 tools/torch_bench.py [--min-time 1.0]

Same network (64→256→256→8, tanh hidden layers, identity output), batch 1,
32 and 256: forward (no_grad, like deltaserve's Forward), forward+backward,
one Adam step, and forward+backward+Adam step (zero_grad, forward, backward
of a fixed ∂l/∂y, step). Prints microseconds per iteration (median of 5
repeats) and GFLOP/s with the FLOP count bench/model_bench.cc uses. Also
prints which BLAS library the process actually mapped (from /proc/self/maps).

Use tools/bench_vs_torch.sh to run it against OpenBLAS without installing it.
"""
import argparse
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
    """Median seconds per call over 5 repeats of at least min_time/5 each."""
    for _ in range(10):
        fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / 5:
            break
        calls *= 2
    samples = [elapsed / calls]
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def blas_libraries():
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if any(k in path for k in ("blas", "lapack", "mkl")):
                libs.add(path)
    return sorted(libs)


def report(name, batch, seconds, flops=None):
    gflops = "%8.2f" % (flops / seconds / 1e9) if flops else "       -"
    print("%-26s batch %4s %10.2f us  %s GFLOP/s" % (name, batch, seconds * 1e6, gflops))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=1.0)
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
    print("BLAS mapped: %s" % (", ".join(blas_libraries()) or "none found"))


if __name__ == "__main__":
    main()
