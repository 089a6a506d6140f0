"""Where a training step of the benchmark CNN spends its time, layer by layer.

    python benchmarks/profile_cnn_layers.py [--batch 64] [--steps 30]

One shard's worth of the bench_cnn.py network (default 64 images, what each
process computes with ``train.data_parallel=2``) on one BLAS thread: each
layer's forward and backward timed separately, and the minimum over
``--steps`` steps printed (the minimum, because a shared machine's speed
drifts), with their sum and the median of whole steps.  Random images: the
time does not depend on the values.

GFLOP/s counts a conv or dense layer's direct-algorithm multiply-adds
(2 x output size x fan-in forward, twice that backward, once for the first
layer, which computes no input gradient), whatever the algorithm: Winograd's
figure is "effective" GFLOP/s.  The step's GFLOP/s is set against the
float32 matrix-multiply ceiling on one thread (benchmarks/machine.py, NumPy
and PyTorch) measured before and after the steps; the peak is the highest of
those samples, as the step time is the sum of per-layer minima.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before NumPy: one core, as a shard's process

import numpy as np  # noqa: E402

import machine  # noqa: E402
from bench_cnn import layers  # noqa: E402
from nnexp.nn import SoftmaxCrossEntropy  # noqa: E402
from nnexp.nn.fast import build_fast_model as build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    ceiling = machine.CeilingSampler(threads=1)
    ceiling.add(machine.print_header("profile_cnn_layers.py", threads=1))
    model = build_model(layers("auto"), input_shape=(1, 28, 28), rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    loss = SoftmaxCrossEntropy()
    n, warmup = len(model.layers), 3
    fwd, bwd = np.zeros((args.steps, n)), np.zeros((args.steps, n))
    flops = np.zeros(n)   # forward FLOPs of each conv / dense layer
    for step in range(warmup + args.steps):
        row = step - warmup
        h = x
        for i, layer in enumerate(model.layers):
            t0 = time.perf_counter()
            h = layer.forward(h, True)
            if row >= 0:
                fwd[row, i] = time.perf_counter() - t0
            if "W" in layer.params:  # conv (O, C, kh, kw) or dense (in, out): fan-in = W.size / outputs
                flops[i] = 2 * h.size * layer.params["W"].size / h.shape[1]
        loss.forward(h, y)
        d = loss.backward()
        for i in reversed(range(n)):
            t0 = time.perf_counter()
            d = model.layers[i].backward(d, need_input_grad=False) if i == 0 else model.layers[i].backward(d)
            if row >= 0:
                bwd[row, i] = time.perf_counter() - t0
    ceiling.sample(repeats=machine.CEILING_REPEATS)
    peak = ceiling.best_peak()
    f, b = fwd.min(axis=0) * 1e3, bwd.min(axis=0) * 1e3
    back_flops = flops * 2
    back_flops[0] = flops[0]  # the first layer computes no input gradient
    print(f"float32 matmul ceiling on one thread, before and after the steps: {ceiling.summary()}; "
          f"peak {peak:.1f} GFLOP/s\n")
    print(f"{'layer':<22}{'forward ms':>12}{'backward ms':>13}{'fwd GFLOP/s':>13}{'bwd GFLOP/s':>13}")
    for i, layer in enumerate(model.layers):
        rates = (f"{flops[i] / f[i] / 1e6:>13.1f}{back_flops[i] / b[i] / 1e6:>13.1f}" if flops[i] else "")
        print(f"{i:>2} {type(layer).__name__:<19}{f[i]:>12.2f}{b[i]:>13.2f}{rates}")
    steps = (fwd.sum(axis=1) + bwd.sum(axis=1)) * 1e3
    total, step_flops = f.sum() + b.sum(), flops.sum() + back_flops.sum()
    print(f"{'sum of the minima':<22}{f.sum():>12.1f}{b.sum():>13.1f}   total {total:.1f} ms; "
          f"median whole step {np.median(steps):.1f} ms")
    for label, ms in (("sum of the minima", total), ("median whole step", float(np.median(steps)))):
        gflops = step_flops / ms / 1e6
        print(f"{label}: {step_flops / 1e9:.2f} GFLOP at {gflops:.1f} effective GFLOP/s, "
              f"{gflops / peak:.0%} of peak")


if __name__ == "__main__":
    main()
