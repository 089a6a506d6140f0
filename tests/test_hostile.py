"""Hostile and broken input: a full disk, a read-only store, damaged run
folders, and fuzzers for the config loader, overrides, checkpoints, run
records and images; a store made to hurt its readers (tests/hostile_store.py)
through every command that reads a store, and the safe reader of its files
(nnexp/tracking/reading.py). Each gives a result or nnexp's own one-line
error, exits non-zero where it failed, and leaves every other run as it was."""

import io
import json
import os
import re
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import hostile_store
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnexp import checkpoint
from nnexp.config import load_config, validate
from nnexp.early_stopping import Patience
from nnexp.errors import NnexpError
from nnexp.tracking import RunIndex, reading
from nnexp.tracking.index import INDEX_NAME

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only) so that a full or read-only disk is real, not simulated."""
    mounted = []

    def mount(size="2m"):
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount_read_only(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, capture_output=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until it is full, then free ``leave`` bytes."""
    with open(disk / ".filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    size = (disk / ".filler").stat().st_size
    with open(disk / ".filler", "r+b") as f:
        f.truncate(max(0, size - leave))


def test_a_full_disk_fails_the_run_with_one_message_and_harms_no_other_run(nnexp, tiny_config, tmpfs):
    disk = tmpfs("3m")
    store = disk / "runs"
    assert nnexp("run", tiny_config, "-q", f"tracking.store={store}", "train.epochs=1",
                 "tracking.plots=false")[0] == 0
    [old] = [p for p in store.iterdir() if p.is_dir()]
    before = snapshot(old)
    fill(disk, leave=48 * 1024)  # room for the config and summary, not for a checkpoint
    code, out, err = nnexp("run", tiny_config, "-q", f"tracking.store={store}")
    assert code == 1, (out, err)
    assert "No space left on device" in err and "Traceback" not in err
    assert snapshot(old) == before
    (disk / ".filler").unlink()
    code, out, err = nnexp("runs", "--store", store)
    assert code == 0 and old.name in out


def test_a_read_only_store_is_listed_and_compared_and_refuses_writes_clearly(nnexp, tiny_config, tmpfs, tmp_path):
    disk = tmpfs("8m")
    store = disk / "runs"
    for seed in (0, 1):
        assert nnexp("run", tiny_config, "-q", f"tracking.store={store}", "train.epochs=1",
                     "tracking.plots=false", f"train.seed={seed}")[0] == 0
    ids = sorted(p.name for p in store.iterdir() if p.is_dir())
    before = snapshot(store)
    remount_read_only(disk)

    code, out, err = nnexp("run", tiny_config, "-q", f"tracking.store={store}")
    assert code == 1 and "Read-only file system" in err and "Traceback" not in err
    code, out, err = nnexp("ensemble", *ids, "--store", store)
    assert code == 1 and "Read-only file system" in err and "Traceback" not in err
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"base: {tiny_config}\nparameters: {{optimizer.lr: [0.001]}}\n")
    code, out, err = nnexp("sweep", spec, "--store", store, "-q")
    assert code == 1 and "Read-only file system" in err and "Traceback" not in err

    code, out, err = nnexp("runs", "--store", store)
    assert code == 0 and all(i in out for i in ids)
    code, out, err = nnexp("compare", "--store", store, "--csv")
    assert code == 0 and "val_accuracy" in out
    code, out, err = nnexp("show", ids[0], "--store", store)
    assert code == 0 and ids[0] in out
    assert snapshot(store) == before


