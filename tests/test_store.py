"""The run store: folders, atomic files, listing and run references."""

import json
import os

import pytest

from nnexp.atomic import atomic_write_text
from nnexp.tracking import RunNotFound, RunStore


def make_run(store, name, start_time=None, **summary):
    run = store.create(name)
    run.start(name, started_at=start_time, **summary)
    run.finish("completed")
    return run


def test_create_makes_distinct_folders(tmp_path):
    store = RunStore(tmp_path / "runs")
    a, b = store.create("x"), store.create("x")
    assert a.path != b.path and a.path.is_dir() and b.path.is_dir()
    assert a.path.parent == store.root


def test_run_names_are_sanitised_inside_the_store(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create("../../etc/passwd")
    assert run.path.parent == store.root
    assert ".." not in run.path.name and "/" not in run.path.name


def test_metrics_rows_append_with_header(tmp_path):
    run = RunStore(tmp_path).create("m")
    run.log_epoch({"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.9})
    run.log_epoch({"epoch": 2, "train_loss": 0.25})
    lines = run.metrics_path.read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds"
    assert lines[1] == "1,0.5,,,0.9,,"
    assert lines[2].startswith("2,0.25,")


def test_summary_is_replaced_atomically(tmp_path):
    run = RunStore(tmp_path).create("s")
    run.start("s", a=1)
    run.finish("completed")
    summary = json.loads(run.summary_path.read_text())
    assert summary["status"] == "completed" and summary["a"] == 1 and summary["ended"] >= summary["started"]
    assert [p.name for p in run.path.iterdir()] == ["summary.json"]  # no temp files left


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"


def test_listing_skips_damaged_runs_with_a_warning(tmp_path):
    store = RunStore(tmp_path)
    good = make_run(store, "good")
    bad = store.create("bad")
    bad.summary_path.write_text("{not json")
    warnings = []
    infos = store.runs(warn=warnings.append)
    assert [i.id for i in infos] == [good.id]
    assert len(warnings) == 1 and bad.id in warnings[0]


def test_resolve_by_id_prefix_name_and_latest(tmp_path):
    store = RunStore(tmp_path)
    a = make_run(store, "alpha")
    b = make_run(store, "beta")
    assert store.resolve(a.id).path == a.path
    assert store.resolve("latest").path == b.path
    assert store.resolve("beta").path == b.path
    assert store.resolve(b.id[:-2]).path == b.path  # "...-beta-3f" is a unique prefix


@pytest.mark.parametrize("ref", ["../x", "/etc", "a/b", "", "x\x00y", ".hidden"])
def test_resolve_rejects_refs_that_could_escape(tmp_path, ref):
    store = RunStore(tmp_path)
    make_run(store, "a")
    with pytest.raises(RunNotFound, match="not a valid run id"):
        store.resolve(ref)


def test_resolve_missing_run(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(RunNotFound, match="no runs"):
        store.resolve("abc")
    make_run(store, "a")
    with pytest.raises(RunNotFound, match="no run 'zzz'"):
        store.resolve("zzz")


def test_a_running_run_whose_process_is_gone_shows_as_dead(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from nnexp.tracking import live_status

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    here = socket.gethostname()
    assert live_status({"status": "running", "host": here, "pid": int(gone)}) == "dead"
    assert live_status({"status": "running", "host": here, "pid": os.getpid()}) == "running"
    assert live_status({"status": "running", "host": "elsewhere", "pid": int(gone)}) == "running"
    assert live_status({"status": "completed", "host": here, "pid": int(gone)}) == "completed"


def test_runs_started_in_the_same_second_list_in_start_order(tmp_path):
    store = RunStore(tmp_path)
    runs = [make_run(store, "same", start_time=1000.0 + i / 10) for i in range(5)]
    assert [i.id for i in store.runs()] == [r.id for r in runs]
    assert store.resolve("latest").id == runs[-1].id


# ------------------------------------------------------------ the index --


def index_row(store, run_id):
    import sqlite3

    from nnexp.tracking.index import INDEX_NAME

    with sqlite3.connect(store.root / INDEX_NAME) as conn:
        return conn.execute("SELECT summary_mtime, summary_size, summary FROM runs WHERE id = ?",
                            (run_id,)).fetchone()


def test_records_and_runs_list_the_same_runs(tmp_path):
    store = RunStore(tmp_path)
    made = [make_run(store, f"r{i}", start_time=float(i)) for i in range(3)]
    recs = store.records()
    assert [r["id"] for r in recs] == [r.id for r in made] == [i.id for i in store.runs()]
    assert [i.path for i in store.runs()] == [r.path for r in made]
    assert recs[0]["summary"]["name"] == "r0" and "params" in recs[0] and "metrics" in recs[0]
    assert [r["id"] for r in store.records(reindex=True)] == [r.id for r in made]


def test_status_changes_reach_the_index_at_once_but_epochs_do_not(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("live")
    run.start("live")
    assert json.loads(index_row(store, run.id)[2])["status"] == "running"  # no listing needed
    before = index_row(store, run.id)
    run.log_epoch({"epoch": 1, "train_loss": 0.5})
    run.update_summary(epochs_completed=1)
    assert index_row(store, run.id) == before  # per-epoch writes leave the index alone
    assert store.records()[0]["summary"]["epochs_completed"] == 1  # ... and a listing still sees them
    run.finish("completed")
    assert json.loads(index_row(store, run.id)[2])["status"] == "completed"


def test_a_broken_index_never_stops_a_run(tmp_path, monkeypatch, capsys):
    from nnexp.tracking.index import INDEX_NAME, IndexObserver

    monkeypatch.setattr(IndexObserver, "warned", False)
    store = RunStore(tmp_path)
    (tmp_path / INDEX_NAME).mkdir()  # no SQLite file can live there
    runs = [store.create(f"r{i}") for i in range(2)]
    for run in runs:
        run.start(run.id, started_at=1.0)
        run.finish("completed")
    assert json.loads(runs[1].summary_path.read_text())["status"] == "completed"
    err = capsys.readouterr().err
    assert err.count("cannot update the run index") == 1  # warned once, not at every write
    warnings = []
    assert sorted(r["id"] for r in store.records(warn=warnings.append)) == sorted(r.id for r in runs)
    assert len(warnings) == 1 and "reading the run folders directly" in warnings[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fsynced files through /proc")
def test_epochs_are_not_fsynced_but_status_changes_are(tmp_path, monkeypatch):
    run = RunStore(tmp_path).create("sync")
    run.start("sync")
    synced, real_fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    for epoch in (1, 2):
        run.log_epoch({"epoch": epoch, "train_loss": 0.5})
        run.update_summary(epochs_completed=epoch)
    assert synced == []  # per-epoch writes stay cheap
    run.finish("completed")
    # the metrics rows, then the new summary.json before it replaces the old one, then the rename
    assert synced[0] == str(run.metrics_path) and ".summary.json" in synced[1] and synced[2] == str(run.path)
    assert len(synced) == 3
    assert run.metrics_path.read_text().count("\n") == 3  # header and both rows, none lost
