"""Load test of one run store: several sweeps write into it at once while
`nnexp runs` and `nnexp compare` read it in a loop.

    python benchmarks/load_store.py [--sweeps 4] [--trials 6] [--epochs 3] [--readers 2]

Every process is the real CLI. A read counts as an error when the command
exits non-zero, prints a traceback or prints JSON that does not parse; at the
end every trial must be in the store exactly once, completed, and the SQLite
index must pass `PRAGMA integrity_check` and list exactly the run folders.
Prints the machine (benchmarks/machine.py: CPU, library versions) and one
table row; exits 1 if anything was lost or any read failed.
tests/test_load.py runs it small.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import machine

BASE = """\
data: {{dataset: mnist, val_size: 200, batch_size: 64, train_subset: {subset}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 32}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.002}}
train: {{epochs: {epochs}, seed: 0, eval_batch_size: 500}}
tracking: {{plots: false}}
"""

READS = (["runs", "--json"], ["compare", "--json", "--no-group"])


def hammer(workdir: Path, sweeps: int = 4, trials: int = 6, epochs: int = 3, subset: int = 1000,
           readers: int = 2) -> dict:
    """Run the load; returns the figures (see the module docstring)."""
    store = workdir / "runs"
    (workdir / "base.yaml").write_text(BASE.format(epochs=epochs, subset=subset))
    specs = []
    for s in range(sweeps):
        lrs = ", ".join(f"{0.001 * (1 + s) + 0.0001 * t:.4f}" for t in range(trials))
        path = workdir / f"load-{s}.yaml"
        path.write_text(f"name: load-{s}\nbase: base.yaml\nparameters: {{optimizer.lr: [{lrs}]}}\n")
        specs.append(path)
    env = dict(os.environ, NNEXP_STORE=str(store), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    nnexp = [sys.executable, "-m", "nnexp"]
    t0 = time.perf_counter()
    writers = [subprocess.Popen(nnexp + ["sweep", str(p), "--workers", "1", "-q"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in specs]
    done = threading.Event()
    counts = {"reads": 0, "read_errors": 0}
    problems: list[str] = []
    lock = threading.Lock()

    def read_loop(k: int) -> None:
        i = k
        while not done.is_set():
            args = READS[i % len(READS)]
            i += 1
            out = subprocess.run(nnexp + args + ["--store", str(store)], env=env, capture_output=True, text=True)
            empty = "no runs to compare" in out.stderr  # the right answer before the first run exists
            ok = (out.returncode == 0 or empty) and "Traceback" not in out.stderr
            if ok and out.stdout.strip():
                try:
                    json.loads(out.stdout)
                except ValueError:
                    ok = False
            with lock:
                counts["reads"] += 1
                if not ok:
                    counts["read_errors"] += 1
                    problems.append(f"{' '.join(args)}: exit {out.returncode}: {out.stderr.strip()[-300:]}")

    threads = [threading.Thread(target=read_loop, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    sweep_errors = []
    for proc in writers:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sweep_errors.append(err.strip()[-300:])
    done.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"sweeps": sweeps, "trials": sweeps * trials, "seconds": seconds, **counts,
            "sweep_errors": sweep_errors, "problems": problems[:5], **check_store(store, sweeps * trials)}


def check_store(store: Path, expected: int) -> dict:
    """Runs written, lost or duplicated, and the index's health."""
    from nnexp.tracking import RunStore

    folders = {}
    for path in store.iterdir():
        summary = path / "summary.json"
        if path.is_dir() and summary.exists():
            s = json.loads(summary.read_text())
            folders[(s.get("sweep"), s.get("trial"))] = s.get("status")
    warnings: list[str] = []
    listed = [r["id"] for r in RunStore(store).records(warn=warnings.append)]
    with sqlite3.connect(store / ".index.sqlite") as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        indexed = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    completed = sum(1 for status in folders.values() if status == "completed")
    return {"runs_written": len(folders), "completed": completed, "lost": expected - len(folders),
            "listed": len(listed), "duplicates": len(listed) - len(set(listed)), "indexed": indexed,
            "index_integrity": integrity, "listing_warnings": len(warnings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--readers", type=int, default=2)
    args = parser.parse_args()
    machine.print_header("load_store.py", ceiling=False)
    with tempfile.TemporaryDirectory() as tmp:
        r = hammer(Path(tmp), args.sweeps, args.trials, args.epochs, args.subset, args.readers)
    cols = ("sweeps", "trials", "runs_written", "completed", "lost", "duplicates", "listed", "indexed",
            "index_integrity", "reads", "read_errors", "seconds")
    print(" | ".join(cols))
    print(" | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    for line in r["sweep_errors"] + r["problems"]:
        print("  ", line)
    bad = r["lost"] or r["duplicates"] or r["read_errors"] or r["sweep_errors"] or r["index_integrity"] != "ok" \
        or r["completed"] != r["trials"] or r["listed"] != r["trials"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