def test_a_store_that_is_a_file_is_named_as_such(nnexp, tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    code, _, err = nnexp("runs", "--store", path)
    assert code == 1 and "is not a directory" in err


def test_damaged_run_folders_are_skipped_named_and_never_harm_the_others(nnexp, tiny_config, store):
    assert nnexp("run", tiny_config, "-q", "train.epochs=1", "tracking.plots=false")[0] == 0
    [good] = [p for p in store.iterdir() if p.is_dir()]
    damage = {
        "half-summary": ("summary.json", b'{"status": "compl'),
        "list-summary": ("summary.json", b"[1, 2]"),
        "binary-config": ("config.yaml", b"\x00\xff\xfe"),
        "half-metrics": ("metrics.csv", b"epoch,train_loss,train_accuracy\n1,0.5,0.9\n2,0."),
        "cut-model": ("model.npz", (good / "model.npz").read_bytes()[:100]),
    }
    for name, (file, content) in damage.items():
        shutil.copytree(good, store / name)
        (store / name / file).write_bytes(content)
    before = snapshot(good)

    code, out, err = nnexp("runs", "--store", store)
    assert code == 0 and good.name in out and "half-metrics" in out and "cut-model" in out
    for skipped in ("half-summary", "list-summary", "binary-config"):
        assert skipped not in out and f"skipping run {skipped}" in err
    code, _, err = nnexp("show", "half-summary", "--store", store)
    assert code == 1 and "invalid summary.json" in err
    code, _, err = nnexp("evaluate", "cut-model", "--store", store)
    assert code == 1 and "cannot load model.npz" in err and "Traceback" not in err
    code, _, err = nnexp("ensemble", good.name, "cut-model", "--store", store)
    assert code == 1 and "cannot load model.npz" in err
    code, out, _ = nnexp("compare", "--store", store, "--json", "--no-group")
    assert code == 0 and {r["id"] for r in json.loads(out)} == {good.name, "half-metrics", "cut-model"}
    assert snapshot(good) == before


# ---------------------------------------------------------------- fuzzers --

BASE = textwrap.dedent("""\
    data: {dataset: mnist, batch_size: 64}
    model:
      layers:
        - {type: flatten}
        - {type: dense, units: 16}
        - {type: relu}
        - {type: dense, units: 10}
    optimizer: {name: adam, lr: 0.001}
    train: {epochs: 1, seed: 0}
    """)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _config_or_own_error(text: str, overrides=()) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = load_config(path, list(overrides))
        except NnexpError as exc:
            assert str(exc) and "\n" not in str(exc).splitlines()[0]
            return
    assert isinstance(cfg, dict) and set(cfg) >= {"data", "model", "optimizer", "train"}


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_config_text(text):
    _config_or_own_error(text)


@FUZZ
@given(st.sampled_from(["data", "model", "optimizer", "schedule", "train", "tracking"]),
       st.sampled_from([None, "batch_size", "layers", "name", "lr", "epochs", "seed", "augment", "store",
                        "early_stopping", "label_smoothing", "val_size", "x"]),
       yaml_values)
def test_fuzz_config_values_of_any_type_anywhere(section, key, value):
    cfg = yaml.safe_load(BASE)
    if key is None:
        cfg[section] = value
    elif isinstance(cfg.get(section), dict) or section not in cfg:
        cfg.setdefault(section, {})[key] = value
    _config_or_own_error(yaml.safe_dump(cfg))


@FUZZ
@given(st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from([
        "optimizer.lr", "model.layers.1.units", "model.layers.9.units", "model.layers", "data.augment",
        "train.epochs", "data.batch_size", "schedule.name", "model.layers.-1", "a..b", "", "train"]),
        st.one_of(st.text(max_size=20), st.sampled_from(["1e-3", "[1, 2", "{a: 1}", "nan", "-inf", "!!python/object:os.system x", "0x10"])))),
    max_size=4))
def test_fuzz_overrides(overrides):
    _config_or_own_error(BASE, overrides)


