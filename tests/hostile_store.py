"""A run store made to hurt its readers, for the tests of every command that reads a store and for
benchmarks/probe_ui.py.

    made = build(root, outside)   # {"good": [ids], "sweep": id, "damaged": {id: why}, ...}
    release(root)                 # unblock any reader stuck on one of its named pipes

Next to a few ordinary runs (a sweep of four trials, made through the runs' own
lifecycle), run folders whose files are named pipes (summary.json,
config.yaml, metrics.csv, error.txt, diagnostics.csv, annotations.json),
links to /dev/zero, sparse 40 GB files, a YAML alias bomb, JSON nested a
hundred thousand levels deep (and, parseable, a thousand), a summary.json
that claims another run's id and path, a folder that is a symbolic link to a
run outside the store, a file linked to a sibling folder whose name begins
with the run's name, and sweeps whose lock, state or plan is a named pipe.
The sweep's metric is a parameter whose name is markup, and so are a run's
diagnostics' layer and statistic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import ui_store

from nnexp.tracking import RunStore
from nnexp.tracking.sweeps import SweepFolder

# A metric name that plotly.js would make into a link, with a template field in it.
MARKUP = '<a href="https://evil.example/">click%{y}</a>'
SWEEP_ID = "markup-metric-5e5e5e5e"
HUGE = 40 << 30  # bytes of a sparse file: nothing on disk, everything to a reader that reads it whole

BOMB = "".join(f"{chr(97 + k)}: &{chr(97 + k)} [" + ", ".join([f"*{chr(96 + k)}" if k else '"lol"'] * 9) + "]\n"
               for k in range(9))  # 9 ** 9 strings once expanded, in 400 bytes


def fifo(path: Path) -> Path:
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def sparse(path: Path, size: int = HUGE) -> Path:
    if path.exists():
        path.unlink()
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def build(root: Path, outside: Path) -> dict:
    """Make the store in ``root`` (and a run outside it, in ``outside``); returns what is where.

    ``good``: the ordinary runs (sweep trials first); ``shown``: folders that
    listings show beside them (a file of theirs is hostile, the record is
    not); ``damaged``: {folder: what a listing's warning says}; ``linked``:
    the folder that is a link out of the store; ``impostor``, ``claimed``: a
    run whose summary claims the id of ``claimed``; ``prefix``: the run with a
    file linked into its sibling ``prefix + 'def'``; ``sweep``, ``bad_sweeps``.
    """
    store = RunStore(root)
    t = 1_767_000_000.0
    made: dict = {"good": [], "shown": [], "damaged": {}}
    plan = []
    for trial, (value, seed) in enumerate([(0.25, 0), (0.25, 1), (0.75, 0), (0.75, 1)]):
        run_id = f"{SWEEP_ID}-t{trial:03d}"
        run = ui_store.make_run(store, f"trial-{trial}", 0.001, seed, 2, 0.9 + 0.01 * trial, t + trial, run_id=run_id,
                                extra={"sweep": SWEEP_ID, "sweep_name": "markup-metric", "trial": trial,
                                       "trial_params": {MARKUP: value}})
        plan.append({"index": trial, "run": run.id, "params": {MARKUP: value}, "seed": seed})
        made["good"].append(run.id)
    folder = SweepFolder(root, SWEEP_ID)
    folder.make()
    folder.write_plan(plan)
    folder.write_state({"id": SWEEP_ID, "name": "markup-metric", "status": "completed", "method": "grid",
                        "metric": f"param.{MARKUP}", "goal": "maximize", "trials": 4, "counts": {"completed": 4}})
    made["sweep"] = SWEEP_ID

    def run(name: str, **kwargs) -> Path:
        made_run = ui_store.make_run(store, name, 0.002, 0, 2, 0.9, t + 10 + len(made["shown"]) + len(made["damaged"]),
                                     run_id=name, **kwargs)
        return made_run.path

    plain = run("plain")
    made["good"].append(plain.name)

    # A run folder's record files in forms that hang, exhaust or confuse a reader: the run is damaged.
    damaged = {
        "pipe-summary": ("summary.json", fifo, "not a regular file but a named pipe"),
        "pipe-config": ("config.yaml", fifo, "not a regular file but a named pipe"),
        "pipe-metrics": ("metrics.csv", fifo, "not a regular file but a named pipe"),
        "pipe-annotations": ("annotations.json", fifo, "not a regular file but a named pipe"),
        "zero-metrics": ("metrics.csv", lambda p: os.symlink("/dev/zero", p), "not a regular file but a symbolic link"),
        "huge-metrics": ("metrics.csv", sparse, "too large"),
        "huge-summary": ("summary.json", sparse, "too large"),
        "bomb-config": ("config.yaml", lambda p: p.write_text(BOMB), "values once its aliases are expanded"),
        "deep-summary": ("summary.json", lambda p: p.write_text("[" * 100_000), "nested more than 64 levels deep"),
        "nested-summary": ("summary.json", lambda p: p.write_text('{"a": ' * 1000 + "1" + "}" * 1000),
                           "nested more than 64 levels deep"),
    }
    for name, (file, make, why) in damaged.items():
        path = run(name)
        target = path / file
        if target.exists():
            target.unlink()
        make(target)
        made["damaged"][name] = why

    # Files the run page shows or links, hostile in themselves: the run is listed, the file refused.
    for name, file, make in (("pipe-error", "error.txt", fifo), ("pipe-diagnostics", "diagnostics.csv", fifo),
                             ("huge-diagnostics", "diagnostics.csv", sparse), ("huge-plot", "plots/big.png", sparse),
                             ("zero-error", "error.txt", lambda p: os.symlink("/dev/zero", p))):
        path = run(name, status="failed" if "error" in name else "completed")
        (path / "plots").mkdir(exist_ok=True)
        make(path / file)
        made["shown"].append(name)

    # Diagnostics whose layer names and statistics are markup: the run page's charts show them as text.
    markup = run("markup-diagnostics")
    (markup / "diagnostics.csv").write_text("epoch,layer,name,stat,value\n" + "".join(
        f"{e},1,{MARKUP.replace(',', ' ')},{MARKUP.replace(',', ' ')},{0.5 / e}\n" for e in (1, 2)))
    made["shown"].append(markup.name)

    # A summary that claims to be another run, and where it lives.
    impostor = run("impostor")
    summary = json.loads((impostor / "summary.json").read_text())
    summary.update(id=plain.name, path=str(plain))
    (impostor / "summary.json").write_text(json.dumps(summary))
    made["impostor"], made["claimed"] = impostor.name, plain.name
    made["shown"].append(impostor.name)

    # A folder that is a link to a run outside the store.
    outside.mkdir(parents=True, exist_ok=True)
    elsewhere = ui_store.make_run(RunStore(outside), "elsewhere", 0.5, 0, 2, 0.99, t + 90, run_id="elsewhere",
                                  tags=["outside"])
    os.symlink(elsewhere.path, root / "linked")
    made["linked"] = "linked"

    # A run with a file linked into a sibling folder whose name begins with the run's name.
    prefix = run("abc")
    (root / "abcdef").mkdir()
    (root / "abcdef" / "secret.txt").write_text("the secret of a folder that is not a run\n")
    os.symlink("../abcdef/secret.txt", prefix / "leak.txt")
    made["prefix"] = prefix.name
    made["shown"].append(prefix.name)

    # Sweeps whose lock, state or plan is a named pipe.
    made["bad_sweeps"] = []
    for name, file in (("pipe-lock", "lock"), ("pipe-state", "sweep.json"), ("pipe-plan", "plan.json")):
        sweep_id = f"{name}-0a0a0a0a"
        folder = SweepFolder(root, sweep_id)
        folder.make()
        folder.write_state({"id": sweep_id, "name": name, "status": "running", "method": "grid",
                            "metric": "val_accuracy", "goal": "maximize", "trials": 1})
        folder.write_plan([{"index": 0, "run": made["good"][0], "params": {}, "seed": 0}])
        fifo(folder.path / file)
        made["bad_sweeps"].append(sweep_id)
    return made


def pipes(root: Path) -> list[Path]:
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names
            if Path(folder, name).is_fifo()]


def release(root: Path) -> int:
    """Open every named pipe of the store for writing, once, so that a reader stuck on one
    gets an end of file; returns how many had a reader waiting."""
    released = 0
    for path in pipes(root):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody is reading it
            continue
        os.close(fd)
        released += 1
    return released
