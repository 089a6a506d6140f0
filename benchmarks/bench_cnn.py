"""Benchmark: the same CNN in nnexp and PyTorch CPU, training and inference.

    python benchmarks/bench_cnn.py [--batches 40] [--rounds 4] [--threads 2]

The network (38.2 MFLOP forward per image):
conv3x3 32, conv3x3 32, maxpool, conv3x3 64, conv3x3 64, maxpool, dense 256,
dense 10; every conv and the first dense followed by batch-norm and ReLU;
padding 1; batch 128; SGD with Nesterov momentum. Each framework trains
``--batches`` batches of real MNIST (after a few warm-up batches), in
``--rounds`` turns: all five variants are built first, then take turns, so
that a shared machine's slow and fast minutes fall on all of them alike; a row
is the median over its batches, and the table extrapolates to seconds per
55,000-image epoch. PyTorch runs in its default layout and with
``channels_last``; nnexp runs three times: with ``train.data_parallel`` set to
the thread count (each batch cut into that many shards, computed by as many
processes, see nnexp/nn/fast/data_parallel.py; its batch-norm statistics are per
shard), in one process with its default convolutions (Winograd F(2x2, 3x3) for
the 3x3 layers with >= 8 input channels), and with im2col everywhere.
Inference is the 10,000 test images at batch 500 and 128 (nnexp) / 128 and
1000 (PyTorch); nnexp shares the batches among forked processes
(nnexp/nn/fast/forked.py), and once more in one process.

GFLOP/s counts the direct convolution's forward FLOPs x3 for training (forward
+ two backward GEMMs), whatever the algorithm (Winograd does fewer multiplies:
its figure is "effective" GFLOP/s). "Of peak" sets it against the float32
matrix-multiply ceiling measured in the same run (benchmarks/machine.py:
2048x2048 matmuls with ``--threads`` threads, NumPy and PyTorch): once at the
start (the header), once after every round of training, and before and after
every inference measurement; the peak of a table is the faster library's
median over the samples taken during it. Ratios are against the rows measured
in the same run. Peak RSS of the whole process is printed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time

import blas_threads  # noqa: F401  (must come before numpy)

import numpy as np  # noqa: E402

import machine  # noqa: E402
from nnexp.data import load_dataset  # noqa: E402
from nnexp.nn import SoftmaxCrossEntropy  # noqa: E402
from nnexp.nn.fast import build_fast_model as build_model  # noqa: E402
from nnexp.nn.fast import forked  # noqa: E402
from nnexp.nn.fast.data_parallel import DataParallel  # noqa: E402
from nnexp.nn.fast.optim import FastSGD as SGD  # noqa: E402

BATCH = 128
EPOCH_IMAGES = 55000
MFLOP_FORWARD = 38.2
LAYERS = [
    {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "maxpool2d"},
    {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "maxpool2d"},
    {"type": "flatten"}, {"type": "dense", "units": 256}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "dense", "units": 10},
]


def batches(x, y, n, seed=0):
    order = np.random.default_rng(seed).permutation(len(x))
    for i in range(n):
        idx = order[i * BATCH:(i + 1) * BATCH]
        yield x[idx], y[idx]


def layers(algorithm: str) -> list[dict]:
    """LAYERS with every conv's ``algorithm`` set ("auto": Winograd for the 3x3
    convs with >= 8 input channels, im2col for the first)."""
    return [dict(spec, algorithm=algorithm) if spec["type"] == "conv2d" else spec for spec in LAYERS]


def nnexp_trainer(x, y, n_batches, algorithm="auto", shards=1):
    """(train one batch, close): each call trains the next batch of x.
    ``shards`` > 1 is train.data_parallel (nnexp/nn/fast/data_parallel.py: the
    batch cut into shards computed by as many processes as there are cores)."""
    model = build_model(layers(algorithm), input_shape=(1, 28, 28), rng=np.random.default_rng(0))
    if shards > 1:
        model.share_memory()
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), momentum=0.9, nesterov=True)
    parallel = DataParallel(model, loss_fn, shards)
    data, steps = batches(x, y, n_batches), itertools.count()

    def train_one():
        xb, yb = next(data)
        parallel.step(xb, yb, next(steps))
        opt.step(0.01)

    return train_one, parallel.close


def infer_nnexp(x, batch, algorithm="auto", one_process=False) -> float:
    """predict_proba over x; ``one_process`` turns off the forked evaluation
    processes (nnexp/nn/fast/forked.py), leaving the threads inside each layer."""
    model = build_model(layers(algorithm), input_shape=(1, 28, 28), rng=np.random.default_rng(0))
    model.predict_proba(x[:batch], batch_size=batch)  # warm-up
    before = forked.MIN_VALUES
    forked.MIN_VALUES = x.size + 1 if one_process else before
    try:
        t0 = time.perf_counter()
        model.predict_proba(x, batch_size=batch)
        return time.perf_counter() - t0
    finally:
        forked.MIN_VALUES = before


def torch_net(torch, channels_last: bool):
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    net = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(7 * 7 * 64, 256), nn.BatchNorm1d(256), nn.ReLU(),
                        nn.Linear(256, 10))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def torch_trainer(x, y, n_batches, threads, channels_last=False):
    """(train one batch, close) for PyTorch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch_net(torch, channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = batches(x, y, n_batches)

    def train_one():
        xb, yb = next(data)
        xt = torch.from_numpy(xb)
        if channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), torch.from_numpy(yb)).backward()
        opt.step()

    return train_one, lambda: None