def test_yaml_tags_that_would_run_code_are_refused(tmp_path):
    for text in ("model: !!python/object/apply:os.system ['touch pwned']\n",
                 "!!python/name:os.system\n", "model: !!binary AAAA\n", "a: &x [*x]\n"):
        path = tmp_path / "evil.yaml"
        path.write_text(text)
        with pytest.raises(NnexpError):
            load_config(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def _valid_checkpoint_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(Path(tmp), checkpoint.TrainState(
            "digest", 2, 20, [{"epoch": 1}], stopper=Patience(best=0.5), train_seconds=1.0, log_seconds=0.1,
            rng_states={"init": np.random.default_rng(0).bit_generator.state},
            model={"0.W": np.ones((3, 2), np.float32)}, optim={"t": np.array(20)}))
        return (Path(tmp) / checkpoint.FILENAME).read_bytes()


CHECKPOINT = _valid_checkpoint_bytes()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(CHECKPOINT) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(CHECKPOINT)))
def test_fuzz_checkpoint_files(flips, cut):
    data = bytearray(CHECKPOINT[:cut] if cut < 40 else CHECKPOINT)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / checkpoint.FILENAME).write_bytes(bytes(data))
        try:
            ckpt = checkpoint.load(Path(tmp))
        except checkpoint.CheckpointError:
            return
    assert ckpt is not None and isinstance(ckpt.model, dict)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
SUMMARY_KEYS = ["status", "name", "start_time", "started", "params", "epochs_completed", "epochs_planned",
                "test_accuracy", "train_seconds", "seed", "pid", "host", "sweep", "trial", "trial_params",
                "tags", "final_val_accuracy", "kind", "members", "note"]


@FUZZ
@given(st.dictionaries(st.sampled_from(SUMMARY_KEYS), json_values, max_size=8),
       st.binary(max_size=80), st.text(max_size=80),
       st.one_of(st.none(), st.binary(max_size=40),
                 st.dictionaries(st.sampled_from(["tags", "note", "updated"]), json_values, max_size=3)))
def test_fuzz_run_folders_never_break_a_listing(summary, metrics, config, annotations):
    """Whatever a run folder holds, `runs`, `compare` and load_runs list the
    others: a folder is a run, or skipped with a warning naming it."""
    import nnexp
    from nnexp.commands.listing import run_table
    from nnexp.compare.select import select_runs
    from nnexp.tracking import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good-run"
        good.mkdir()
        (good / "summary.json").write_text(json.dumps({"status": "completed", "name": "good", "start_time": 0.0,
                                                        "test_accuracy": 0.5}))
        (good / "metrics.csv").write_text("epoch,train_loss,val_accuracy\n1,0.7,0.5\n")
        (good / "config.yaml").write_text("optimizer: {name: adam, lr: 0.001}\n")
        run = Path(tmp) / "weird-run"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "metrics.csv").write_bytes(metrics)
        (run / "config.yaml").write_text(config, encoding="utf-8", errors="surrogatepass")
        if annotations is not None:
            (run / "annotations.json").write_bytes(annotations if isinstance(annotations, bytes)
                                                   else json.dumps(annotations).encode())

        warnings = []
        infos = RunStore(tmp).runs(warn=warnings.append)
        listed = [i.id for i in infos]
        assert "good-run" in listed and len(set(listed)) == len(listed) <= 2
        assert "weird-run" in listed or any("weird-run" in w for w in warnings), warnings
        table = run_table(infos)
        assert all(i in table for i in listed)

        warnings = []
        records = RunStore(tmp).records(warn=warnings.append)
        ids = [r["id"] for r in records]
        assert "good-run" in ids and len(set(ids)) == len(ids) <= 2
        assert "weird-run" in ids or any("weird-run" in w for w in warnings), warnings
        [good_record] = [r for r in records if r["id"] == "good-run"]
        assert good_record["params"]["optimizer.lr"] == 0.001
        assert good_record["metrics"]["test_accuracy"] == 0.5
        chosen = select_runs(tmp)
        selected, sweep = chosen.records, chosen.sweep
        assert [r["id"] for r in selected] == ids and sweep is None

        frame = nnexp.load_runs(tmp)
        assert list(frame["id"]) == ids
        assert frame.set_index("id").loc["good-run", "status"] == "completed"
        assert frame.set_index("id").loc["good-run", "metric.test_accuracy"] == 0.5


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_any_bytes_as_an_image(data):
    _image_or_data_error(data)


