"""Benchmark: one epoch of the same MLP in nnexp, PyTorch CPU and scikit-learn.

    python benchmarks/bench_mlp.py [--repeats 3] [--threads 2]

The network is 784-256-128-10, ReLU, Adam (lr 1e-3), batch 128, float32, on
the 60,000 real MNIST training images, with the same data order for nnexp and
PyTorch. Each framework runs ``--repeats`` epochs; the table shows the median
and the best, and the ratio of nnexp's median to PyTorch's median (target:
<= 0.8). Baselines that are not installed are reported as missing
(``pip install torch==2.13.0 scikit-learn``); they are never nnexp dependencies.

It also measures the run store's logging overhead: the seconds spent writing
one epoch's metrics row and summary, averaged over 200 epochs. The output
starts with the machine (benchmarks/machine.py): CPU, library versions and the
float32 matrix-multiply ceiling measured in the same run with ``--threads``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import blas_threads  # noqa: F401  (must come before numpy)

import numpy as np  # noqa: E402

import machine  # noqa: E402
from nnexp.data import load_dataset  # noqa: E402
from nnexp.nn import SoftmaxCrossEntropy  # noqa: E402
from nnexp.nn.fast import build_fast_model as build_model  # noqa: E402
from nnexp.nn.fast.optim import FastAdam as Adam  # noqa: E402
from nnexp.tracking import RunStore  # noqa: E402

LAYERS = [{"type": "flatten"}, {"type": "dense", "units": 256}, {"type": "relu"},
          {"type": "dense", "units": 128}, {"type": "relu"}, {"type": "dense", "units": 10}]
BATCH = 128


def epoch_nnexp(x, y, order, seed=0) -> float:
    model = build_model(LAYERS, input_shape=(1, 28, 28), rng=np.random.default_rng(seed))
    loss_fn, opt = SoftmaxCrossEntropy(), Adam(model.parameters())
    t0 = time.perf_counter()
    for start in range(0, len(x), BATCH):
        idx = order[start:start + BATCH]
        logits = model.forward(x[idx], training=True)
        loss_fn.forward(logits, y[idx])
        model.backward(loss_fn.backward())
        opt.step(1e-3)
    return time.perf_counter() - t0


def epoch_torch(x, y, order, threads, seed=0) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt, ot = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(order)
    t0 = time.perf_counter()
    for start in range(0, len(x), BATCH):
        idx = ot[start:start + BATCH]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def epoch_sklearn(x, y, seed=0) -> float | None:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    import warnings

    clf = MLPClassifier(hidden_layer_sizes=(256, 128), solver="adam", batch_size=BATCH, max_iter=1,
                        learning_rate_init=1e-3, shuffle=True, random_state=seed)
    flat = x.reshape(len(x), -1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(flat, y)
    return time.perf_counter() - t0


def logging_overhead(epochs: int = 200) -> float:
    """Mean seconds to record one epoch (metrics row + summary), as the trainer does."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunStore(tmp).create("bench")
        run.start("bench", params=235146, versions={"numpy": np.__version__})
        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            run.log_epoch(dict(epoch=epoch, train_loss=0.1, train_accuracy=0.97, val_loss=0.08,
                               val_accuracy=0.98, lr=1e-3, seconds=0.7))
            run.update_summary(epochs_completed=epoch, train_seconds=0.7 * epoch, best_epoch=epoch)
        return (time.perf_counter() - t0) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    machine.print_header("bench_mlp.py", threads=args.threads)

    data = load_dataset("mnist", val_size=0, log=lambda m: None)
    x, y = data.x_train, data.y_train
    order = np.random.default_rng(0).permutation(len(x))

    results = {}
    for name, fn in [("nnexp (NumPy)", lambda: epoch_nnexp(x, y, order)),
                     ("PyTorch CPU", lambda: epoch_torch(x, y, order, args.threads)),
                     ("scikit-learn MLPClassifier", lambda: epoch_sklearn(x, y))]:
        fn()  # warm-up: first-touch allocations, BLAS thread start, imports
        times = [fn() for _ in range(args.repeats)]
        results[name] = None if times[0] is None else times

    base = results["PyTorch CPU"]
    print(f"One epoch of 784-256-128-10 ReLU MLP, Adam, batch {BATCH}, {len(x):,} MNIST images, "
          f"{args.threads} threads, {args.repeats} repeats\n")
    print(f"{'framework':<28}{'median s':>10}{'best s':>10}{'nnexp / this':>14}")
    nn_median = statistics.median(results["nnexp (NumPy)"])
    for name, times in results.items():
        if times is None:
            print(f"{name:<28}{'not installed':>20}")
            continue
        median = statistics.median(times)
        print(f"{name:<28}{median:>10.3f}{min(times):>10.3f}{nn_median / median:>13.2f}x")
    if base is not None:
        ratio = nn_median / statistics.median(base)
        print(f"\nnnexp / PyTorch = {ratio:.2f}x (target <= 0.80x): {'met' if ratio <= 0.8 else 'NOT met'}")
    overhead = logging_overhead()
    print(f"run store logging overhead: {overhead * 1e3:.2f} ms per epoch "
          f"({overhead / nn_median:.2%} of an nnexp epoch)")


if __name__ == "__main__":
    main()
