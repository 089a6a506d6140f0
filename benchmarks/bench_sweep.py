"""Sweep throughput: the same 8-trial sweep with 1 and 2 workers.

    python benchmarks/bench_sweep.py [--trials 8] [--epochs 4] [--subset 50000] [--ray]

Each configuration runs the sweep from scratch (a fresh store) through the
real CLI, `nnexp sweep`, and is timed end to end (worker start-up, data
loading, training, writing the runs). Rows:

    1 worker  x 1 BLAS thread   the baseline: one trial at a time, one core
    1 worker  x 2 BLAS threads  one trial at a time, both cores inside the GEMMs
    2 workers x 1 BLAS thread   the default on 2 cores: two trials at a time
    ray (--ray)                 --executor ray on a local Ray instance, one CPU per
                                trial: two trials at a time too; the difference
                                to the row above is Ray's overhead

The speed-up of 2 workers over 1 is the number the sweep issue asks for; the
comparison with "1 worker x 2 threads" shows whether running trials side by
side beats letting BLAS use both cores for one trial at a time. The output
starts with the machine (benchmarks/machine.py): CPU, library versions and the
float32 matrix-multiply ceiling on all cores, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine

BASE = """\
data: {{dataset: mnist, val_size: 5000, batch_size: 128, train_subset: {subset}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 256}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: {epochs}, seed: 0}}
tracking: {{plots: false}}
"""


def run_sweep(spec: Path, store: Path, workers: int, threads: int, executor: str = "local") -> float:
    cmd = [sys.executable, "-m", "nnexp", "sweep", str(spec), "--workers", str(workers),
           "--threads-per-worker", str(threads), "--store", str(store), "-q", "--executor", executor]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"sweep failed ({done.returncode}):\n{done.stderr}")
    runs = [p for p in store.iterdir() if (p / "summary.json").exists()]
    statuses = {json.loads((p / "summary.json").read_text())["status"] for p in runs}
    assert statuses == {"completed"}, statuses
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subset", type=int, default=50000)
    parser.add_argument("--ray", action="store_true",
                        help="also run the sweep with --executor ray (a local Ray instance, 1 CPU per trial)")
    args = parser.parse_args()
    machine.print_header("bench_sweep.py")

    with tempfile.TemporaryDirectory(prefix="nnexp-bench-sweep-") as tmp:
        tmp = Path(tmp)
        (tmp / "base.yaml").write_text(BASE.format(subset=args.subset, epochs=args.epochs))
        lrs = [round(0.0005 * 1.5 ** i, 6) for i in range(args.trials)]
        (tmp / "spec.yaml").write_text(f"name: bench\nbase: base.yaml\nparameters:\n  optimizer.lr: {lrs}\n")
        rows = []
        for workers, threads in ((1, 1), (1, 2), (2, 1)):
            seconds = run_sweep(tmp / "spec.yaml", tmp / f"store-{workers}x{threads}", workers, threads)
            rows.append((workers, threads, seconds))
        if args.ray:  # as many one-CPU tasks at once as there are cores, like the local 2 x 1
            env_note = "Ray starts its own local instance: its start-up is in the total"
            ray_seconds = run_sweep(tmp / "spec.yaml", tmp / "store-ray", 1, 1, executor="ray")

    base = rows[0][2]
    one_trial_two_threads = rows[1][2]
    print(f"{args.trials}-trial sweep: 784-256-10 MLP, {args.subset:,} images, {args.epochs} epochs per trial "
          f"({os.cpu_count()} cores)")
    print(f"{'workers x threads':<20}{'seconds':>10}{'per trial':>12}{'speed-up vs 1x1':>18}{'vs 1x2':>10}")
    for workers, threads, seconds in rows:
        print(f"{f'{workers} x {threads}':<20}{seconds:>10.1f}{seconds / args.trials:>12.2f}"
              f"{base / seconds:>17.2f}x{one_trial_two_threads / seconds:>9.2f}x")
    if args.ray:
        local = rows[2][2]
        print(f"{'ray, ' + str(os.cpu_count()) + ' x 1 CPU':<20}{ray_seconds:>10.1f}{ray_seconds / args.trials:>12.2f}"
              f"{base / ray_seconds:>17.2f}x{one_trial_two_threads / ray_seconds:>9.2f}x")
        print(f"Ray vs local 2 x 1: {ray_seconds - local:+.1f} s in total, "
              f"{(ray_seconds - local) / args.trials:+.2f} s per trial ({env_note})")


if __name__ == "__main__":
    main()