def _png_bytes() -> bytes:
    from PIL import Image

    img = np.zeros((20, 16), np.uint8)
    img[4:16, 6:10] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png_bytes()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(8, len(PNG)))
def test_fuzz_damaged_pngs(flips, cut):
    data = bytearray(PNG[:cut])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _image_or_data_error(bytes(data))


def _image_or_data_error(data: bytes) -> None:
    from nnexp.errors import DataError
    from nnexp.preprocess import load_digit

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digit.png"
        path.write_bytes(data)
        try:
            out = load_digit(path)
        except DataError:
            return
    assert out.shape == (28, 28) and out.dtype == np.float32 and np.isfinite(out).all()


def test_config_validation_names_the_bad_value():
    cfg = yaml.safe_load(BASE)
    cfg["optimizer"]["lr"] = "fast"
    with pytest.raises(NnexpError, match="optimizer.lr"):
        validate(cfg)


@pytest.mark.parametrize("name", ["../../escape", "a\x00b", "x" * 5000, "-rf"])
def test_hostile_names_stay_inside_the_store(nnexp, tiny_config, store, tmp_path, name):
    """A sweep name and an ensemble name become folder names only after
    sanitising: nothing is ever created outside the store."""
    outside = sorted(tmp_path.parent.iterdir())
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "base": str(tiny_config),
                                    "parameters": {"optimizer.lr": [0.002, 0.003]}, "overrides": {"train": {"epochs": 1}}}))
    code, out, err = nnexp("sweep", spec, "-q", "--store", store)
    assert code == 0, err
    trials = [p.name for p in store.iterdir() if p.is_dir() and p.name != "sweeps"]
    code, out, err = nnexp("ensemble", *trials, "--name", name, "--store", store)
    assert code == 0, err
    for path in store.rglob("*"):
        assert path.resolve().is_relative_to(store.resolve())
        assert len(path.name) <= 128 and "\x00" not in path.name
    assert sorted(tmp_path.parent.iterdir()) == outside and not Path("/etc/cron.d/x").exists()


def test_files_posted_by_a_remote_trial_cannot_leave_its_run_folder(tmp_path):
    """The Ray executor writes what tasks post into the store: a name that
    climbs out of the trial's folder is refused, not written."""
    from nnexp.sweep.ray_executor import write_files

    store = tmp_path / "runs"
    store.mkdir()
    write_files(store, [("r1", "plots/a.png", b"png"), ("r1", "summary.json", b"{}"), ("r1", "gone", b"x"),
                        ("r1", "gone", None)])
    for bad in [("r1", "../r2/summary.json"), ("..", "x"), ("r1", "/etc/passwd"), ("a/b", "c"), ("", "x"),
                ("r1", "plots/../../x")]:
        with pytest.raises(NnexpError, match="outside its folder"):
            write_files(store, [(*bad, b"evil")])
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
        ["runs/r1/plots/a.png", "runs/r1/summary.json"]


# ---------------------------------------------------------------- a store made to hurt its readers
# tests/hostile_store.py: named pipes, links to /dev/zero, sparse 40 GB files, a YAML alias bomb, JSON
# nested 100,000 deep, a summary claiming another run's id, a run folder linked out of the store.


