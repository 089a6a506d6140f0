"""Operations on device arrays per training step, counted without a GPU.

    python benchmarks/device_ops.py [CONFIG] [--batches 10] [key=value ...]

Trains CONFIG (default configs/cnn.yaml) with ``train.device=gpu`` for
``--batches`` batches on CuPy's CPU stand-in (tests/cupy_standin.py), which
counts every operation on a device array: ufuncs, functions, methods and
indexing.  On a real GPU each is at least one call from Python into CuPy,
and for the small layers of nnexp's networks the host time of those calls,
not the GPU's arithmetic, bounds the speed.  The table gives the operations
per training step by phase (augmentation, forward + loss + backward, the
optimizer, the rest of the loop), those that only change a view's shape
(reshape, transpose, slicing: no kernel), the operations per evaluated batch,
and the steps of the config's whole training, so that a per-call cost
measured on a GPU turns into a floor on the training time.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path

import blas_threads  # noqa: F401  (must come before numpy)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import cupy_standin  # noqa: E402  (the tests' CuPy stand-in)

sys.modules["cupy"] = cupy_standin

import nnexp.train as train_module  # noqa: E402
from nnexp.augment import Augmenter  # noqa: E402
from nnexp.config import load_config  # noqa: E402
from nnexp.data import load_dataset  # noqa: E402
from nnexp.engines import OneProcess  # noqa: E402
from nnexp.nn.optim import OPTIMIZERS  # noqa: E402

OPS = cupy_standin.OPERATIONS
#: operations that only make a view (no kernel on a GPU)
VIEWS = ("reshape", "transpose", "swapaxes", "getitem", "ravel", "sliding_window_view", "broadcast_to")


def counted(label: str, phases: Counter, func):
    """``func`` with the operations it makes added to ``phases[label]`` (outermost phase only)."""
    def wrapper(*args, **kwargs):
        before = sum(OPS.values())
        out = func(*args, **kwargs)
        phases[label] += sum(OPS.values()) - before
        return out
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "cnn.yaml"))
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    batch, epochs = cfg["data"]["batch_size"], cfg["train"]["epochs"]
    n_train = len(load_dataset(cfg["data"]["dataset"], val_size=cfg["data"]["val_size"]).x_train)
    n_train = min(n_train, cfg["data"]["train_subset"] or n_train)
    steps_per_epoch = math.ceil(n_train / batch)

    phases, training, evaluation = Counter(), Counter(), Counter()
    steps = {}
    Augmenter.__call__ = counted("augmentation", phases, Augmenter.__call__)
    OneProcess.step = counted("forward + loss + backward", phases, OneProcess.step)
    for cls in {c for c in OPTIMIZERS.values() if "step" in vars(c)}:   # an inherited step is wrapped once
        cls.step = counted("optimizer", phases, cls.step)
    real_epoch, real_evaluate = train_module.train_one_epoch, train_module.evaluate

    def one_epoch(*a, **k):
        before = Counter(OPS)
        out = real_epoch(*a, **k)
        training.update(Counter(OPS) - before)
        steps["n"] = out[2]
        return out

    def evaluate(model, x, y, batch_size=2000):
        before = Counter(OPS)
        out = real_evaluate(model, x, y, batch_size)
        evaluation.update(Counter(OPS) - before)
        steps["eval_batches"] = steps.get("eval_batches", 0) + math.ceil(len(x) / batch_size)
        return out

    train_module.train_one_epoch, train_module.evaluate = one_epoch, evaluate
    with tempfile.TemporaryDirectory() as store:
        overrides = [*args.overrides, "train.device=gpu", "train.epochs=1", "train.diagnostics=false",
                     f"data.train_subset={args.batches * batch}",
                     f"tracking.store={store}", "tracking.plots=false"]
        train_module.train(load_config(args.config, overrides), log=lambda *a: None, progress=False)
    n = steps["n"]
    total = sum(training.values())
    views = sum(v for k, v in training.items() if k in VIEWS)
    print(f"{Path(args.config).name}: batch {batch}, {steps_per_epoch} steps per epoch x {epochs} epochs "
          f"= {steps_per_epoch * epochs} training steps; counted over {n} steps")
    print(f"{'phase':<28}{'operations per step':>20}")
    for label in ("augmentation", "forward + loss + backward", "optimizer"):
        print(f"{label:<28}{phases[label] / n:>20.1f}")
    print(f"{'rest of the loop':<28}{(total - sum(phases.values())) / n:>20.1f}")
    print(f"{'all':<28}{total / n:>20.1f}")
    print(f"{'  of which views only':<28}{views / n:>20.1f}")
    print(f"evaluation: {sum(evaluation.values()) / steps['eval_batches']:.1f} operations per batch "
          f"of {cfg['train']['eval_batch_size']}")
    whole, kernels = total / n * steps_per_epoch * epochs / 1e6, (total - views) / n * steps_per_epoch * epochs / 1e6
    print(f"whole training: {whole:.2f} million operations ({kernels:.2f} million besides views): "
          f"each microsecond of host time per CuPy call costs {whole:.1f} s ({kernels:.1f} s besides views)")
    print("most frequent per step: " + ", ".join(f"{k} {v / n:.0f}" for k, v in training.most_common(8)))


if __name__ == "__main__":
    main()
