"""A small run store for the dashboard's tests, made through the runs' own lifecycle (nnexp.tracking.Run).

    build(root) -> the ids of what it made

Completed runs over a two-value learning rate x three seeds (a sweep with its
folder, plan and state), a run that is still training (its process is this
one), a run whose process is gone (dead), a failed run with a traceback, a run
whose name, tags, notes and config strings are HTML, diagnostics.csv in the
long format, a PNG in plots/, and a symbolic link in a run folder that leads
out of the store.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

from nnexp.config import dump_yaml
from nnexp.tracking import RunStore
from nnexp.tracking.sweeps import SweepFolder

HOSTILE = "<img src=x onerror=alert(1)>"
LAYERS = [{"type": "flatten"}, {"type": "dense", "units": 16}, {"type": "relu"}, {"type": "dense", "units": 10}]
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_norm", "update_ratio")
SWEEP_ID = "lr-seeds-1a2b3c4d"


def config(lr: float, seed: int, name: str, tags=(), notes: str = "", epochs: int = 3) -> str:
    cfg = {"data": {"dataset": "mnist", "val_size": 1000, "batch_size": 64},
           "model": {"layers": LAYERS}, "optimizer": {"name": "adam", "lr": lr},
           "train": {"epochs": epochs, "seed": seed}, "tracking": {"name": name, "tags": list(tags)}}
    if notes:
        cfg["notes"] = notes  # a config string that the run page shows among the parameters
    return dump_yaml(cfg)


def epoch_row(epoch: int, quality: float) -> dict:
    acc = quality - 0.2 * math.exp(-epoch)
    return {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "train_accuracy": acc + 0.01, "val_loss": 1.1 - acc,
            "val_accuracy": acc, "lr": 0.001, "seconds": 1.5}


def diagnostics_csv(epochs: int) -> str:
    """The long format: epoch,layer,name,stat,value; layer 2's activations, layers 1 and 3's weights."""
    lines = ["epoch,layer,name,stat,value"]
    for epoch in range(1, epochs + 1):
        for stat in STATS[:4]:
            value = {"act_mean": 0.3 + 0.01 * epoch, "act_std": 0.5, "dead_fraction": 0.1 / epoch,
                     "saturated_fraction": 0.0}[stat]
            lines.append(f"{epoch},2,relu,{stat},{value!r}")
        for layer in (1, 3):
            for stat, value in (("grad_norm", 0.5 / epoch / layer), ("weight_norm", 3.0 + epoch * layer),
                                ("update_ratio", 1e-3 / epoch)):
                lines.append(f"{epoch},{layer},{layer}.W,{stat},{value!r}")
    return "\n".join(lines) + "\n"


def png(width: int = 4, height: int = 3) -> bytes:
    """A tiny valid grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    raw = b"".join(b"\x00" + bytes([128] * width) for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def make_run(store: RunStore, name: str, lr: float, seed: int, epochs: int, quality: float, t: float,
             status: str | None = "completed", tags=(), notes: str = "", extra: dict | None = None, run_id=None,
             reason: str | None = None):
    run = store.attach(run_id) if run_id else store.create(name)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(config(lr, seed, name, tags, notes, epochs=max(epochs, 1)))
    run.start(name, started_at=t, seed=seed, tags=list(tags), epochs_planned=max(epochs, 1), params=12730,
              dataset="mnist", **(extra or {}))
    for epoch in range(1, epochs + 1):
        row = epoch_row(epoch, quality)
        run.log_epoch(row)
        run.update_summary(epochs_completed=epoch, final_val_accuracy=row["val_accuracy"],
                           final_val_loss=row["val_loss"])
    if status is not None:
        run.finish(status, reason=reason, test_accuracy=quality, train_seconds=4.5)
    return run


def build(root: Path) -> dict:
    """Make the store in ``root``; returns {"sweep": [ids], "running", "dead", "failed", "hostile", "plain"}."""
    store = RunStore(root)
    made: dict = {"sweep": []}
    plan = []
    t = 1_767_000_000.0
    for trial, (lr, seed) in enumerate([(lr, seed) for lr in (0.001, 0.01) for seed in (0, 1, 2)]):
        run_id = f"{SWEEP_ID}-t{trial:03d}"
        quality = {0.001: 0.93, 0.01: 0.96}[lr] + 0.004 * seed
        make_run(store, f"lr-seeds-t{trial:03d}", lr, seed, 3, quality, t + trial, run_id=run_id,
                 extra={"sweep": SWEEP_ID, "sweep_name": "lr-seeds", "trial": trial,
                        "trial_params": {"optimizer.lr": lr}, "attempt": 1})
        plan.append({"index": trial, "run": run_id, "params": {"optimizer.lr": lr}, "seed": seed})
        made["sweep"].append(run_id)
    plan.append({"index": 6, "run": f"{SWEEP_ID}-t006", "params": {"optimizer.lr": 0.1}, "seed": 0})  # not started
    folder = SweepFolder(root, SWEEP_ID)
    folder.make()
    folder.write_spec("name: lr-seeds\nbase: base.yaml\nparameters:\n  optimizer.lr: [0.001, 0.01, 0.1]\n")
    folder.write_plan(plan)
    folder.write_state({"id": SWEEP_ID, "name": "lr-seeds", "status": "incomplete", "method": "grid",
                        "metric": "val_accuracy", "goal": "maximize", "trials": 7, "counts": {"completed": 6},
                        "best": {"trial": 5, "run": made["sweep"][5], "value": 0.968}})

    plain = make_run(store, "plain", 0.002, 0, 4, 0.95, t + 10, tags=["baseline"])
    (plain.path / "plots").mkdir()
    (plain.path / "plots" / "learning_curves.png").write_bytes(png())
    (plain.path / "diagnostics.csv").write_text(diagnostics_csv(4))
    os.symlink("/etc/passwd", plain.path / "plots" / "escape.png")  # leads out of the store
    os.symlink("../../", plain.path / "up")
    made["plain"] = plain.id

    hostile = make_run(store, HOSTILE, 0.003, 0, 2, 0.9, t + 20, status="failed", tags=[HOSTILE, "ok"],
                       notes=HOSTILE, reason=HOSTILE)
    hostile.error_path.write_text(f"Traceback (most recent call last):\nValueError: {HOSTILE}\n")
    made["hostile"] = hostile.id

    running = make_run(store, "training", 0.002, 1, 2, 0.94, t + 30, status=None)
    made["running"] = running.id  # its pid is this process: live_status says running while the tests run

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = make_run(store, "killed", 0.002, 2, 1, 0.9, t + 40, status=None)
    summary = json.loads(dead.summary_path.read_text())
    summary["pid"] = int(gone.stdout)  # a process that has exited: the run shows as dead
    dead.summary_path.write_text(json.dumps(summary))
    made["dead"] = dead.id
    return made
