"""Benchmark: the run store at scale (10,000 runs), next to MLflow's file store.

    python benchmarks/bench_store.py [--runs 10000] [--store DIR] [--repeats 5]
                                     [--mlflow-python .bench/mlflow-venv/bin/python]
                                     [--mlflow-runs 10000] [--mlflow-budget 300]

Generates ``--runs`` synthetic but realistic run folders (in a temporary
folder, or ``--store DIR`` to keep them): a validated config.yaml written with
``nnexp.config.dump_yaml`` (MLP or CNN, varied optimizer, lr, batch size, seed,
epochs; half of the runs are sweep trials with ``trial_params``), a
metrics.csv of 10-20 epochs of plausible learning curves, and a summary.json
with the fields the trainer writes. Then it measures, on that store:

- generation time, and the cold index build (no index file: every folder read);
- ``nnexp runs`` and ``nnexp runs --json`` with a warm index, as subprocesses
  (Python start-up included), median and best of ``--repeats``;
- ``nnexp compare --where "optimizer.name == 'adam' and val_accuracy > 0.97"``,
  the same way (skipped with a note where the command does not exist);
- the per-epoch logging overhead (``Run.log_epoch`` + ``Run.update_summary``,
  mean over 1,000 epochs) and the cost of creating a run (folder, config,
  first summary and its index entry), in a separate store.

Targets: `nnexp runs` < 0.3 s and `nnexp compare --where ...` < 0.5 s, Python start-up included
(GitHub issue 19; < 1 s and < 2 s in issue 3), logging < 1 ms per epoch.

With ``--mlflow-python`` (an interpreter with MLflow installed, e.g. a venv
made with ``python3 -m venv .bench/mlflow-venv`` and ``pip install mlflow``;
MLflow is never an nnexp dependency) it runs ``benchmarks/mlflow_side.py``
there, which loads the same runs (params, per-epoch metrics, final metrics)
into an MLflow file store and measures the same work; the table then shows
both and the ratio. Timings are wall-clock seconds; the output starts with the
machine they were measured on (benchmarks/machine.py: CPU, library versions).
The OS file cache is warm for every measurement after generation.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine

from nnexp import __version__
from nnexp.config import dump_yaml, validate
from nnexp.tracking import RunIndex, RunStore
from nnexp.tracking.index import RACY_NS

HERE = Path(__file__).resolve().parent
WHERE = "optimizer.name == 'adam' and val_accuracy > 0.97"

MLP = [{"type": "flatten"}, {"type": "dense", "units": 512, "init": "he"}, {"type": "relu"},
       {"type": "dropout", "p": 0.2}, {"type": "dense", "units": 256, "init": "he"}, {"type": "relu"},
       {"type": "dropout", "p": 0.2}, {"type": "dense", "units": 10, "init": "xavier"}]
CNN = [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
       {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
       {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
       {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "dense", "units": 10}]
ARCHS = {"mlp": (MLP, 535_818), "cnn": (CNN, 20_586)}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
LRS = (0.0003, 0.001, 0.002, 0.003, 0.01, 0.03, 0.1)
BATCHES = (32, 64, 128, 256)


# ------------------------------------------------------------- generation --


def base_configs() -> dict:
    """One validated config per (architecture, optimizer): validation builds the
    model, so it runs 12 times, not 10,000; per-run values are then set on copies
    of these (values that validation accepts)."""
    out = {}
    for arch, (layers, _) in ARCHS.items():
        for opt in OPTIMIZERS:
            raw = {"data": {"dataset": "mnist", "val_size": 5000, "batch_size": 128,
                            "augment": {"rotate": 10.0, "shift": 2.0} if arch == "cnn" else None},
                   "model": {"layers": copy.deepcopy(layers)},
                   "optimizer": {"name": opt, "lr": 0.001, "weight_decay": 0.01 if opt == "adamw" else 0.0},
                   "schedule": {"name": "onecycle" if opt in ("adam", "adamw") else "cosine"},
                   "train": {"epochs": 15, "seed": 0, "label_smoothing": 0.1},
                   "tracking": {"name": arch, "tags": [arch, opt]}}
            out[arch, opt] = validate(raw, source=f"bench {arch}/{opt}")
    return out


def curves(rng: random.Random, epochs: int, lr: float, opt: str) -> list[dict]:
    """Plausible learning curves: accuracy rising to a plateau that depends on lr."""
    quality = 1.0 - abs(math.log10(lr) - math.log10(0.002 if opt.startswith("adam") else 0.03)) / 3
    ceiling = 0.90 + 0.09 * max(0.0, min(1.0, quality)) + rng.uniform(-0.004, 0.004)
    rows = []
    for e in range(1, epochs + 1):
        progress = 1.0 - math.exp(-e / 2.5)
        val_acc = min(0.9995, ceiling * (0.85 + 0.15 * progress) + rng.gauss(0, 0.002))
        train_acc = min(0.9999, val_acc + 0.005 * progress + rng.gauss(0, 0.001))
        rows.append({"epoch": e, "train_loss": -math.log(train_acc) * 1.3 + rng.uniform(0, 0.01),
                     "train_accuracy": train_acc, "val_loss": -math.log(val_acc) * 1.2 + rng.uniform(0, 0.01),
                     "val_accuracy": val_acc, "lr": lr * (0.5 + 0.5 * math.cos(math.pi * e / epochs)),
                     "seconds": rng.uniform(1.2, 1.6) * (20 if opt == "cnn" else 1.3)})
    return rows


def generate(store: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` run folders into ``store`` (no fsync: this is set-up, not logging)."""
    rng = random.Random(seed)
    bases = base_configs()
    store.mkdir(parents=True, exist_ok=True)
    t0 = 1_760_000_000.0
    sweep, trial = None, 0
    for i in range(n):
        arch = "cnn" if rng.random() < 0.25 else "mlp"
        opt = rng.choice(OPTIMIZERS)
        cfg = copy.deepcopy(bases[arch, opt])
        lr, batch, run_seed = rng.choice(LRS), rng.choice(BATCHES), rng.randrange(5)
        epochs = rng.randint(10, 20)
        cfg["optimizer"]["lr"], cfg["data"]["batch_size"] = lr, batch
        cfg["train"]["seed"], cfg["train"]["epochs"] = run_seed, epochs
        if i % 2 == 0:  # every other run is a trial of a 20-trial sweep
            if trial % 20 == 0:
                sweep = f"{arch}-sweep-{i:05d}"
            trial += 1
        start = t0 + i * 90.0 + rng.random()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start))
        name = arch if i % 2 else f"{sweep}-t{trial:03d}"
        run_id = f"{stamp}-{name}-{i:04x}"
        path = store / run_id
        path.mkdir()
        cfg["tracking"]["name"] = name
        (path / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
        rows = curves(rng, epochs, lr, opt)
        lines = ["epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds"]
        lines += [",".join(str(r[k]) if k == "epoch" else repr(r[k]) for k in
                           ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"))
                  for r in rows]
        (path / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary = summary_for(run_id, name, cfg, rows, start, arch, rng)
        if i % 2 == 0:
            summary.update(sweep=sweep, trial=trial, attempt=1,
                           trial_params={"optimizer.lr": lr, "data.batch_size": batch})
        (path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def summary_for(run_id, name, cfg, rows, start, arch, rng) -> dict:
    """The fields train.py writes, with the values a finished run would have."""
    last = rows[-1]
    train_seconds = sum(r["seconds"] for r in rows)
    best = max(rows, key=lambda r: r["val_accuracy"])
    return {
        "id": run_id, "name": name, "status": "completed" if rng.random() > 0.03 else "failed",
        "reason": None, "started": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(start)),
        "start_time": start, "ended": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(start + train_seconds)),
        "dataset": "mnist", "classes": [str(c) for c in range(10)], "seed": cfg["train"]["seed"],
        "tags": cfg["tracking"]["tags"], "params": ARCHS[arch][1], "epochs_planned": len(rows),
        "epochs_completed": len(rows), "train_size": 55000, "val_size": 5000, "test_size": 10000,
        "pid": 12345, "versions": {"python": "3.11.7", "numpy": "2.1.3", "nnexp": __version__},
        "git_commit": "efd2c47d3b8f0d3c2d8c0d58f6a1b0b4f3a2c1de", "host": "bench", "platform": "Linux-x86_64",
        "best_epoch": best["epoch"], "best_val_metric": "val_accuracy", "best_val_value": best["val_accuracy"],
        "test_loss": last["val_loss"] * 0.95, "test_accuracy": min(0.9999, last["val_accuracy"] + 0.001),
        "final_train_loss": last["train_loss"], "final_train_accuracy": last["train_accuracy"],
        "final_val_loss": last["val_loss"], "final_val_accuracy": last["val_accuracy"],
        "data_seconds": 0.4, "train_seconds": train_seconds, "test_seconds": 0.3, "logging_seconds": 0.01,
        "total_seconds": train_seconds + 2.5,
    }


# ---------------------------------------------------------- measurements --


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def command_seconds(args: list[str], repeats: int) -> tuple[float, float] | None:
    """(median, best) wall seconds of ``python -m nnexp ARGS``; None if it fails."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nnexp", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            print(f"  'nnexp {' '.join(args)}' failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
            return None
    return statistics.median(times), min(times)


def has_command(name: str) -> bool:
    proc = subprocess.run([sys.executable, "-m", "nnexp", name, "--help"], capture_output=True, text=True)
    return proc.returncode == 0


def logging_overhead(root: Path, epochs: int = 1000) -> float:
    """Mean seconds of Run.log_epoch + Run.update_summary for one epoch."""
    store = RunStore(root)
    run = store.create("logging")
    run.start("logging", **{f"field_{k}": k for k in range(30)})  # a summary of realistic size
    row = {"epoch": 0, "train_loss": 0.123456789, "train_accuracy": 0.987654321, "val_loss": 0.0876543,
           "val_accuracy": 0.98123, "lr": 0.0012345, "seconds": 1.2345}
    t = time.perf_counter()
    for epoch in range(1, epochs + 1):
        row["epoch"] = epoch
        run.log_epoch(row)
        run.update_summary(epochs_completed=epoch, train_seconds=epoch * 1.3, best_epoch=epoch,
                           best_val_metric="val_accuracy", best_val_value=0.98)
    return (time.perf_counter() - t) / epochs


def creation_seconds(root: Path, cfg: dict, n: int = 100) -> float:
    """Mean seconds to make a run as train.py does: folder, config.yaml, the first
    summary.json (status 'running', which also indexes the run)."""
    store = RunStore(root)
    text = dump_yaml(cfg)
    t = time.perf_counter()
    for i in range(n):
        run = store.create("create")
        run.write_config(text)
        run.start("create", seed=i, params=535_818, epochs_planned=15, epochs_completed=0)
    return (time.perf_counter() - t) / n


def touch_runs(store: Path, k: int) -> None:
    """Append one epoch to ``k`` runs, as running trainers would between two listings."""
    for path in sorted(p for p in store.iterdir() if p.is_dir())[:k]:
        with open(path / "metrics.csv", "a", encoding="utf-8") as f:
            f.write("99,0.1,0.97,0.1,0.97,0.001,1.0\n")


# ------------------------------------------------------------------ MLflow --


def write_runs_jsonl(records: list[dict], path: Path) -> None:
    """The runs as MLflow will get them: nnexp's params, each epoch's row of
    metrics.csv as a metric history, and the record's metrics as final values."""
    curve_cols = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
    with open(path, "w", encoding="utf-8") as out:
        for r in records:
            with open(Path(r["path"]) / "metrics.csv", encoding="utf-8") as f:
                history = [{c: float(v) for c, v in row.items() if c in curve_cols and v}
                           for row in csv.DictReader(f)]
            s = r["summary"]
            curves = {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
            out.write(json.dumps({"id": r["id"], "name": s.get("name"), "status": s.get("status"),
                                  "start_time": s.get("start_time"), "sweep": s.get("sweep"),
                                  "params": r["params"], "history": history,
                                  "final": {k: v for k, v in r["metrics"].items() if k not in curves}}) + "\n")


def run_mlflow(python: str, records: list[dict], tmp: Path, n_small: int, n_large: int,
               budget: float) -> dict | None:
    """Run mlflow_side.py in ``python``; returns its JSON results (None on failure)."""
    runs, out = tmp / "mlflow-runs.jsonl", tmp / "mlflow-results.json"
    write_runs_jsonl(records[:max(n_small, n_large)], runs)
    cmd = [python, str(HERE / "mlflow_side.py"), "--runs", str(runs), "--small", str(n_small),
           "--large", str(n_large), "--budget", str(budget), "--out", str(out)]
    print(f"MLflow side: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, text=True)
    if proc.returncode != 0 or not out.exists():
        print(f"MLflow side failed (exit {proc.returncode})")
        return None
    return json.loads(out.read_text())


# ------------------------------------------------------------------- table --


def fmt_seconds(s) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_timing(timing) -> str:
    """(median, best) of a command, or a note."""
    if isinstance(timing, str) or timing is None:
        return timing or "-"
    return f"{fmt_seconds(timing[0])} / {fmt_seconds(timing[1])}"


def ratio(theirs, ours) -> str:
    if isinstance(ours, tuple):
        ours = ours[0]
    if not isinstance(theirs, (int, float)) or not isinstance(ours, (int, float)) or ours <= 0:
        return "-"
    r = theirs / ours
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def print_table(rows: list[tuple]) -> None:
    header = ("measurement", "nnexp", "MLflow file store", "MLflow / nnexp", "target")
    text = [header] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in text[1:]:
        print(line(r))


def table_rows(n: int, ours: dict, theirs: dict) -> list[tuple]:
    small = ours["n_small"]
    t = theirs.get
    large = t("n_large")
    mark = "" if large in (None, n) else f" (MLflow: {large:,})"
    rows = [
        (f"generate {n:,} run folders", fmt_seconds(ours["generate"]), "-", "-", ""),
        (f"cold index build, {n:,} runs (every folder read)", fmt_seconds(ours["cold_index"]),
         f"{fmt_seconds(t('load_large'))} to log {large:,} runs (2 processes)" if large else "-", "-", ""),
        ("index update after 100 runs changed", fmt_seconds(ours["incremental"]), "-", "-", ""),
        (f"`nnexp runs`, {n:,} runs (subprocess, median / best)", fmt_timing(ours["runs_cmd"]), "-", "-", "< 0.3 s"),
        (f"`nnexp runs --json`, {n:,} runs (subprocess)", fmt_timing(ours["runs_json_cmd"]), "-", "-", ""),
        (f"`nnexp compare --where ...`, {n:,} runs (subprocess)", fmt_timing(ours["compare_cmd"]), "-", "-",
         "< 0.5 s"),
    ]
    for size, key in ((small, "small"), (n, "large")):
        if size == small and key == "large":
            continue
        label_n = f"{size:,}" + (mark if key == "large" else "")
        rows += [
            (f"all {label_n} runs as a DataFrame (in-process)", fmt_seconds(ours[f"frame_all_{key}"]),
             fmt_seconds(t(f"search_all_{key}")), ratio(t(f"search_all_{key}"), ours[f"frame_all_{key}"]), ""),
            (f"filtered, {label_n} runs (matches: {ours[f'matched_{key}']}"
             + (f" / {t(f'matched_{key}')}" if t(f"matched_{key}") is not None else "") + ")",
             fmt_seconds(ours[f"frame_where_{key}"]), fmt_seconds(t(f"search_where_{key}")),
             ratio(t(f"search_where_{key}"), ours[f"frame_where_{key}"]), ""),
        ]
    rows += [
        ("log one epoch: 6 values (+ summary.json for nnexp)", fmt_seconds(ours["log_epoch"]),
         fmt_seconds(t("log_epoch")), ratio(t("log_epoch"), ours["log_epoch"]), "< 1 ms"),
        ("  per logged value (nnexp: the epoch / 6)", fmt_seconds(ours["log_epoch"] / 6), fmt_seconds(t("log_value")),
         ratio(t("log_value"), ours["log_epoch"] / 6), ""),
        ("create a run with its config", fmt_seconds(ours["create"]), fmt_seconds(t("create_run")),
         ratio(t("create_run"), ours["create"]), ""),
    ]
    if t("sqlite"):
        sq = t("sqlite")
        rows += [("  MLflow on SQLite: log one epoch / per value / create a run", "-",
                  f"{fmt_seconds(sq.get('log_epoch'))} / {fmt_seconds(sq.get('log_value'))} / "
                  f"{fmt_seconds(sq.get('create_run'))}", "-", "")]
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="synthetic runs to generate (default 10000)")
    ap.add_argument("--store", default=None, help="generate into this folder (must not exist) and keep it")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of each command timing (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mlflow-python", default=None, help="a Python with MLflow installed, to compare")
    ap.add_argument("--mlflow-runs", type=int, default=None,
                    help="runs to load into MLflow for the large search (default: --runs)")
    ap.add_argument("--mlflow-budget", type=float, default=300.0,
                    help="seconds MLflow may spend logging runs for the large search (default 300)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.repeats < 1:
        ap.error(f"--runs and --repeats must be >= 1, got {args.runs} and {args.repeats}")
    if args.mlflow_python and not Path(args.mlflow_python).exists():
        ap.error(f"--mlflow-python {args.mlflow_python}: no such file")
    store = Path(args.store) if args.store else None
    if store is not None and store.exists():
        ap.error(f"--store {store} exists; give a new folder")
    machine.print_header("bench_store.py", ceiling=False)

    tmp = Path(tempfile.mkdtemp(prefix="nnexp-bench-"))
    try:
        ours, theirs, notes = measure(store or tmp / "runs", tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print_table(table_rows(args.runs, ours, theirs))
    if theirs.get("version"):
        notes.append(f"MLflow {theirs['version']} (`import mlflow`: {theirs['import_s']:.1f} s, not in its "
                     "in-process figures); its runs got the same params, per-epoch metrics and final metrics")
    for note in notes + theirs.get("notes", []):
        print(f"- {note}")


def measure(store: Path, tmp: Path, args) -> tuple[dict, dict, list[str]]:
    ours, notes = {}, []
    n = args.runs
    print(f"generating {n:,} runs in {store} ...", flush=True)
    ours["generate"] = timed(lambda: generate(store, n, args.seed))

    warnings = []
    ours["cold_index"] = timed(lambda: RunStore(store).records(warn=warnings.append))
    records = RunStore(store).records(warn=warnings.append)
    if len(records) != n or warnings:
        raise SystemExit(f"expected {n} clean records, got {len(records)} and warnings {warnings[:3]}")
    touch_runs(store, 100)
    ours["incremental"] = timed(lambda: RunStore(store).records())
    # Files changed in the last RACY_NS are re-read at every listing (their mtime
    # may not have ticked yet); wait that out so that the timings below are warm.
    time.sleep(RACY_NS / 1e9 + 0.2)
    RunIndex(store).sync()
    print(f"  generated in {ours['generate']:.1f} s, cold index {ours['cold_index']:.2f} s", flush=True)

    ours["runs_cmd"] = command_seconds(["runs", "--store", str(store)], args.repeats) or "failed"
    ours["runs_json_cmd"] = command_seconds(["runs", "--json", "--store", str(store)], args.repeats) or "failed"
    if has_command("compare"):
        ours["compare_cmd"] = (command_seconds(["compare", "--where", WHERE, "--store", str(store)], args.repeats)
                               or "failed")
    else:
        ours["compare_cmd"] = "skipped"
        notes.append("`nnexp compare` does not exist in this checkout yet: its row is skipped")
    print("  commands timed", flush=True)

    # the first 1,000 runs (the same ones MLflow gets) in a store of their own
    small = min(1000, n)
    small_store = tmp / "runs-small"
    small_store.mkdir()
    for r in records[:small]:
        shutil.copytree(r["path"], small_store / r["id"])
    RunStore(small_store).records()
    ours["n_small"] = small
    for key, where in (("small", small_store), ("large", store)):
        ours[f"frame_all_{key}"], _ = frame_seconds(where, None, args.repeats)
        ours[f"frame_where_{key}"], ours[f"matched_{key}"] = frame_seconds(where, WHERE, args.repeats)
    ours["log_epoch"] = logging_overhead(tmp / "logging-store")
    ours["create"] = creation_seconds(tmp / "create-store", base_configs()["mlp", "adamw"])
    print(f"  logging {ours['log_epoch'] * 1e3:.2f} ms per epoch, run creation {ours['create'] * 1e3:.1f} ms",
          flush=True)

    theirs = {}
    if args.mlflow_python:
        theirs = run_mlflow(args.mlflow_python, records, tmp, small, args.mlflow_runs or n, args.mlflow_budget) or {}
        if not theirs:
            notes.append("MLflow measurement failed: see the output above")
    else:
        notes.append("MLflow not measured (give --mlflow-python PATH, an interpreter with mlflow installed)")
    return ours, theirs, notes


def frame_seconds(store: Path, where: str | None, repeats: int) -> tuple[float, int]:
    """Best seconds of ``nnexp.load_runs(store, where)`` (warm index) and its row count.

    Falls back to records filtered in Python where load_runs does not exist yet.
    """
    import nnexp

    try:
        load = nnexp.load_runs
    except AttributeError:
        def load(store, where=None):
            recs = RunStore(store).records()
            if where:
                recs = [r for r in recs if r["params"].get("optimizer.name") == "adam"
                        and r["metrics"].get("val_accuracy", 0) > 0.97]
            return recs
    load(store, where=where)  # imports pandas outside the timing
    rows = []
    seconds = min(timed(lambda: rows.append(len(load(store, where=where)))) for _ in range(repeats))
    return seconds, rows[-1]


if __name__ == "__main__":
    main()
