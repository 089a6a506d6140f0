"""A run's lifecycle: every status change goes through the run, is written and re-indexed at once."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnexp.sweep.executor import TrialEvent
from nnexp.sweep.runner import SweepRunner
from nnexp.tracking import RunObserver, RunStore
from nnexp.tracking.index import INDEX_NAME
from nnexp.tracking.run import ATTEMPTS, DIAGNOSTIC_COLUMNS, ERROR, SUMMARY, prepare_attempt, process_alive


def indexed(store: RunStore, run_id: str) -> dict | None:
    """The summary the store's index holds for ``run_id`` (None if no row), read without a listing."""
    with sqlite3.connect(store.root / INDEX_NAME) as conn:
        row = conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else json.loads(row[0])


class Recorder(RunObserver):
    def __init__(self):
        self.events = []

    def file_changed(self, run, name):
        self.events.append(("file", name))

    def status_changed(self, run, status):
        self.events.append(("status", status))


def test_every_status_change_is_indexed_at_once(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("life")
    run.start("life", seed=3)
    assert indexed(store, run.id)["status"] == "running"
    run.update_summary(epochs_completed=1)
    assert indexed(store, run.id).get("epochs_completed") is None  # progress is left to the listings
    run.finish("interrupted", "interrupted by the user (Ctrl-C)")
    assert indexed(store, run.id)["reason"] == "interrupted by the user (Ctrl-C)"
    store.open(run.id).resume(resumed_from_epoch=1)
    assert indexed(store, run.id)["status"] == "running" and indexed(store, run.id)["resumes"] == 1
    resumed = store.open(run.id)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        resumed.record_crash(exc)
    row = indexed(store, run.id)
    assert (row["status"], row["reason"], row["seed"]) == ("failed", "RuntimeError: boom", 3)
    assert "RuntimeError: boom" in (run.path / ERROR).read_text() and "Traceback" in (run.path / ERROR).read_text()
    assert json.loads(run.summary_path.read_text()) == row


def test_a_dead_process_s_run_is_marked_through_the_index(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("orphan")
    run.start("orphan")
    assert store.mark_stopped(run.id, "failed", "the worker process died (exit code -9)")
    row = indexed(store, run.id)
    assert (row["status"], row["reason"]) == ("failed", "the worker process died (exit code -9)") and row["ended"]
    assert not store.mark_stopped(run.id, "interrupted", "again")  # only a run still marked running changes
    assert indexed(store, run.id)["status"] == "failed"
    assert not store.mark_stopped("never-made", "failed", "x")
    (tmp_path / "bare").mkdir()
    assert not store.mark_stopped("bare", "failed", "x")  # a prepared folder without a summary


def test_the_sweep_driver_marks_a_trial_whose_worker_died(tmp_path, monkeypatch):
    """The driver hears of a dead worker as an event from its executor, and records
    the trial's end through the run store (so the index follows)."""
    store = RunStore(tmp_path / "runs")
    spec = SimpleNamespace(id="sw", name="sw", halving=None, metric="val_accuracy", goal="maximize",
                           path=tmp_path / "spec.yaml", base_path=tmp_path / "base.yaml", method="grid",
                           seeds=[None], multi_objective=False, script=None)
    spec.path.write_text("name: sw\n")
    trial = SimpleNamespace(index=0, params={"optimizer.lr": 0.1}, seed=0, config={"tracking": {}},
                            run_id=lambda sweep_id: f"{sweep_id}-t000", label=lambda: "trial 0")

    class DyingExecutor:
        summary_fields, stopping = {}, "stopping"

        def run(self, payloads, count, rungs):
            for payload in payloads:
                path = Path(payload["run_path"])
                yield TrialEvent(payload["index"], "running")
                # The worker starts the trial's run, then is killed before it can record its end.
                RunStore(path.parent).attach(path.name).start(payload["config"]["tracking"]["name"],
                                                              **payload["extra_summary"])
                assert indexed(store, path.name)["status"] == "running"
                yield TrialEvent(payload["index"], "failed", None, "the worker process died (exit code -9)")

        def stop(self):
            return []

        def close(self):
            pass

    runner = SweepRunner(spec, [trial], store.root, workers=1, log=lambda *a: None, progress=False)
    monkeypatch.setattr(runner, "_executor", DyingExecutor)
    monkeypatch.setattr(runner, "_resume", lambda: [trial])
    result = runner.run()
    assert result.counts == {"failed": 1}
    row = indexed(store, "sw-t000")
    assert (row["status"], row["reason"]) == ("failed", "the worker process died (exit code -9)")
    assert (row["sweep"], row["trial"], row["attempt"]) == ("sw", 0, 1)
    state = json.loads((store.root / "sweeps" / "sw" / "sweep.json").read_text())
    assert state["status"] == "incomplete" and state["counts"] == {"failed": 1}


def test_observers_hear_every_file_and_status(tmp_path):
    recorder = Recorder()
    run = RunStore(tmp_path).attach("watched")
    run.observers.append(recorder)
    run.path.mkdir()
    run.write_config("model: {}\n")
    run.start("watched")
    run.log_epoch({"epoch": 1, "train_loss": 0.5})
    run.update_summary(epochs_completed=1)
    run.finish("completed")
    assert recorder.events == [("file", "config.yaml"), ("file", SUMMARY), ("status", "running"),
                               ("file", "metrics.csv"), ("file", SUMMARY), ("file", SUMMARY),
                               ("status", "completed")]


def test_status_changes_only_through_the_lifecycle(tmp_path):
    run = RunStore(tmp_path).create("strict")
    with pytest.raises(ValueError, match="through start, resume, finish"):
        run.update_summary(status="completed")
    with pytest.raises(ValueError, match="a run ends as one of"):
        run.finish("running")
    run.start("strict")
    with pytest.raises(ValueError, match="has started before"):
        run.start("strict")
    run.finish("completed")
    with pytest.raises(ValueError, match="nothing to resume"):
        run.resume()


def test_resume_keeps_the_crash_report_of_the_attempt_it_resumes(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("again")
    run.start("again")
    try:
        raise OSError(28, "No space left on device")
    except OSError as exc:
        run.record_crash(exc)
    recorder = Recorder()
    resumed = store.open(run.id)
    resumed.observers.append(recorder)
    resumed.resume()
    assert not (run.path / ERROR).exists()
    assert "No space left" in (run.path / "error.before-resume-1.txt").read_text()
    assert recorder.events[:2] == [("file", ERROR), ("file", "error.before-resume-1.txt")]


def test_a_new_attempt_sets_the_old_one_aside(tmp_path):
    path = tmp_path / "sw-t001"
    assert prepare_attempt(path) == 1 and path.is_dir()
    assert prepare_attempt(path) == 1  # still empty: the same attempt
    run = RunStore(tmp_path).attach(path.name)
    run.start("t", attempt=1)
    run.finish("failed", "boom")
    assert prepare_attempt(path) == 2
    assert sorted(p.name for p in path.iterdir()) == [ATTEMPTS]
    assert json.loads((path / ATTEMPTS / "1" / SUMMARY).read_text())["reason"] == "boom"
    assert sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file()) == \
        [f"{ATTEMPTS}/1/{SUMMARY}"]


def test_status_changes_shipped_from_a_remote_node_are_indexed_as_they_arrive(tmp_path):
    from nnexp.sweep.ray_executor import write_files

    store = RunStore(tmp_path)
    (tmp_path / "r1").mkdir()
    summary = {"id": "r1", "name": "remote", "status": "running", "start_time": 1.0}
    write_files(tmp_path, [("r1", SUMMARY, json.dumps(summary).encode())])
    assert indexed(store, "r1")["status"] == "running"
    write_files(tmp_path, [("r1", SUMMARY, json.dumps({**summary, "status": "completed"}).encode())])
    assert indexed(store, "r1")["status"] == "completed"


def test_a_run_s_files_are_the_documented_names_in_its_folder(tmp_path):
    run = RunStore(tmp_path).create("files")
    assert (run.model_path, run.checkpoint_path, run.plots_dir, run.summary_path) == (
        run.path / "model.npz", run.path / "checkpoint.npz", run.path / "plots", run.path / SUMMARY)


def test_start_records_the_given_start_time_or_now(tmp_path):
    store = RunStore(tmp_path)
    assert store.create("then").start("then", started_at=1234567890.5)["start_time"] == 1234567890.5
    before = time.time()
    assert before <= store.create("now").start("now")["start_time"] <= time.time()


def test_rewritten_metrics_hold_exactly_the_rows_given(tmp_path):
    run = RunStore(tmp_path).create("metrics")
    run.start("metrics")
    rows = [{"epoch": 1, "train_loss": 1 / 3 + 1, "val_accuracy": 0.1}, {"epoch": 2, "train_loss": 1 / 3 + 2}]
    run.rewrite_metrics(rows)
    read = list(csv.DictReader(run.metrics_path.open()))
    assert [int(r["epoch"]) for r in read] == [1, 2]
    assert [float(r["train_loss"]) for r in read] == [1 / 3 + 1, 1 / 3 + 2]  # every bit of a float
    assert [r["val_accuracy"] for r in read] == ["0.1", ""]  # a value not given is empty
    run.rewrite_metrics([])
    assert not run.metrics_path.exists()


def test_truncated_diagnostics_keep_the_epochs_up_to_the_checkpoint(tmp_path):
    run = RunStore(tmp_path).create("diagnostics")
    run.start("diagnostics")
    for epoch in (1, 2, 3):
        run.log_diagnostics([(epoch, 0, "dense", "weight_norm", 0.5 * epoch)])
    with open(run.diagnostics_path, "a") as f:
        f.write("4,0,den")  # the half-written end of a killed process's file
    run.truncate_diagnostics(2)
    lines = list(csv.reader(run.diagnostics_path.open()))
    assert lines == [list(DIAGNOSTIC_COLUMNS), ["1", "0", "dense", "weight_norm", "0.5"],
                     ["2", "0", "dense", "weight_norm", "1.0"]]
    run.truncate_diagnostics(0)
    assert not run.diagnostics_path.exists()


def test_a_zombie_process_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not process_alive(child.pid)  # exited, not yet reaped
    finally:
        child.wait()
    assert process_alive(os.getpid())