def python_child(*args, timeout: float = 120):
    """Run python in a child process (a reader stuck on a pipe fails the test instead of hanging it),
    with 3 GiB of address space at most (a document that expands without bound fails instead of
    filling the machine): (exit code, stdout, stderr)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit)
    return done.returncode, done.stdout, done.stderr


def cli(*args, timeout: float = 120):
    """``nnexp ARGS`` in a child process, as ``python_child`` runs it."""
    return python_child("-m", "nnexp", *args, timeout=timeout)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    made = hostile_store.build(tmp / "runs", tmp / "outside")
    yield tmp / "runs", made
    hostile_store.release(tmp / "runs")


def test_every_listing_holds_against_a_hostile_store(hostile):
    root, made = hostile
    listed = made["good"] + made["shown"]
    code, out, err = cli("runs", "--json", "--store", root)
    assert code == 0 and "Traceback" not in err, err
    runs = json.loads(out)
    assert sorted(r["id"] for r in runs) == sorted(listed)
    for name, why in made["damaged"].items():
        [line] = [line for line in err.splitlines() if f"skipping run {name}:" in line]
        assert why in line, line
    assert f"skipping run linked: its folder is a symbolic link (to {root.parent / 'outside' / 'elsewhere'})" in err
    code, out, err = cli("runs", "--store", root)  # the table, from the index the first listing wrote
    assert code == 0 and all(name in out for name in listed) and "linked" not in out
    assert all(f"skipping run {name}:" in err for name in made["damaged"])

    code, out, err = cli("compare", "--json", "--no-group", "--store", root)
    assert code == 0 and sorted(r["id"] for r in json.loads(out)) == sorted(listed), err
    code, out, err = python_child("-c", "import json, sys, nnexp; "
                                  "print(json.dumps(list(nnexp.load_runs(sys.argv[1])['id'])))", root)
    assert code == 0 and sorted(json.loads(out)) == sorted(listed), err

    code, out, err = cli("sweeps", "--json", "--store", root)
    states = {s["id"]: s["status"] for s in json.loads(out)}
    assert code == 0 and states["pipe-lock-0a0a0a0a"] == "dead" and "pipe-state-0a0a0a0a" not in states


def test_show_names_what_is_wrong_with_a_hostile_run(hostile):
    root, made = hostile
    for name in made["shown"]:
        code, out, err = cli("show", name, "--store", root)
        assert code == 0 and f"run     {name}" in out and "Traceback" not in err, (name, err)
    code, _, err = cli("show", "pipe-diagnostics", "--store", root)
    assert "cannot read diagnostics.csv (not a regular file but a named pipe)" in err
    code, _, err = cli("show", "huge-diagnostics", "--store", root)
    assert "cannot read diagnostics.csv (too large: 42,949,672,960 bytes" in err
    for name, why in made["damaged"].items():
        code, out, err = cli("show", name, "--store", root)
        last = err.splitlines()[-1]
        assert code == 1 and last.startswith(f"error: run {name}: ") and why in last and "Traceback" not in err
    code, _, err = cli("show", "linked", "--store", root)
    assert code == 1 and err.splitlines()[-1] == (f"error: run linked: its folder is a symbolic link (to "
                                                  f"{root.parent / 'outside' / 'elsewhere'}), not a folder of the store")


def test_a_run_is_the_folder_it_is_in_whatever_its_summary_claims(hostile):
    root, made = hostile
    impostor, claimed = made["impostor"], made["claimed"]
    code, out, _ = cli("runs", "--json", "--store", root)
    rows = [r for r in json.loads(out) if r.get("name") == impostor]
    assert [(r["id"], r["path"]) for r in rows] == [(impostor, str(root / impostor))]
    code, out, _ = cli("show", impostor, "--json", "--store", root)
    assert (json.loads(out)["id"], json.loads(out)["path"]) == (impostor, str(root / impostor))
    code, out, _ = cli("show", impostor, "--store", root)
    assert claimed not in out.replace(f"run     {impostor}", "")
    code, out, _ = cli("compare", impostor, "--json", "--store", root)
    assert [r["id"] for r in json.loads(out)] == [impostor]


def test_a_filter_number_too_long_to_convert_is_the_filters_error(hostile):
    root, _ = hostile
    for command in ("runs", "compare"):
        code, out, err = cli(command, "--where", "optimizer.lr < " + "9" * 5000, "--store", root)
        assert code == 2 and "has too many digits (5,000)" in err and "Traceback" not in err


def test_the_report_of_a_hostile_sweep_shows_its_markup_as_text(hostile, tmp_path):
    root, made = hostile
    report = tmp_path / "report.html"
    code, _, err = cli("compare", "--sweep", made["sweep"], "--report", report, "--store", root)
    assert code == 0, err
    html_text = report.read_text()
    charts = json.loads(re.search(r'<script type="application/json" id="nnexp-charts">(.*?)</script>', html_text,
                                  re.DOTALL).group(1))
    assert {"best-so-far", "importance", "curves"} <= {c["id"] for c in charts}
    assert_chart_texts_escaped([c["figure"] for c in charts], hostile_store.MARKUP)


# What plotly.js may read as markup or as a template field in a chart's texts: only these are the charts' own.
OWN_MARKUP = re.compile(r"<br>|<extra>|</extra>|%\{(?:x|y|text|customdata\[\d\])(?::[^}]*)?\}")


def chart_texts(value, key=""):
    """Every (key, text) of a plotly.js figure."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from chart_texts(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from chart_texts(v, key)
    elif isinstance(value, str):
        yield key, value


