"""Hostile and broken input: a full disk, a read-only store, damaged run
folders, and fuzzers for the config loader, overrides, checkpoints, run
records and images. Each gives a result or nnexp's own one-line error, exits
non-zero where it failed, and leaves every other run as it was."""

import io
import json
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnexp import checkpoint
from nnexp.config import load_config, validate
from nnexp.errors import NnexpError

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
        checkpoint.save(Path(tmp), checkpoint.Checkpoint(
            2, 20, 1.0, 0.1, [{"epoch": 1}], {"best": 0.5}, {"init": np.random.default_rng(0).bit_generator.state},
            "digest", model={"0.W": np.ones((3, 2), np.float32)}, optim={"t": np.array(20)}))
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
    from nnexp.compare.select import select_records
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
        selected, sweep = select_records(tmp, sweep_ref=None, where=None)
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
