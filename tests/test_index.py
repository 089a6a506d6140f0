"""The SQLite run index: incremental sync, damaged folders, broken index files,
read-only stores, lock contention, concurrent writers and `nnexp runs --reindex`."""

import io
import json
import multiprocessing
import os
import sqlite3
import sys
import time
import traceback

import pytest

import nnexp.tracking.index as index_module
from nnexp.compare.select import RunQuery, select_runs
from nnexp.tracking import RunIndex, RunStore
from nnexp.tracking.index import INDEX_NAME

METRICS_HEADER = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n"
CONFIG = "optimizer: {name: adam, lr: 0.001}\nmodel:\n  layers:\n  - {type: dense, units: 10}\n"


def write_run(root, name, start=1000.0, status="completed", epochs=2, age=True):
    """A run folder written by hand; ``age`` dates its files 10 s back, so the
    index trusts their signatures (fresh files are re-read once, see _trusted)."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(CONFIG)
    rows = "".join(f"{e},0.5,0.9,0.4,{0.9 + e / 100},0.001,1.0\n" for e in range(1, epochs + 1))
    (path / "metrics.csv").write_text(METRICS_HEADER + rows)
    (path / "summary.json").write_text(json.dumps({"id": name, "status": status, "start_time": start}))
    if age:
        make_old(path)
    return path


def make_old(path, seconds=10):
    old = time.time() - seconds
    for name in ("config.yaml", "metrics.csv", "summary.json", ""):  # "": the folder, part of the signature
        if (path / name).exists():
            os.utime(path / name, (old, old))


@pytest.fixture
def reads(monkeypatch):
    """Counts the folders the index reads (calls of make_record)."""
    calls = []
    real = index_module.make_record

    def counting(run_dir):
        calls.append(os.path.basename(run_dir))
        return real(run_dir)

    monkeypatch.setattr(index_module, "make_record", counting)
    return calls


def ids(records):
    return [r["id"] for r in records]


def index_rows(root):
    with sqlite3.connect(root / INDEX_NAME) as conn:
        return dict(conn.execute("SELECT id, error FROM runs").fetchall())


def test_first_sync_builds_the_index_and_sorts_by_start_time(tmp_path):
    write_run(tmp_path, "b", start=1.0)
    write_run(tmp_path, "a", start=2.0)
    write_run(tmp_path, "c", start=2.0)
    (tmp_path / "not-a-run").mkdir()  # no summary.json: not listed, no warning
    warnings = []
    recs = RunIndex(tmp_path).sync(warn=warnings.append)
    assert ids(recs) == ["b", "a", "c"] and warnings == []
    assert recs[0]["path"] == str(tmp_path / "b") and recs[0]["metrics"]["epochs"] == 2
    assert set(index_rows(tmp_path)) == {"a", "b", "c"}


def test_sync_rereads_only_new_and_changed_folders_and_drops_vanished_ones(tmp_path, reads):
    for name in "abc":
        write_run(tmp_path, name)
    index = RunIndex(tmp_path)
    index.sync()
    assert sorted(reads) == ["a", "b", "c"]
    reads.clear()
    assert len(index.sync()) == 3 and reads == []  # nothing changed: nothing read

    with open(tmp_path / "b" / "metrics.csv", "a") as f:  # an epoch appended by a running trainer
        f.write("3,0.1,0.99,0.1,0.99,0.001,1.0\n")
    make_old(tmp_path / "b")
    write_run(tmp_path, "d")
    (tmp_path / "c" / "summary.json").unlink()
    (tmp_path / "c" / "metrics.csv").unlink()
    recs = index.sync()
    assert sorted(reads) == ["b", "d"]
    assert sorted(ids(recs)) == ["a", "b", "d"]
    assert {r["id"]: r["metrics"]["epochs"] for r in recs}["b"] == 3
    assert set(index_rows(tmp_path)) == {"a", "b", "d"}


def test_a_change_within_one_mtime_tick_is_not_missed(tmp_path):
    """Same size, same mtime: only the 'racy' rule makes the second sync re-read."""
    path = write_run(tmp_path, "a", status="running", age=False)
    index = RunIndex(tmp_path)
    assert index.sync()[0]["summary"]["status"] == "running"
    st = os.stat(path / "summary.json")
    (path / "summary.json").write_text(json.dumps({"id": "a", "status": "stopped", "start_time": 1000.0}))
    os.utime(path / "summary.json", ns=(st.st_atime_ns, st.st_mtime_ns))  # as if in the same clock tick
    assert os.stat(path / "summary.json").st_size == st.st_size
    assert index.sync()[0]["summary"]["status"] == "stopped"


def test_summaries_only_listing_matches_full_records(tmp_path):
    for i, name in enumerate("xyz"):
        write_run(tmp_path, name, start=float(i))
    index = RunIndex(tmp_path)
    full = index.sync()
    light = index.sync(full=False)
    assert [(r["id"], r["path"], r["summary"]) for r in full] == [(r["id"], r["path"], r["summary"]) for r in light]
    assert set(light[0]) == {"id", "path", "summary"}


def test_damaged_folders_warn_once_per_listing_and_recover_when_fixed(tmp_path, reads):
    write_run(tmp_path, "good")
    bad = write_run(tmp_path, "bad")
    (bad / "summary.json").write_text("{oops")
    make_old(bad)
    index = RunIndex(tmp_path)
    for _ in range(2):  # the second listing uses the stored error, without reading the folder again
        warnings = []
        assert ids(index.sync(warn=warnings.append)) == ["good"]
        assert len(warnings) == 1 and "bad" in warnings[0] and "invalid summary.json" in warnings[0]
    assert reads.count("bad") == 1
    write_run(tmp_path, "bad", start=2000.0)
    warnings = []
    assert ids(index.sync(warn=warnings.append)) == ["good", "bad"] and warnings == []


def test_missing_index_is_rebuilt_and_rebuild_rereads_everything(tmp_path, reads):
    write_run(tmp_path, "a")
    index = RunIndex(tmp_path)
    index.sync()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{index.path}{suffix}"):
            os.remove(f"{index.path}{suffix}")
    reads.clear()
    assert ids(index.sync()) == ["a"] and reads == ["a"]
    reads.clear()
    assert ids(index.rebuild()) == ["a"] and reads == ["a"]


def test_index_from_another_format_version_is_rebuilt(tmp_path, reads):
    write_run(tmp_path, "a")
    index = RunIndex(tmp_path)
    index.sync()
    with sqlite3.connect(index.path) as conn:
        conn.execute("PRAGMA user_version = 999")
    reads.clear()
    assert ids(index.sync()) == ["a"] and reads == ["a"]
    with sqlite3.connect(index.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] != 999


def test_corrupt_index_file_is_rebuilt_with_a_warning(tmp_path):
    write_run(tmp_path, "a")
    write_run(tmp_path, "b", start=2000.0)
    (tmp_path / INDEX_NAME).write_bytes(b"this is not a database, just bytes" * 100)
    warnings = []
    assert ids(RunIndex(tmp_path).sync(warn=warnings.append)) == ["a", "b"]
    assert len(warnings) == 1 and "damaged" in warnings[0]
    assert set(index_rows(tmp_path)) == {"a", "b"}  # a working index again
    warnings.clear()
    assert ids(RunIndex(tmp_path).sync(warn=warnings.append)) == ["a", "b"] and warnings == []


def test_rows_with_damaged_json_are_rebuilt_from_their_folders(tmp_path, reads):
    for name in "ab":
        write_run(tmp_path, name, start=1000.0 + ord(name))
    index = RunIndex(tmp_path)
    index.sync()
    with sqlite3.connect(index.path) as conn:  # what a torn write after a power cut could leave
        conn.execute("UPDATE runs SET rest = '{\"params\": {' WHERE id = 'b'")
    reads.clear()
    recs = index.sync()
    assert ids(recs) == ["a", "b"] and recs[1]["metrics"]["epochs"] == 2 and reads == ["b"]
    reads.clear()
    assert ids(index.sync()) == ["a", "b"] and reads == []  # the row was repaired


def test_unwritable_index_falls_back_to_the_folders(tmp_path, monkeypatch):
    """What a read-only store looks like to the index (simulated: tests may run as root)."""
    write_run(tmp_path, "a")
    RunIndex(tmp_path).sync()  # an index exists; now it cannot be written
    write_run(tmp_path, "b", start=2000.0)

    def read_only(self):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(RunIndex, "_open_writable", read_only)
    warnings = []
    assert ids(RunIndex(tmp_path).sync(warn=warnings.append)) == ["a", "b"]
    assert len(warnings) == 1 and "read-only" in warnings[0]
    assert set(index_rows(tmp_path)) == {"a"}  # b was read from its folder, not saved

    os.remove(tmp_path / INDEX_NAME)  # no index at all and none can be made
    warnings.clear()
    assert ids(RunIndex(tmp_path).sync(warn=warnings.append)) == ["a", "b"]
    assert len(warnings) == 1 and "reading the run folders directly" in warnings[0]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores file permissions, so chmod cannot make a store read-only")
def test_read_only_store_still_lists(tmp_path):
    store = tmp_path / "runs"
    write_run(store, "a")
    RunIndex(store).sync()
    write_run(store, "b", start=2000.0)
    os.chmod(store, 0o555)
    try:
        warnings = []
        assert ids(RunStore(store).records(warn=warnings.append)) == ["a", "b"]
        assert all("index" in w for w in warnings)
    finally:
        os.chmod(store, 0o755)


def test_a_lock_held_too_long_does_not_fail_the_listing(tmp_path):
    write_run(tmp_path, "a")
    RunIndex(tmp_path).sync()
    write_run(tmp_path, "b", start=2000.0)
    holder = sqlite3.connect(tmp_path / INDEX_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        warnings = []
        assert ids(RunIndex(tmp_path, timeout=0.05).sync(warn=warnings.append)) == ["a", "b"]
        assert len(warnings) == 1 and "not updated" in warnings[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ids(RunIndex(tmp_path).sync()) == ["a", "b"]


def test_upsert_indexes_one_folder_so_the_next_sync_reads_nothing(tmp_path, reads):
    path = write_run(tmp_path, "a")
    RunIndex(tmp_path).upsert(path)
    assert set(index_rows(tmp_path)) == {"a"} and reads == ["a"]
    reads.clear()
    assert ids(RunIndex(tmp_path).sync()) == ["a"] and reads == []


def test_store_that_does_not_exist_lists_nothing(tmp_path):
    assert RunIndex(tmp_path / "nope").sync() == []
    assert not (tmp_path / "nope").exists()


def test_bad_timeout_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0, got -1"):
        RunIndex(tmp_path, timeout=-1)


# ------------------------------------------------------- concurrent writers --

N_WRITERS, RUNS_EACH, EPOCHS = 4, 8, 3


def _writer(root, worker, errors):
    """A trainer's sequence of writes, RUNS_EACH times; any warning it prints
    (an index update that failed) counts as an error."""
    sys.stderr = io.StringIO()
    try:
        store = RunStore(root)
        for i in range(RUNS_EACH):
            run = store.create(f"w{worker}-{i}")
            run.write_config(CONFIG)
            run.start(f"w{worker}-{i}")
            for epoch in range(1, EPOCHS + 1):
                run.log_epoch({"epoch": epoch, "train_loss": 0.5, "train_accuracy": 0.9, "val_loss": 0.4,
                               "val_accuracy": 0.9, "lr": 0.01, "seconds": 0.01})
                run.update_summary(epochs_completed=epoch)
            run.finish("completed")
        if sys.stderr.getvalue():
            errors.put(f"writer {worker} warned: {sys.stderr.getvalue()}")
    except BaseException:
        errors.put(f"writer {worker}: {traceback.format_exc()}")


def _reader(root, stop, errors):
    """A listing in a loop: never an error, a warning or a run listed twice."""
    try:
        passes = 0
        while not stop.is_set() or passes == 0:
            warnings = []
            found = ids(RunStore(root).records(warn=warnings.append))
            if warnings or len(found) != len(set(found)):
                errors.put(f"reader: warnings {warnings[:3]}, duplicates {len(found) - len(set(found))}")
                return
            passes += 1
    except BaseException:
        errors.put(f"reader: {traceback.format_exc()}")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_writers_and_readers_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork")
    root = tmp_path / "runs"
    errors, stop = ctx.Queue(), ctx.Event()
    readers = [ctx.Process(target=_reader, args=(root, stop, errors)) for _ in range(2)]
    writers = [ctx.Process(target=_writer, args=(root, w, errors)) for w in range(N_WRITERS)]
    for p in readers + writers:
        p.start()
    for p in writers:
        p.join(600)  # a deadline for a loaded machine, not an expected duration
    stop.set()
    for p in readers:
        p.join(600)
    assert not any(p.is_alive() for p in readers + writers), "a writer or reader still runs after 600 s"
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert [p.exitcode for p in readers + writers] == [0] * (len(readers) + len(writers))

    warnings = []
    recs = RunStore(root).records(warn=warnings.append)
    names = sorted(r["summary"]["name"] for r in recs)
    assert names == sorted(f"w{w}-{i}" for w in range(N_WRITERS) for i in range(RUNS_EACH))
    assert warnings == [] and len(set(ids(recs))) == len(recs)
    assert {r["summary"]["status"] for r in recs} == {"completed"}
    assert {r["metrics"]["epochs"] for r in recs} == {float(EPOCHS)}
    assert len(index_rows(root)) == N_WRITERS * RUNS_EACH


# --------------------------------------------------------------------- CLI --


def test_runs_reindex_says_how_many_runs_and_keeps_the_listing(nnexp, tmp_path):
    store = tmp_path / "runs"
    write_run(store, "20260101-000000-a-0001", start=1.0)
    write_run(store, "20260101-000001-b-0002", start=2.0)
    code, out, err = nnexp("runs", "--store", store)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["id", "name", "status"]
    (store / INDEX_NAME).write_bytes(b"junk" * 50)
    code, out2, err = nnexp("runs", "--reindex", "--store", store)
    assert code == 0 and "indexed 2 runs in" in err
    assert out2 == out  # same table as before
    code, out, err = nnexp("runs", "--reindex", "--json", "--store", store)
    assert [r["id"] for r in json.loads(out)] == ["20260101-000000-a-0001", "20260101-000001-b-0002"]


@pytest.mark.parametrize("in_sqlite", [True, False])
def test_a_selection_parses_only_the_runs_it_keeps(tmp_path, monkeypatch, in_sqlite):
    """SQLite's JSON operators look at the fields; without them (an older SQLite) the same runs
    are chosen from whole records."""
    from nnexp.tracking.index import Selection

    monkeypatch.setattr(index_module, "_JSON_ARROW", in_sqlite)
    for i, name in enumerate("abcd"):
        write_run(tmp_path, name, start=float(i), epochs=i + 1)
    index = RunIndex(tmp_path)
    index.sync()
    seen = []

    def keep(record):
        seen.append(sorted(record["metrics"]) if in_sqlite else None)
        return record["metrics"].get("epochs", 0) >= 3 and record["summary"].get("status") == "completed"

    selection = Selection({"summary": {"status"}, "params": set(), "metrics": {"epochs", "no_such"}}, keep)
    records = index.sync(selection=selection)
    assert ids(records) == ["c", "d"] and records[0]["params"]["optimizer.lr"] == 0.001
    if in_sqlite:
        assert seen == [["epochs"]] * 4  # only the fields asked for, and only those the runs have
    assert ids(index.sync(full=False, brief=True, selection=selection)) == ["c", "d"]
    write_run(tmp_path, "e", start=9.0, epochs=5)  # a new folder: read whole, then chosen the same way
    assert ids(index.sync(selection=selection)) == ["c", "d", "e"]


def test_brief_listings_hold_the_listed_fields(tmp_path):
    path = write_run(tmp_path, "a")
    (path / "summary.json").write_text(json.dumps({"id": "a", "status": "completed", "start_time": 1.0,
                                                   "test_accuracy": 0.9, "versions": {"numpy": "2"}}))
    make_old(path)
    brief = RunIndex(tmp_path).sync(full=False, brief=True)[0]["summary"]
    assert brief == {"status": "completed", "start_time": 1.0, "test_accuracy": 0.9}


@pytest.mark.parametrize("name, old, new, where", [
    ("config.yaml", CONFIG, CONFIG.replace("0.001", "0.003"), "optimizer.lr == 0.003"),
    ("annotations.json", json.dumps({"tags": ["first"], "note": "lr too low"}),
     json.dumps({"tags": ["other"], "note": "lr too big"}), "note == 'lr too big'"),
])
def test_a_file_replaced_in_a_trusted_folder_is_seen(nnexp, tmp_path, reads, name, old, new, where):
    """config.yaml or annotations.json replaced by a new file of the same size that
    keeps the old one's modification time (an editor or a copy that writes a new
    file and renames it over the old one), in a folder the index trusts: the
    listing and --where show the new content."""
    store = tmp_path / "runs"
    path = write_run(store, "20260101-000000-a-0001", start=1.0)
    (path / name).write_text(old)
    make_old(path)
    write_run(store, "20260101-000001-b-0002", start=2.0)
    RunStore(store).records()
    reads.clear()
    assert len(RunStore(store).records()) == 2 and reads == []       # both rows trusted
    before = os.stat(path / name)
    (path / (name + ".new")).write_text(new)
    os.utime(path / (name + ".new"), ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(path / (name + ".new"), path / name)
    after = os.stat(path / name)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    record = {r["id"]: r for r in RunStore(store).records()}[path.name]
    if name == "config.yaml":
        assert record["params"]["optimizer.lr"] == 0.003
    else:
        assert record["summary"]["note"] == "lr too big" and record["summary"]["tags"] == ["other"]
    assert reads == [path.name]                                       # the other run is still trusted
    assert ids(select_runs(store, RunQuery(where=where)).records) == [path.name]
    code, out, err = nnexp("runs", "--store", store, "--where", where, "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [path.name], err
