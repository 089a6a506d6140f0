"""Benchmark: nnexp's reference network on a GPU (CuPy) against PyTorch on the same GPU.

    python benchmarks/bench_gpu.py [--batches 50] [--rounds 3] [--device gpu|cpu] [--cnn-run]

Measured, each in the same process and interleaved in rounds (a row is the
median per batch over the rounds):

* training steps of the CNN of bench_cnn.py (batch 128, SGD Nesterov): nnexp's
  reference engine with CuPy as its array module against PyTorch CUDA, same
  layers, same batches; the table gives nnexp's time over PyTorch's (the
  target is within 2x);
* one epoch of the MLP of bench_mlp.py (784-256-128-10, Adam, batch 128) on
  the 60,000 training images, both frameworks;
* inference of the 10,000 test images at batch 1000;
* with ``--cnn-run``: the whole of ``nnexp run configs/cnn.yaml
  train.device=gpu`` (20 epochs; target under a minute), its training
  seconds and test accuracy read from the run's summary.json.

Timings synchronise the device before reading the clock.  The header gives
the machine (benchmarks/machine.py) and the GPU (name, memory, CuPy and CUDA
versions).  ``--device cpu`` runs the same comparison on the CPU (NumPy
against PyTorch CPU): it checks the script anywhere, it measures nothing
about GPUs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blas_threads  # noqa: F401  (must come before numpy)

import numpy as np  # noqa: E402

import machine  # noqa: E402
from bench_cnn import BATCH, LAYERS, torch_net  # noqa: E402
from bench_mlp import LAYERS as MLP_LAYERS  # noqa: E402
from nnexp.data import load_dataset  # noqa: E402
from nnexp.devices import array_module, facts  # noqa: E402
from nnexp.nn import SGD, Adam, SoftmaxCrossEntropy, build_model, forward_backward  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def synchronize(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def nnexp_cnn(xp, x, y):
    """(one training step, sync) of the bench CNN, reference engine, on xp's device."""
    model = build_model(LAYERS, (1, 28, 28), np.random.default_rng(0))
    model.to_device(xp)
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model.parameters(), momentum=0.9, nesterov=True)
    xd, yd = xp.asarray(x), xp.asarray(y)
    order = itertools.cycle(range(0, len(x) - BATCH, BATCH))

    def step():
        s = next(order)
        forward_backward(model, loss_fn, xd[s:s + BATCH], yd[s:s + BATCH])
        opt.step(0.01)
    return step, model


def torch_cnn(torch, device, x, y):
    torch.manual_seed(0)
    net = torch_net(torch, False).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    xd, yd = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    order = itertools.cycle(range(0, len(x) - BATCH, BATCH))

    def step():
        s = next(order)
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xd[s:s + BATCH]), yd[s:s + BATCH]).backward()
        opt.step()
    return step, net


def timed(step, sync, n) -> list[float]:
    out = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def mlp_epoch_nnexp(xp, x, y) -> float:
    model = build_model(MLP_LAYERS, (1, 28, 28), np.random.default_rng(0))
    model.to_device(xp)
    loss_fn, opt = SoftmaxCrossEntropy(), Adam(model.parameters())
    xd, yd = xp.asarray(x), xp.asarray(y)
    synchronize(xp)
    t0 = time.perf_counter()
    for s in range(0, len(x), BATCH):
        forward_backward(model, loss_fn, xd[s:s + BATCH], yd[s:s + BATCH])
        opt.step(1e-3)
    synchronize(xp)
    return time.perf_counter() - t0


def mlp_epoch_torch(torch, device, x, y) -> float:
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10)).to(device)
    opt, loss_fn = torch.optim.Adam(net.parameters(), lr=1e-3), nn.CrossEntropyLoss()
    xd, yd = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for s in range(0, len(x), BATCH):
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xd[s:s + BATCH]), yd[s:s + BATCH]).backward()
        opt.step()
    sync()
    return time.perf_counter() - t0


def cnn_run(device: str) -> dict:
    """`nnexp run configs/cnn.yaml train.device=...` in a store of its own: its figures."""
    with tempfile.TemporaryDirectory() as store:
        done = subprocess.run([sys.executable, "-m", "nnexp", "run", str(ROOT / "configs" / "cnn.yaml"), "-q",
                               f"train.device={device}", f"tracking.store={store}", "tracking.plots=false"],
                              capture_output=True, text=True)
        if done.returncode:
            return {"error": done.stderr.strip()[-500:]}
        [run] = [p for p in Path(store).iterdir() if p.is_dir()]
        s = json.loads((run / "summary.json").read_text())
        return {k: s.get(k) for k in ("train_seconds", "test_accuracy", "epochs_completed", "total_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--cnn-run", action="store_true", help="also train configs/cnn.yaml for real")
    args = parser.parse_args()
    machine.print_header("bench_gpu.py", threads=None, ceiling=args.device == "cpu")
    xp = array_module(args.device)   # exits with the reason when CuPy or the GPU is missing
    print("device  ", json.dumps(facts(xp)))
    try:
        import torch
    except ImportError:
        torch = None
    tdev = "cuda" if args.device == "gpu" else "cpu"
    if torch is not None and tdev == "cuda" and not torch.cuda.is_available():
        print("PyTorch sees no CUDA device: its rows are left out")
        torch = None
    data = load_dataset("mnist", val_size=0, log=lambda m: None)
    x, y = data.x_train.astype(np.float32), data.y_train.astype(np.int64)
    runners = {"nnexp reference (CuPy)" if xp is not np else "nnexp reference (NumPy)":
               (nnexp_cnn(xp, x, y)[0], lambda: synchronize(xp))}
    if torch is not None:
        sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
        runners[f"PyTorch {tdev}"] = (torch_cnn(torch, tdev, x, y)[0], sync)
    times = {name: [] for name in runners}
    for step, sync in runners.values():
        timed(step, sync, 3)   # warm-up: kernels compiled, memory pools filled
    for _ in range(args.rounds):
        for name, (step, sync) in runners.items():
            times[name] += timed(step, sync, args.batches // args.rounds)
    print(f"\nCNN training step, batch {BATCH} (median of {args.batches} steps in {args.rounds} rounds)")
    base = statistics.median(times[f"PyTorch {tdev}"]) if torch is not None else None
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{med / base:.2f}x PyTorch" if base else ""
        print(f"  {name:<26}{med * 1e3:9.2f} ms/step  {med * len(x) / BATCH:8.1f} s/epoch  {ratio}")
    print("\nMLP epoch (60,000 images, batch 128)")
    nn_epoch = min(mlp_epoch_nnexp(xp, x, y) for _ in range(2))
    print(f"  {'nnexp reference':<26}{nn_epoch:9.2f} s")
    if torch is not None:
        t_epoch = min(mlp_epoch_torch(torch, tdev, x, y) for _ in range(2))
        print(f"  {'PyTorch ' + tdev:<26}{t_epoch:9.2f} s   nnexp {nn_epoch / t_epoch:.2f}x PyTorch")
    if args.cnn_run:
        print("\nnnexp run configs/cnn.yaml train.device=" + args.device)
        print("  " + json.dumps(cnn_run(args.device)))


if __name__ == "__main__":
    main()
