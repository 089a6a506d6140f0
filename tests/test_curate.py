"""Curating a store: tag, note, rm, gc, du and diff, alone and while a sweep and a trainer write."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nnexp.tracking import RunStore
from nnexp.tracking.index import INDEX_NAME
from nnexp.tracking.sweeps import SweepFolder
from nnexp.tracking.usage import tree_size

LAYERS = "[{type: flatten}, {type: dense, units: 16}, {type: relu}, {type: dense, units: 10}]"


def fake_run(store: Path, run_id: str, lr=0.001, seed=0, acc=(0.5, 0.9), status="completed", tags=(), **summary):
    """A finished run folder as the trainer leaves it (config, metrics, summary)."""
    path = store / run_id
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"model: {{layers: {LAYERS}}}\noptimizer: {{name: adam, lr: {lr}}}\n"
                                      f"train: {{seed: {seed}, epochs: {len(acc)}}}\n")
    rows = "".join(f"{e},{1 / e},{a},{1 - a},{a},{lr},1.0\n" for e, a in enumerate(acc, start=1))
    (path / "metrics.csv").write_text("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n" + rows)
    fields = {"id": run_id, "name": run_id.split("-")[0], "status": status, "seed": seed, "tags": list(tags),
              "start_time": 1000.0 + len(os.listdir(store)), "test_accuracy": acc[-1], "train_seconds": 2.0}
    (path / "summary.json").write_text(json.dumps({**fields, **summary}))
    return path


def annotations(path: Path) -> dict:
    return json.loads((path / "annotations.json").read_text())


def index_ids(store: Path) -> set[str]:
    with sqlite3.connect(store / INDEX_NAME) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM runs")}


# ------------------------------------------------------------------ tag and note


def test_tags_and_notes_are_kept_beside_the_summary_and_seen_everywhere(nnexp, store):
    a = fake_run(store, "a-1", tags=["mlp"])
    fake_run(store, "b-2", lr=0.01)
    summary_before = (a / "summary.json").read_bytes()
    code, out, err = nnexp("tag", "a-1", "b-2", "+best", "-mlp", "+try:2", "--store", store)
    assert code == 0, err
    assert out.splitlines() == ["a-1  best, try:2", "b-2  best, try:2"]
    assert (a / "summary.json").read_bytes() == summary_before  # the trainer's file is never written
    assert annotations(a)["tags"] == ["best", "try:2"]
    code, _, err = nnexp("note", "a-1", "lr too low\nsee b-2", "--store", store)
    assert code == 0, err

    code, out, _ = nnexp("runs", "--store", store)
    assert "best,try:2" in out and "lr too low…" in out
    code, out, _ = nnexp("show", "a-1", "--store", store)
    assert "tags                  best, try:2" in out and "note\n  lr too low\n  see b-2\nfiles" in out
    code, out, _ = nnexp("runs", "--where", "'lr too' in note", "--json", "--store", store)
    assert [r["id"] for r in json.loads(out)] == ["a-1"]
    code, out, _ = nnexp("compare", "--where", "'best' in tags and 'mlp' not in tags", "--json", "--store", store)
    rows = json.loads(out)
    assert {r["id"] for r in rows} == {"a-1", "b-2"} and {r["note"] for r in rows} == {"lr too low\nsee b-2", None}

    code, out, _ = nnexp("tag", "--where", "optimizer.lr == 0.01", "-best", "--json", "--store", store)
    assert json.loads(out) == [{"id": "b-2", "tags": ["try:2"]}]
    code, out, _ = nnexp("tag", "a-1", "--store", store)  # no tags given: show them
    assert out.strip() == "a-1  best, try:2"
    code, out, _ = nnexp("note", "a-1", "--clear", "--json", "--store", store)
    assert json.loads(out) == {"id": "a-1", "note": None} and "note" not in annotations(a)


@pytest.mark.parametrize("args, message", [
    (["a-1", "+bad tag"], "invalid tag 'bad tag'"),
    (["a-1", "+"], "invalid tag ''"),
    (["+x"], "name the runs"),
    (["nope", "+x"], "no run 'nope'"),
])
def test_bad_tag_input_is_one_line_and_changes_nothing(nnexp, store, args, message):
    a = fake_run(store, "a-1")
    code, out, err = nnexp("tag", *args, "--store", store)
    assert code in (1, 2) and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert code == (1 if "no run" in message else 2)
    assert not (a / "annotations.json").exists()


def test_a_tag_added_while_the_trainer_runs_survives_its_summary_rewrites(nnexp, store):
    run = RunStore(store).create("live")
    run.start("live", tags=["from-config"])
    code, _, err = nnexp("tag", run.id, "+watch", "--store", store)
    assert code == 0, err
    for epoch in range(1, 4):  # the trainer rewrites summary.json from its own copy every epoch
        run.update_summary(epochs_completed=epoch)
    run.finish("completed")
    code, out, _ = nnexp("runs", "--json", "--store", store)
    assert json.loads(out)[0]["tags"] == ["from-config", "watch"]
    assert json.loads((run.path / "summary.json").read_text())["tags"] == ["from-config"]


def test_an_edited_annotations_file_is_seen_by_the_next_listing(nnexp, store):
    a = fake_run(store, "a-1")
    nnexp("runs", "--store", store)
    (a / ".annotations.json.tmp").write_text(json.dumps({"tags": ["by-hand"]}))
    (a / ".annotations.json.tmp").replace(a / "annotations.json")  # replaced, as every nnexp writer does
    code, out, _ = nnexp("runs", "--where", "'by-hand' in tags", "--json", "--store", store)
    assert [r["id"] for r in json.loads(out)] == ["a-1"]


# ------------------------------------------------------------------ rm


def test_rm_previews_asks_and_removes_from_folders_and_index(nnexp, store, monkeypatch):
    for i in range(3):
        fake_run(store, f"r-{i}", lr=0.001 * (i + 1))
    nnexp("runs", "--store", store)  # indexed
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, err = nnexp("rm", "r-0", "--store", store)
    assert code == 1 and "r-0" in err and "remove 1 run" in err and "nothing removed" in err
    assert (store / "r-0").is_dir()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, err = nnexp("rm", "--where", "optimizer.lr < 0.0025", "--store", store)
    assert code == 0, err
    assert out.startswith("removed 2 runs, freed ")
    assert {p.name for p in store.iterdir() if not p.name.startswith(".")} == {"r-2"}
    assert not any(p.name.startswith(".trash-") for p in store.iterdir())
    assert index_ids(store) == {"r-2"}
    code, out, err = nnexp("rm", "r-2", "--dry-run", "--json", "--store", store)
    plan = json.loads(out)
    assert plan["dry_run"] and plan["removed"] == [] and plan["runs"][0]["id"] == "r-2"
    assert (store / "r-2").is_dir()


@pytest.mark.parametrize("args, code, message", [
    ([], 2, "name the runs"),
    (["nope"], 1, "no run 'nope'"),
    (["--where", "val_acuracy > 1"], 2, "did you mean 'val_accuracy'"),
    (["--sweep", "nope"], 1, "no sweep 'nope'"),
])
def test_rm_refuses_bad_input_with_one_line(nnexp, store, args, code, message):
    fake_run(store, "r-0")
    got, out, err = nnexp("rm", *args, "--yes", "--store", store)
    assert got == code and message in err and "Traceback" not in err
    assert (store / "r-0" / "summary.json").exists()


def test_rm_never_removes_a_running_or_resuming_run(nnexp, store):
    import socket

    from nnexp.filelock import exclusive

    fake_run(store, "live-0", status="running", pid=os.getpid(), host=socket.gethostname())
    fake_run(store, "dead-1", status="running", pid=2 ** 22 + 12345, host=socket.gethostname())  # no such process
    resuming = fake_run(store, "resuming-2", status="failed")
    with exclusive(resuming / ".lock"):  # as `nnexp resume` holds it while it trains
        code, out, err = nnexp("rm", "live-0", "dead-1", "resuming-2", "--yes", "--store", store)
    assert code == 0, err
    assert "keep: running (pid" in err and "keep: being resumed" in err
    assert out.startswith("removed 1 run")
    assert {p.name for p in store.iterdir() if not p.name.startswith(".")} == {"live-0", "resuming-2"}


def test_rm_sweep_removes_its_runs_and_then_its_folder(nnexp, store):
    for i in range(2):
        fake_run(store, f"sw-1234abcd-t{i:03d}", sweep="sw-1234abcd", trial=i)
    fake_run(store, "other-0")
    folder = store / "sweeps" / "sw-1234abcd"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"id": "sw-1234abcd", "name": "sw", "status": "completed"}))
    code, out, err = nnexp("rm", "--sweep", "sw", "--yes", "--store", store)
    assert code == 0, err
    assert "removed 2 runs" in out and "removed sweeps/sw-1234abcd" in out
    assert not folder.exists() and {p.name for p in store.iterdir() if not p.name.startswith(".")} == {
        "other-0", "sweeps"}


# ------------------------------------------------------------------ a sweep and a trainer writing meanwhile

TRAINER = """
import sys, time
from pathlib import Path
from nnexp.tracking import RunStore
run = RunStore(sys.argv[1]).create("trainer")
run.start("trainer", tags=["from-config"], epochs_completed=0)
print(run.id, flush=True)
epoch = 0
while not Path(sys.argv[2]).exists():
    epoch += 1
    run.update_summary(epochs_completed=epoch)  # rewritten from the trainer's own copy, as train.py does
    time.sleep(0.01)
