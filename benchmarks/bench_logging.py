"""What ``run.log`` costs in a script's loop, and how a 100,000-step run reads back.

    python benchmarks/bench_logging.py            # prints the CPU, then the tables
    python benchmarks/bench_logging.py --steps 20000 --calls 50000   # smaller

Measured, in this process unless said:

- ``run.log`` of 10 values in a tight loop (nnexp.init's run, the rows
  buffered and written at least once a second by its flusher), amortized
  over every call, the flushes and the final ``finish`` included; rows per
  second; and against it, in the same run, one epoch logged the way rows were
  written before buffering (``Run.log_epoch`` + ``Run.update_summary``, the
  file opened and summary.json replaced per row) and one unbuffered row
  (``Run.append_metrics`` per row).
- A run with ``--steps`` logged steps (a training loss every step, the
  validation figures every 1,000): ``nnexp runs`` and ``nnexp compare`` as
  commands (wall time of the process, the first after the run ended, which
  re-reads its folder, and a second), and the dashboard's answers for its
  run page (``/api/runs/ID``, ``/charts``, ``/metrics?since=``) through the
  dashboard's own Api object: the first poll reads the whole file, a later
  one after 1,000 more rows only those.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402 -- the benchmarks' own helper, next to this file

import nnexp  # noqa: E402
from nnexp.tracking import RunStore  # noqa: E402
from nnexp.tracking.api import Run as TrackedRun  # noqa: E402
from nnexp.ui.api import Api  # noqa: E402
from nnexp.ui.snapshot import StoreSnapshot  # noqa: E402

VALUES = {f"metric_{k}": 0.1 * k for k in range(9)}


def log_calls(store: Path, calls: int) -> tuple[float, float, int]:
    """Wall and CPU seconds per run.log of 10 values (amortized, the flusher thread's
    work and finish included), and the rows written."""
    run = nnexp.init(store=str(store), name="tight-loop")
    row = dict(VALUES)
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        row["train_loss"] = 1.0 / (i + 1)
        run.log(row)
    run.finish()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    written = sum(1 for _ in open(run.path / "metrics.csv")) - 1
    return seconds / calls, cpu / calls, written


def old_epoch(store: Path, epochs: int = 1000) -> float:
    """Seconds per epoch row written unbuffered, with summary.json replaced each time."""
    folder = RunStore(store).create("per-epoch")
    folder.start("per-epoch", **{f"field_{k}": k for k in range(30)})
    row = {"epoch": 0, "train_loss": 0.123456789, "train_accuracy": 0.987654321, "val_loss": 0.0876543,
           "val_accuracy": 0.98123, "lr": 0.0012345, "seconds": 1.2345}
    t = time.perf_counter()
    for epoch in range(1, epochs + 1):
        row["epoch"] = epoch
        folder.log_epoch(row)
        folder.update_summary(epochs_completed=epoch, train_seconds=epoch * 1.3)
    return (time.perf_counter() - t) / epochs


def unbuffered_row(store: Path, rows: int = 2000) -> float:
    folder = RunStore(store).create("unbuffered")
    folder.start("unbuffered")
    row = {"step": 0, **VALUES, "train_loss": 0.5}
    t = time.perf_counter()
    for step in range(rows):
        row["step"] = step
        folder.append_metrics([row])
    return (time.perf_counter() - t) / rows


def long_run(store: Path, steps: int) -> TrackedRun:
    """A script's run of ``steps`` steps, left open (the caller finishes it)."""
    run = nnexp.init(store=str(store), name="long", config={"lr": 0.1, "hidden": 64}, seed=0)
    for step in range(steps):
        row = {"train_loss": 2.0 / (1 + step / 1000)}
        if step % 1000 == 999:
            row.update(val_loss=row["train_loss"] * 1.1, val_accuracy=1 - row["train_loss"] / 3)
        run.log(row, step=step)
    run.flush()
    return run


def command_seconds(*args: str, repeats: int = 2) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnexp", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    machine.print_header("bench_logging.py", threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        per_call, cpu_per_call, written = log_calls(tmp / "loop", args.calls)
        epoch = old_epoch(tmp / "old")
        row = unbuffered_row(tmp / "unbuffered")
        print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with it; "
              "CPU times less)")
        print("logging (us per call, amortized)")
        print(f"  run.log, 10 values, buffered        {per_call * 1e6:8.2f} us   "
              f"{1 / per_call:>12,.0f} rows/s  ({written:,} rows written of {args.calls:,} calls); "
              f"CPU time {cpu_per_call * 1e6:.2f} us per call")
        print(f"  one row unbuffered (append_metrics) {row * 1e6:8.2f} us   ratio {row / per_call:6.1f}x")
        print(f"  one epoch as before (log_epoch + summary.json) {epoch * 1e6:8.2f} us   "
              f"ratio {epoch / per_call:6.1f}x")

        store = tmp / "long"
        t = time.perf_counter()
        run = long_run(store, args.steps)
        log_seconds = time.perf_counter() - t
        api = Api(store, StoreSnapshot(store))
        first_metrics = timed(lambda: Api(store, StoreSnapshot(store)).metrics(run.id, {"since": "0"}), 1)
        api.metrics(run.id, {"since": "0"})
        extra = args.steps
        for step in range(extra, extra + 1000):  # one more stretch of rows, as a running script adds them
            run.log({"train_loss": 0.5}, step=step)
        run.flush()
        poll = timed(lambda: api.metrics(run.id, {"since": str(args.steps)}), 1)
        charts = timed(lambda: api.charts(run.id))
        page = timed(lambda: api.run(run.id))
        points = sum(len(t["x"]) for c in api.charts(run.id)["charts"] for t in c["figure"]["data"])
        run.finish()
        size = os.path.getsize(run.path / "metrics.csv")
        runs = command_seconds("runs", "--store", str(store))
        compare = command_seconds("compare", "--store", str(store))
        print(f"\na run of {args.steps + 1000:,} logged steps ({size / 2**20:.1f} MiB metrics.csv, logged in "
              f"{log_seconds:.2f} s)")
        print(f"  nnexp runs      first {runs[0]:6.2f} s, again {statistics.median(runs[1:]):6.2f} s  (process wall time)")
        print(f"  nnexp compare   first {compare[0]:6.2f} s, again {statistics.median(compare[1:]):6.2f} s")
        print(f"  run page: /api/runs/ID {page * 1e3:7.1f} ms, /charts {charts * 1e3:7.1f} ms "
              f"({points:,} points drawn), /metrics first poll {first_metrics * 1e3:7.1f} ms, "
              f"a poll after 1,000 new rows {poll * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
