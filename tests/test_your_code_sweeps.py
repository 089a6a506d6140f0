"""Sweeps of your own code: a spec's ``command:`` or ``function:`` (nnexp/sweep/script_trial.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nnexp.tracking.records import make_record
from nnexp.tracking.run import read_summary

# A training script of its own: its score is known from its parameters, and it
# appends one line per start to starts.txt, so that a test can count its runs.
SCRIPT = """\
import argparse, os, sys, time, nnexp
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--hidden", type=int, default=10)
args = parser.parse_args()
with nnexp.init(config={"lr": args.lr, "hidden": args.hidden, "epochs": 9}) as run:
    with open("starts.txt", "a") as f:
        f.write(run.id + "\\n")
    if args.lr < 0:
        sys.exit("the learning rate must be positive")
    for epoch in range(1, run.config["epochs"] + 1):
        time.sleep(float(os.environ.get("EPOCH_SECONDS", "0")))
        score = args.lr * args.hidden / 10 * epoch / 9 + run.config.get("seed", 0) / 1000
        run.log({"epoch": epoch, "val_accuracy": score, "train_loss": 1 - score})
"""

FUNCTION = """\
import time, nnexp

def train(params):
    with nnexp.init(config={"epochs": 9}) as run:
        assert dict(run.config) == {"epochs": 9, **params}, (dict(run.config), params)
        for epoch in range(1, 10):
            score = params["lr"] * params["hidden"] / 10 * epoch / 9
            run.log({"epoch": epoch, "val_accuracy": score})
            run.flush()
            time.sleep(0.4)  # slow enough for the rung to be read before the next epoch
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def sweep(spec: Path, store: Path, *args, check: bool = True, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "nnexp", "sweep", str(spec), "--store", str(store), "-q",
                           "--workers", "2", *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def trials(store: Path) -> list[dict]:
    return [make_record(p) for p in sorted(store.glob("*-t[0-9][0-9][0-9]"))]


def test_a_command_grid_with_seeds_runs_each_trial_as_a_run_with_its_parameters(tmp_path, nnexp):
    write(tmp_path, "train.py", SCRIPT)
    spec = write(tmp_path, "sweep.yaml", """\
        name: own-grid
        command: python train.py --lr {lr} --hidden {hidden}
        metric: val_accuracy
        repeats: 2
        parameters:
          lr: [0.1, 0.3]
          hidden: {values: [10, 20]}
        """)
    store = tmp_path / "runs"
    sweep(spec, store)
    records = trials(store)
    assert len(records) == 8 and {r["summary"]["status"] for r in records} == {"completed"}
    assert sorted((r["params"]["lr"], r["params"]["hidden"], r["params"]["seed"]) for r in records) == sorted(
        (lr, h, s) for lr in (0.1, 0.3) for h in (10, 20) for s in (0, 1))
    assert all(r["summary"]["sweep"].startswith("own-grid-") and r["summary"]["kind"] == "script" for r in records)
    best = max(records, key=lambda r: r["metrics"]["val_accuracy"])
    assert (best["params"]["lr"], best["params"]["hidden"], best["params"]["seed"]) == (0.3, 20, 1)
    state = json.loads(next((store / "sweeps").glob("*/sweep.json")).read_text())
    assert state["status"] == "completed" and state["best"]["value"] == pytest.approx(0.601)
    code, out, err = nnexp("compare", "--store", store, "--sweep", "own-grid", "--json")
    assert code == 0, err
    assert [(r["lr"], r["hidden"], r["runs"]) for r in json.loads(out)] == [(0.3, 20, 2), (0.3, 10, 2), (0.1, 20, 2),
                                                                           (0.1, 10, 2)]


def test_a_failing_command_fails_its_trial_with_its_stderr_and_the_sweep_goes_on(tmp_path):
    write(tmp_path, "train.py", SCRIPT)
    spec = write(tmp_path, "sweep.yaml", """\
        name: own-fail
        command: python train.py --lr {lr}
        parameters:
          lr: [-1.0, 0.2]
        """)
    store = tmp_path / "runs"
    done = sweep(spec, store, check=False)
    assert done.returncode == 1
    bad, good = trials(store)
    assert bad["summary"]["status"] == "failed" and good["summary"]["status"] == "completed"
    assert bad["summary"]["reason"] == "exit status 1: the learning rate must be positive"
    assert "the learning rate must be positive" in (Path(bad["path"]) / "error.txt").read_text()


def test_a_command_that_never_calls_init_fails_saying_so(tmp_path):
    write(tmp_path, "quiet.py", "print('no tracking here')\n")
    spec = write(tmp_path, "sweep.yaml", "command: python quiet.py {x}\nparameters:\n  x: [1]\n")
    store = tmp_path / "runs"
    sweep(spec, store, check=False)
    [record] = trials(store)
    assert record["summary"]["status"] == "failed"
    assert record["summary"]["reason"] == "the trial's code ended without calling nnexp.init()"


def test_a_function_sweep_with_halving_prunes_the_worse_trials_cleanly(tmp_path):
    write(tmp_path, "my_train.py", FUNCTION)
    spec = write(tmp_path, "sweep.yaml", """\
        name: own-halving
        function: my_train.py:train
        metric: val_accuracy
        halving: {min_epochs: 3, eta: 3, max_epochs: 9}
        parameters:
          lr: [0.3, 0.1, 0.2]
          hidden: [10]
        """)
    store = tmp_path / "runs"
    sweep(spec, store, "--workers", "1")  # one at a time: at epoch 3, each later trial is behind lr 0.3
    statuses = {r["params"]["lr"]: r["summary"]["status"] for r in trials(store)}
    assert statuses == {0.3: "completed", 0.1: "pruned", 0.2: "pruned"}
    for record in trials(store):
        if record["params"]["lr"] != 0.3:
            assert 3 <= record["metrics"]["epochs"] < 9  # stopped after the rung, before the end
            assert record["summary"]["reason"].startswith("pruned at epoch 3:")
            assert record["metrics"]["final_val_accuracy"] == pytest.approx(record["params"]["lr"] * record["metrics"]["epochs"] / 9)


def test_a_tpe_sweep_of_a_command_proposes_free_parameters(tmp_path):
    write(tmp_path, "train.py", SCRIPT)
    spec = write(tmp_path, "sweep.yaml", """\
        name: own-tpe
        command: python train.py --lr {lr} --hidden {hidden}
        method: tpe
        n_trials: 6
        startup_trials: 3
        parameters:
          lr: {distribution: loguniform, low: 0.01, high: 1.0}
          hidden: {distribution: int, low: 5, high: 50}
        """)
    store = tmp_path / "runs"
    sweep(spec, store)
    records = trials(store)
    assert len(records) == 6 and all(r["summary"]["status"] == "completed" for r in records)
    assert all(0.01 <= r["params"]["lr"] <= 1.0 and 5 <= r["params"]["hidden"] <= 50 for r in records)
    assert len({r["params"]["lr"] for r in records}) == 6


def test_a_killed_command_sweep_rerun_never_reruns_a_completed_trial(tmp_path):
    write(tmp_path, "train.py", SCRIPT)
    spec = write(tmp_path, "sweep.yaml", """\
        name: own-killed
        command: python train.py --lr {lr}
        parameters:
          lr: [0.1, 0.2, 0.3, 0.4]
        """)
    store = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "nnexp", "sweep", str(spec), "--store", str(store), "-q",
                             "--workers", "1"], env=dict(os.environ, EPOCH_SECONDS="0.15"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once a trial has completed and the next one is running
        done = [p for p in store.glob("*-t00[0-9]") if (p / "summary.json").exists()
                and read_summary(p)["status"] == "completed"]
        if done and len(list(store.glob("*-t00[0-9]/metrics.csv"))) > len(done):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its worker and the trial's process
    proc.wait()
    completed = {p.name for p in store.glob("*-t00[0-9]") if (p / "summary.json").exists()
                 and read_summary(p)["status"] == "completed"}
    assert completed
    sweep(spec, store, "--workers", "1")
    starts = (tmp_path / "starts.txt").read_text().split()
    assert all(starts.count(run_id) == 1 for run_id in completed)  # never started again
    records = trials(store)
    assert len(records) == 4 and {r["summary"]["status"] for r in records} == {"completed"}
    restarted = [r for r in records if r["summary"].get("attempt", 1) > 1]
    assert restarted and all(r["id"] not in completed for r in restarted)


def test_a_command_placeholder_that_is_no_parameter_is_a_spec_error(tmp_path, nnexp):
    spec = write(tmp_path, "sweep.yaml", "command: python train.py --lr {learning_rate}\nparameters:\n  lr: [1]\n")
    code, _, err = nnexp("sweep", spec, "--store", tmp_path / "runs")
    assert code == 2 and "{learning_rate} is not a parameter of the sweep (parameters: lr; also {seed})" in err