def assert_chart_texts_escaped(figures: list, markup: str) -> None:
    """No text of the figures holds markup or a template field but the charts' own, and the
    hostile name shows (escaped) in their hover templates."""
    texts = [(k, t) for figure in figures for k, t in chart_texts(figure)]
    leftovers = [(k, t) for k, t in texts if re.search(r"[<>]|%\{", OWN_MARKUP.sub("", t))]
    assert leftovers == []
    escaped = markup.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("%", "&#37;")
    assert any(k == "hovertemplate" and escaped in t for k, t in texts)


# ---------------------------------------------------------------- reading a run's files (tracking/reading.py)


def read_within(path, seconds: float = 30.0, **kwargs):
    """reading.read_bytes(path) in a thread: its result or exception, or a failure if it blocks
    (the pipe is then opened for writing, so that the thread ends)."""
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(reading.read_bytes, path, **kwargs)),
                              daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        hostile_store.release(Path(path).parent)
        thread.join(5)
        pytest.fail(f"reading {path} blocked")
    return outcome[0]


def _outcome(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- the test looks at which
        return exc


def test_only_regular_files_are_read(tmp_path):
    (tmp_path / "ok.json").write_text("{}")
    assert read_within(tmp_path / "ok.json") == b"{}"
    hostile_store.fifo(tmp_path / "pipe")
    os.symlink("/dev/zero", tmp_path / "zero")
    os.symlink(tmp_path / "ok.json", tmp_path / "link")
    (tmp_path / "folder").mkdir()
    for name, kind in (("pipe", "a named pipe"), ("zero", "a symbolic link"), ("link", "a symbolic link"),
                       ("folder", "a folder")):
        refused = read_within(tmp_path / name)
        assert isinstance(refused, reading.NotRegularFile) and refused.strerror == f"not a regular file but {kind}"
    with pytest.raises(FileNotFoundError):
        reading.read_bytes(tmp_path / "missing")


def test_a_device_or_a_pipe_is_never_opened(tmp_path, monkeypatch):
    """Opening a device can have effects of its own (a watchdog, a tape): it is refused from its lstat."""
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        device = None  # only root makes device nodes: the pipe alone, then
    pipe = hostile_store.fifo(tmp_path / "pipe")
    opened = []
    real_open = os.open
    monkeypatch.setattr(reading.os, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    for path in filter(None, (device, pipe)):
        with pytest.raises(reading.NotRegularFile):
            reading.read_bytes(path)
    assert opened == []


def test_a_pipe_put_in_place_of_a_checked_file_is_refused_without_blocking(tmp_path, monkeypatch):
    """Swapped in between the check of the path and its opening: the opened file is checked too."""
    (tmp_path / "regular").write_text("{}")
    pipe = hostile_store.fifo(tmp_path / "pipe")
    checked = os.lstat(tmp_path / "regular")
    real_lstat = os.lstat
    monkeypatch.setattr(reading.os, "lstat", lambda p: checked if Path(p) == pipe else real_lstat(p))
    refused = read_within(pipe)
    assert isinstance(refused, reading.NotRegularFile) and "a named pipe" in refused.strerror


def test_a_file_above_the_limit_is_refused_unread(tmp_path):
    huge = hostile_store.sparse(tmp_path / "metrics.csv")
    with pytest.raises(reading.FileTooLarge, match="too large: 42,949,672,960 bytes, more than the 32 MiB"):
        reading.read_bytes(huge, 32 << 20)
    (tmp_path / "small").write_bytes(b"x" * 100)
    assert reading.read_bytes(tmp_path / "small", 100) == b"x" * 100
    with pytest.raises(reading.FileTooLarge):
        reading.read_bytes(tmp_path / "small", 99)
    assert reading.read_tail(huge, 10) == (b"\0" * 10, True)
    assert reading.read_tail(tmp_path / "small", 1000) == (b"x" * 100, False)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a": ' * 1000 + "1" + "}" * 1000, "[" * 65 + "]" * 65])
def test_json_nested_too_deep_is_invalid(text):
    with pytest.raises(ValueError, match="nested more than 64 levels deep"):
        reading.parse_json(text.encode())


def test_json_as_nnexp_writes_it_parses():
    value = {"tags": ["a"], "trial_params": {"x": [1, {"y": None}]}, "members": [str(i) for i in range(100)]}
    assert reading.parse_json(json.dumps(value).encode()) == value
    deepest = "[" * 64 + "]" * 64
    assert reading.parse_json(deepest) == json.loads(deepest)


def test_yaml_aliases_cannot_expand_without_bound_or_refer_to_themselves():
    with pytest.raises(ValueError, match="more than 100,000 values once its aliases are expanded"):
        reading.parse_yaml(hostile_store.BOMB)
    with pytest.raises(ValueError, match="refers to a value that contains it"):
        reading.parse_yaml("a: &x [1, *x]\n")
    with pytest.raises(ValueError, match="nested more than 64 levels deep"):
        reading.parse_yaml("[" * 65 + "]" * 65)
    shared = reading.parse_yaml("base: &b {lr: 0.1, sizes: [1, 2]}\nrun: *b\nmore: {<<: *b, lr: 0.2}\n")
    assert shared == {"base": {"lr": 0.1, "sizes": [1, 2]}, "run": {"lr": 0.1, "sizes": [1, 2]},
                      "more": {"lr": 0.2, "sizes": [1, 2]}}


def test_an_index_row_nested_too_deep_is_read_again_from_its_folder(tmp_path):
    """An index written by an older nnexp may hold a record nested too deep to decode."""
    run = tmp_path / "r1"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "completed", "start_time": 1.0}')
    for path in (run / "summary.json", run):  # old enough for the index to trust its row
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert [r["id"] for r in RunIndex(tmp_path).sync()] == ["r1"]
    with sqlite3.connect(tmp_path / INDEX_NAME) as conn:
        conn.execute("UPDATE runs SET summary = ?, brief = ?", ("[" * 5000 + "]" * 5000,) * 2)
    warnings = []
    records = RunIndex(tmp_path).sync(warnings.append)
    assert [r["id"] for r in records] == ["r1"] and records[0]["summary"]["status"] == "completed"


def test_a_run_folder_replaced_by_a_link_is_not_listed_from_its_index_row(tmp_path):
    """The link leads to a copy with the same times and sizes, so the index's signature of the
    folder is unchanged: the listing must not take the run from the row it has."""
    root = tmp_path / "runs"
    run = root / "r1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text('{"status": "completed", "start_time": 1.0}')
    (run / "metrics.csv").write_text("epoch,val_accuracy\n1,0.5\n")
    for path in (run / "summary.json", run / "metrics.csv", run):
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert [r["id"] for r in RunIndex(root).sync()] == ["r1"]
    shutil.copytree(run, tmp_path / "elsewhere" / "r1")  # times kept
    shutil.rmtree(run)
    os.symlink(tmp_path / "elsewhere" / "r1", run)
    warnings = []
    assert RunIndex(root).sync(warnings.append) == []
    assert warnings == [f"skipping run r1: its folder is a symbolic link (to {tmp_path / 'elsewhere' / 'r1'}), "
                        "not a folder of the store"]