def time_interleaved(trainers: dict, rounds: int, per_round: int, warmup: int = 3, after_round=None) -> dict:
    """Median seconds per batch of each trainer (name -> (train one, close) or
    None).  The trainers take turns, ``per_round`` batches each, ``rounds``
    times: a slow minute of the machine then falls on all of them alike,
    and the median leaves out the odd batch a background task slowed down.
    ``after_round()``, if given, runs after every round (a ceiling sample)."""
    live = {name: t for name, t in trainers.items() if t is not None}
    times = {name: [] for name in live}
    try:
        for train_one, _ in live.values():
            for _ in range(warmup):
                train_one()
        for _ in range(rounds):
            for name, (train_one, _) in live.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    train_one()
                    times[name].append(time.perf_counter() - t0)
            if after_round is not None:
                after_round()
    finally:
        for _, close in live.values():
            close()
    return {name: float(np.median(times[name])) if name in times else None for name in trainers}


def infer_torch(x, threads, batch) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    net = torch_net(torch, False).eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        net(xt[:batch])
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            net(xt[i:i + batch])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per framework")
    parser.add_argument("--rounds", type=int, default=4, help="turns each framework takes")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    machine.print_header("bench_cnn.py", threads=args.threads)
    data = load_dataset("mnist", val_size=0, log=lambda m: None)
    x, y = data.x_train, data.y_train

    per_epoch = EPOCH_IMAGES / BATCH
    per_round = max(1, args.batches // args.rounds)
    needed = args.rounds * per_round + 3
    trainers = {f"nnexp ({args.threads} shards)": nnexp_trainer(x, y, needed, shards=args.threads),
                "nnexp (Winograd 3x3)": nnexp_trainer(x, y, needed),
                "nnexp (im2col only)": nnexp_trainer(x, y, needed, algorithm="im2col"),
                "PyTorch CPU (default)": torch_trainer(x, y, needed, args.threads),
                "PyTorch CPU (channels_last)": torch_trainer(x, y, needed, args.threads, channels_last=True)}
    ceiling = machine.CeilingSampler(args.threads)
    rows = list(time_interleaved(trainers, args.rounds, per_round, after_round=ceiling.sample).items())
    peak = ceiling.peak()
    print(f"Training the 38.2 MFLOP/image CNN, batch {BATCH}, {args.threads} threads: median seconds per "
          f"batch over {args.rounds} rounds of {per_round} batches per framework, taking turns; "
          f"seconds per {EPOCH_IMAGES:,}-image epoch extrapolated")
    print(f"float32 matmul ceiling after each round: {ceiling.summary()}; peak {peak:.1f} GFLOP/s\n")
    print(f"{'framework':<30}{'s/batch':>10}{'s/epoch':>10}{'GFLOP/s':>10}{'of peak':>9}"
          f"{'shards / this':>15}{'1 proc. / this':>16}")
    sharded, one_process = rows[0][1], rows[1][1]
    for name, sec in rows:
        if sec is None:
            print(f"{name:<30}{'not installed':>20}")
            continue
        gflops = 3 * MFLOP_FORWARD * 1e6 * BATCH / sec / 1e9
        print(f"{name:<30}{sec:>10.4f}{sec * per_epoch:>10.1f}{gflops:>10.1f}{gflops / peak:>9.0%}"
              f"{sharded / sec:>14.2f}x{one_process / sec:>15.2f}x")

    xt = data.x_test
    runs = [("nnexp Winograd (batch 500)", lambda: infer_nnexp(xt, 500)),
            ("nnexp Winograd (batch 128)", lambda: infer_nnexp(xt, 128)),
            ("nnexp Winograd (500, 1 proc.)", lambda: infer_nnexp(xt, 500, one_process=True)),
            ("nnexp im2col (batch 500)", lambda: infer_nnexp(xt, 500, algorithm="im2col")),
            ("PyTorch CPU (batch 128)", lambda: infer_torch(xt, args.threads, 128)),
            ("PyTorch CPU (batch 1000)", lambda: infer_torch(xt, args.threads, 1000))]
    ceiling = machine.CeilingSampler(args.threads)
    ceiling.sample()
    inf = []
    for name, run in runs:
        inf.append((name, run()))
        if inf[-1][1] is not None:
            ceiling.sample()
    peak = ceiling.peak()
    gflop = MFLOP_FORWARD * len(xt) / 1e3
    print(f"\nInference on the {len(xt):,} test images ({gflop:.0f} GFLOP; {gflop / peak:.1f} s at the "
          f"{peak:.1f} GFLOP/s peak)")
    print(f"float32 matmul ceiling before and after each measurement: {ceiling.summary()}\n")
    for name, sec in inf:
        if sec is None:
            print(f"{name:<30}{'not installed':>20}")
            continue
        gflops = gflop / sec
        print(f"{name:<30}{sec:>8.2f} s{gflops:>10.1f} GFLOP/s ({gflops / peak:.0%} of peak)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {rss:.0f} MiB; of its largest evaluation child: {children:.0f} MiB "
          "(mostly pages shared with this process)")


if __name__ == "__main__":
    main()
