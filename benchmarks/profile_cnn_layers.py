"""Where a training step of the benchmark CNN spends its time, layer by layer.

    python benchmarks/profile_cnn_layers.py [--batch 64] [--steps 30]

One shard's worth of the bench_cnn.py network (default 64 images, what each
process computes with ``train.data_parallel=2``) on one BLAS thread: each
layer's forward and backward timed separately, and the minimum over
``--steps`` steps printed (the minimum, because the machine's speed drifts),
with their sum and the median of whole steps.  Random images: the time does
not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before NumPy: one core, as a shard's process

import numpy as np  # noqa: E402

from bench_cnn import layers  # noqa: E402
from nnexp.nn import SoftmaxCrossEntropy  # noqa: E402
from nnexp.nn.fast import build_fast_model as build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    model = build_model(layers("auto"), input_shape=(1, 28, 28), rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    loss = SoftmaxCrossEntropy()
    n, warmup = len(model.layers), 3
    fwd, bwd = np.zeros((args.steps, n)), np.zeros((args.steps, n))
    for step in range(warmup + args.steps):
        row = step - warmup
        h = x
        for i, layer in enumerate(model.layers):
            t0 = time.perf_counter()
            h = layer.forward(h, True)
            if row >= 0:
                fwd[row, i] = time.perf_counter() - t0
        loss.forward(h, y)
        d = loss.backward()
        for i in reversed(range(n)):
            t0 = time.perf_counter()
            d = model.layers[i].backward(d, need_input_grad=False) if i == 0 else model.layers[i].backward(d)
            if row >= 0:
                bwd[row, i] = time.perf_counter() - t0
    f, b = fwd.min(axis=0) * 1e3, bwd.min(axis=0) * 1e3
    print(f"{'layer':<22}{'forward ms':>12}{'backward ms':>13}")
    for i, layer in enumerate(model.layers):
        print(f"{i:>2} {type(layer).__name__:<19}{f[i]:>12.2f}{b[i]:>13.2f}")
    steps = (fwd.sum(axis=1) + bwd.sum(axis=1)) * 1e3
    print(f"{'sum of the minima':<22}{f.sum():>12.1f}{b.sum():>13.1f}   total {f.sum() + b.sum():.1f} ms; "
          f"median whole step {np.median(steps):.1f} ms")


if __name__ == "__main__":
    main()