run.finish("completed")
"""

SWEEP_BASE = """\
data: {{dataset: mnist, val_size: 200, batch_size: 64, train_subset: 3000}}
model: {{layers: {layers}}}
optimizer: {{name: adam, lr: 0.002}}
train: {{epochs: 5, seed: 0, eval_batch_size: 500}}
tracking: {{store: {store}, plots: false}}
"""


@pytest.mark.integration
def test_tag_and_rm_while_a_sweep_and_a_trainer_write_lose_nothing(nnexp, store, tmp_path):
    for i in range(4):
        fake_run(store, f"old-{i}", lr=0.1 * (i + 1))
    stop = tmp_path / "stop"
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(store), str(stop)], stdout=subprocess.PIPE,
                               text=True)
    live = trainer.stdout.readline().strip()
    (tmp_path / "base.yaml").write_text(SWEEP_BASE.format(layers=LAYERS, store=store))
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""\
        name: busy
        base: base.yaml
        parameters: {optimizer.lr: [0.001, 0.002, 0.004, 0.008]}
        repeats: 2
    """))
    sweep = subprocess.Popen([sys.executable, "-m", "nnexp", "sweep", str(spec), "-j", "1", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (list(store.glob("busy-*-t000/summary.json")) and SweepFolder(store, _sweep_id(store)).is_running()):
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stderr.read() if sweep.poll() else ""
            time.sleep(0.05)

        code, out, err = nnexp("tag", "old-0", "old-1", live, "+keep", "--store", store)
        assert code == 0, err
        code, out, err = nnexp("rm", "old-2", "old-3", live, "--yes", "--store", store)
        assert code == 0, err
        assert "removed 2 runs" in out and f"{live}" in err and "keep: running" in err
        code, out, err = nnexp("rm", "--sweep", "busy", "--dry-run", "--json", "--store", store)
        plan = json.loads(out)
        assert all(c["kept"] is not None for c in plan["runs"] if c["status"] == "running")
        assert SweepFolder(store, _sweep_id(store)).is_running()  # all of that happened while the sweep ran
    finally:
        stop.touch()
        trainer.wait(timeout=60)
        out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    assert trainer.returncode == 0

    code, out, _ = nnexp("runs", "--json", "--store", store)
    runs = {r["id"]: r for r in json.loads(out)}
    trials = [i for i in runs if i.startswith("busy-")]
    assert len(trials) == 8 and all(runs[t]["status"] == "completed" for t in trials)
    assert {"old-0", "old-1", live} <= set(runs) and not {"old-2", "old-3"} & set(runs)
    assert runs[live]["tags"] == ["from-config", "keep"] and runs[live]["status"] == "completed"
    assert runs["old-0"]["tags"] == ["keep"]
    assert index_ids(store) == set(runs) == {p.name for p in store.iterdir()
                                             if (p / "summary.json").exists()}
    with sqlite3.connect(store / INDEX_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _sweep_id(store: Path) -> str:
    found = sorted((store / "sweeps").glob("busy-*")) if (store / "sweeps").is_dir() else []
    return found[0].name if found else "busy-none"


# ------------------------------------------------------------------ gc and du


def test_gc_removes_what_no_run_needs_and_keeps_the_rest(nnexp, store):
    import socket

    old = time.time() - 3600
    done = fake_run(store, "20261201-101010-done-aaaa")
    (done / "checkpoint.npz").write_bytes(b"x" * 5000)  # left by a trainer killed while finishing
    (done / "attempts" / "1").mkdir(parents=True)
    (done / "attempts" / "1" / "metrics.csv").write_bytes(b"y" * 3000)
    partial = done / ".summary.json.4194999.tmp"  # a writer that no longer exists
    partial.write_bytes(b"z" * 100)
    os.utime(partial, (old, old))
    failed = fake_run(store, "20261201-101011-failed-bbbb", status="failed")
    (failed / "checkpoint.npz").write_bytes(b"c" * 5000)  # what `nnexp resume` continues from: kept
    fresh = failed / ".metrics.csv.4194999.tmp"  # too recent to judge
    fresh.write_bytes(b"f")
    mine = failed / f".config.yaml.{os.getpid()}.tmp"  # its writer is alive
    mine.write_bytes(b"m")
    os.utime(mine, (old, old))
    live = fake_run(store, "20261201-101012-live-cccc", status="running", pid=os.getpid(), host=socket.gethostname())
    (live / "attempts" / "1").mkdir(parents=True)  # a running run: nothing inside it is touched
    trash = store / ".trash-20261130-000000-gone-dddd-abc123"
    (trash / "plots").mkdir(parents=True)
    (trash / "plots" / "a.png").write_bytes(b"p" * 2000)
    orphan = store / "20261201-090000-never-eeee"  # created, then its process was killed: no summary.json
    orphan.mkdir()
    (orphan / "config.yaml").write_text("x: 1\n")
    (orphan / "code.patch").write_text("diff --git a/x b/x\n")   # written, like config.yaml, before summary.json
    os.utime(orphan, (old, old))
    mine_dir = store / "my-notes"  # not named like a run: not nnexp's to remove
    mine_dir.mkdir()
    os.utime(mine_dir, (old, old))

    code, out, err = nnexp("gc", "--dry-run", "--json", "--store", store)
    assert code == 0, err
    found = {(i["kind"], Path(i["path"]).relative_to(store).as_posix()) for i in json.loads(out)["items"]}
    assert found == {
        ("checkpoint of a finished run", "20261201-101010-done-aaaa/checkpoint.npz"),
        ("old attempts", "20261201-101010-done-aaaa/attempts"),
        ("partial file", "20261201-101010-done-aaaa/.summary.json.4194999.tmp"),
        ("removal leftover", ".trash-20261130-000000-gone-dddd-abc123"),
        ("orphan folder", "20261201-090000-never-eeee"),
    }
    expected = sum(tree_size(store / path)[0] for _, path in found)
    assert (done / "checkpoint.npz").exists()  # a dry run removes nothing

    code, out, err = nnexp("gc", "--store", store)
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith(f"freed {expected / 1024:.1f} KiB (5 items)")
    assert not (done / "checkpoint.npz").exists() and not (done / "attempts").exists() and not trash.exists()
    assert not orphan.exists() and not partial.exists()
    assert (failed / "checkpoint.npz").exists() and fresh.exists() and mine.exists() and mine_dir.exists()
    assert (live / "attempts").exists() and (done / "summary.json").exists()
    code, out, _ = nnexp("gc", "--store", store)
    assert out.strip() == f"freed 0 B (0 items) in {store}"


def test_du_sums_runs_per_sweep_and_in_total(nnexp, store):
    fake_run(store, "sw-1234abcd-t000", sweep="sw-1234abcd")
    big = fake_run(store, "sw-1234abcd-t001", sweep="sw-1234abcd")
    (big / "model.npz").write_bytes(b"w" * 100_000)
    fake_run(store, "solo-0")
    (store / "sweeps" / "sw-1234abcd").mkdir(parents=True)
    (store / "sweeps" / "sw-1234abcd" / "plan.json").write_text("[]")
    code, out, err = nnexp("du", "--json", "--store", store)
    assert code == 0, err
    usage = json.loads(out)
    assert [r["id"] for r in usage["runs"]][0] == "sw-1234abcd-t001"
    sizes = {r["id"]: r["bytes"] for r in usage["runs"]}
    assert sizes == {p.name: tree_size(p)[0] for p in store.iterdir() if (p / "summary.json").exists()}
    sweep = usage["sweeps"][0]
    assert sweep["runs"] == 2 and sweep["bytes"] == (sizes["sw-1234abcd-t000"] + sizes["sw-1234abcd-t001"]
                                                     + tree_size(store / "sweeps" / "sw-1234abcd")[0])
    assert usage["total"] == sum(sizes.values()) + tree_size(store / "sweeps" / "sw-1234abcd")[0] + usage["index"]
    code, out, _ = nnexp("du", "--limit", "1", "--store", store)
    assert "sw-1234abcd-t001" in out and "solo-0" not in out and "2 more" in out


# ------------------------------------------------------------------ diff


def test_diff_shows_differing_keys_metrics_and_curves(nnexp, store, tmp_path):
    fake_run(store, "a-1", lr=0.001, acc=(0.5, 0.8, 0.9))
    fake_run(store, "b-2", lr=0.01, acc=(0.6, 0.85, 0.95), tags=["x"])
    png = tmp_path / "curves.png"
    code, out, err = nnexp("diff", "a-1", "b-2", "--json", "--plot", png, "--store", store)
    assert code == 0, err
    result = json.loads(out)
    assert result["params"] == [{"key": "optimizer.lr", "a": 0.001, "b": 0.01}]
    assert {"field": "tags", "a": [], "b": ["x"]} in result["run"]
    metrics = {m["name"]: m for m in result["metrics"]}
    assert metrics["val_accuracy"]["diff"] == pytest.approx(0.05) and "final_val_accuracy" not in metrics
    assert result["curves"]["b"]["val_accuracy"] == [[1.0, 0.6], [2.0, 0.85], [3.0, 0.95]]
    assert png.read_bytes().startswith(b"\x89PNG")
    code, out, _ = nnexp("diff", "a-1", "b-2", "--store", store)
    assert "optimizer.lr  0.001  0.01" in out and "+5.00pp" in out and "epoch  val_accuracy a" in out
    code, _, err = nnexp("diff", "a-1", "a-1", "--store", store)
    assert code == 2 and "the same run" in err
