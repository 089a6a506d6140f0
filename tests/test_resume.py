"""Checkpoints and `nnexp resume`: a run stopped at any moment (Ctrl-C, a
crash, SIGKILL) and resumed ends exactly as if it had never stopped."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nnexp import checkpoint
from nnexp.config import validate
from nnexp.early_stopping import Patience

DEADLINE = 600  # seconds a wait for a run's progress may take on a loaded machine

# Dropout, augmentation and restore_best: every random stream and every piece
# of state a checkpoint must carry is in play.
CONFIG = """\
data: {{dataset: mnist, val_size: 300, batch_size: 64, train_subset: {subset},
        augment: {{rotate: 5, shift: 1}}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 48}}
    - {{type: batchnorm}}
    - {{type: relu}}
    - {{type: dropout, p: 0.2}}
    - {{type: dense, units: 10}}
optimizer: {{name: {optimizer}, lr: 0.01}}
schedule: {{name: onecycle}}
train: {{epochs: {epochs}, seed: 7, restore_best: true}}
tracking: {{store: {store}, name: ck, plots: false}}
"""


@pytest.fixture
def config(tmp_path, store):
    def make(epochs=6, subset=1500, optimizer="adamw"):
        path = tmp_path / f"ck-{epochs}-{subset}-{optimizer}.yaml"
        path.write_text(textwrap.dedent(CONFIG.format(epochs=epochs, subset=subset, optimizer=optimizer,
                                                      store=store)))
        return path
    return make


def run_folders(store: Path) -> list[Path]:
    return sorted(p for p in store.iterdir() if p.is_dir() and (p / "summary.json").exists())


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def assert_same_result(a: Path, b: Path) -> None:
    """Same weights, same metrics (all but wall-clock seconds), same test figures: exact, since a
    resumed run takes the same path on the same shapes (same machine, same BLAS threads)."""
    with np.load(a / "model.npz") as wa, np.load(b / "model.npz") as wb:
        assert wa.files == wb.files
        for key in wa.files:
            assert np.array_equal(wa[key], wb[key]), key

    def rows(run):
        lines = (run / "metrics.csv").read_text().splitlines()
        return [line.rsplit(",", 1)[0] for line in lines]  # drop the seconds column
    assert rows(a) == rows(b)
    sa, sb = summary(a), summary(b)
    for key in ("test_accuracy", "test_loss", "final_val_accuracy", "best_epoch", "epochs_completed"):
        assert sa[key] == sb[key], key


def test_checkpoint_round_trips_every_field(tmp_path):
    rngs = {"a": np.random.default_rng(1)}
    rngs["a"].random(3)
    ckpt = checkpoint.TrainState(epoch=3, step=30, train_seconds=1.5, log_seconds=0.01,
                                 rows=[{"epoch": 1, "val_loss": float("nan")}], stopper=Patience(best_epoch=2),
                                 diagnostics=[[1, 0, "relu", "dead_fraction", 0.25]], checkpoint_seconds=0.5,
                                 rng_states=checkpoint.rng_states(rngs), config_digest="abc",
                                 stop=checkpoint.Ending("pruned", "r"),
                                 model={"0.W": np.arange(6, dtype=np.float32).reshape(2, 3)},
                                 optim={"t": np.array(30)}, best={"0.W": np.ones((2, 3), np.float32)})
    checkpoint.save(tmp_path, ckpt)
    back = checkpoint.load(tmp_path)
    assert (back.epoch, back.step, back.stop, back.config_digest) == (3, 30, checkpoint.Ending("pruned", "r"), "abc")
    assert np.isnan(back.rows[0]["val_loss"]) and back.stopper == Patience(-float("inf"), 2, 0)
    assert back.diagnostics == ckpt.diagnostics and back.checkpoint_seconds == 0.5 and back.ema is None
    assert np.array_equal(back.model["0.W"], ckpt.model["0.W"]) and back.model["0.W"].dtype == np.float32
    assert np.array_equal(back.best["0.W"], ckpt.best["0.W"]) and int(back.optim["t"]) == 30
    fresh = {"a": np.random.default_rng(99)}
    checkpoint.restore_rngs(fresh, back.rng_states)
    assert np.array_equal(fresh["a"].random(4), rngs["a"].random(4))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary file left


def test_a_failed_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    good = checkpoint.TrainState("d", 1, 10, model={"w": np.zeros(3)})
    checkpoint.save(tmp_path, good)
    monkeypatch.setattr(np, "savez", lambda f, **a: (f.write(b"PK\x03\x04half"), (_ for _ in ()).throw(
        OSError(28, "No space left on device")))[1])
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, checkpoint.TrainState("d", 2, 20))
    assert checkpoint.load(tmp_path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


@pytest.mark.parametrize("content, message", [
    (b"", "not an .npz"),
    (b"garbage bytes, not a zip", "not an .npz"),
    ("truncated", "damaged"),
    ("pickled", "pickled objects"),
    ("no-meta", "not an nnexp checkpoint"),
])
def test_damaged_or_hostile_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "checkpoint.npz"
    if content == "truncated":
        checkpoint.save(tmp_path, checkpoint.TrainState("d", 1, 1, model={"w": np.arange(1000.0)}))
        path.write_bytes(path.read_bytes()[:1500])
    elif content == "pickled":
        np.savez(path, meta=np.array("{}"), **{"model/w": np.array([{"evil": 1}], dtype=object)})
    elif content == "no-meta":
        np.savez(path, w=np.zeros(2))
    else:
        path.write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("extra", [[], ["train.ema=0.95"], ["train.data_parallel=2"]])
def test_resume_after_ctrl_c_matches_an_uninterrupted_run(nnexp, config, store, monkeypatch, extra):
    import nnexp.train as train_module

    cfg = config()
    assert nnexp("run", cfg, "-q", *extra)[0] == 0
    [reference] = run_folders(store)
    assert not (reference / "checkpoint.npz").exists()  # a finished run keeps model.npz only

    real_epoch = train_module.train_one_epoch
    monkeypatch.setattr(train_module, "train_one_epoch", _interrupt_on_call(real_epoch, 4))
    assert nnexp("run", cfg, "-q", *extra)[0] == 130
    stopped = [p for p in run_folders(store) if p != reference][0]
    assert summary(stopped)["status"] == "interrupted" and (stopped / "checkpoint.npz").exists()
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)
    code, out, err = nnexp("resume", stopped.name, "--store", store)
    assert code == 0, err
    assert "resuming after epoch 3" in err
    s = summary(stopped)
    assert s["status"] == "completed" and s["resumes"] == 1 and s["resumed_from_epoch"] == 3
    assert_same_result(reference, stopped)


def test_a_kill_between_the_metrics_row_and_the_checkpoint_is_undone(nnexp, config, store, monkeypatch):
    """The row of the epoch whose checkpoint was never written is dropped and
    that epoch trained again: metrics.csv has each epoch once."""
    cfg = config()
    assert nnexp("run", cfg, "-q")[0] == 0
    [reference] = run_folders(store)
    real_save, saves = checkpoint.save, []

    def die_on_third(run_dir, ckpt):
        saves.append(1)
        if len(saves) == 3:
            raise KeyboardInterrupt  # after epoch 3's row was logged, before its checkpoint
        real_save(run_dir, ckpt)

    monkeypatch.setattr(checkpoint, "save", die_on_third)
    assert nnexp("run", cfg, "-q")[0] == 130
    stopped = [p for p in run_folders(store) if p != reference][0]
    assert len((stopped / "metrics.csv").read_text().splitlines()) == 1 + 3
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert nnexp("resume", stopped.name, "--store", store, "-q")[0] == 0
    assert summary(stopped)["resumed_from_epoch"] == 2
    assert_same_result(reference, stopped)


def test_a_crash_after_the_last_epoch_resumes_into_the_final_evaluation(nnexp, config, store, monkeypatch):
    import nnexp.train as train_module

    cfg = config(epochs=3)
    assert nnexp("run", cfg, "-q")[0] == 0
    [reference] = run_folders(store)
    real_save = train_module.save_weights

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_module, "save_weights", full_disk)
    code, _, err = nnexp("run", cfg, "-q")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    stopped = [p for p in run_folders(store) if p != reference][0]
    assert summary(stopped)["status"] == "failed" and "No space left" in summary(stopped)["reason"]
    monkeypatch.setattr(train_module, "save_weights", real_save)
    code, _, err = nnexp("resume", stopped.name, "--store", store, "-q")
    assert code == 0, err
    assert summary(stopped)["resumed_from_epoch"] == 3 and (stopped / "error.before-resume-1.txt").exists()
    assert_same_result(reference, stopped)


def test_resume_refuses_what_it_must_not_touch(nnexp, config, store):
    cfg = config(epochs=1)
    assert nnexp("run", cfg, "-q")[0] == 0
    [run] = run_folders(store)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = nnexp("resume", run.name, "--store", store)
    assert code == 1 and "completed: there is nothing to resume" in err
    code, _, err = nnexp("resume", "no-such-run", "--store", store)
    assert code == 1 and "no run 'no-such-run'" in err
    code, _, err = nnexp("resume", "../etc", "--store", store)
    assert code == 1 and "not a valid run id" in err
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.mark.parametrize("edit", [("lr: 0.01", "lr: 0.02"), ("units: 48", "units: 40")],
                         ids=["learning-rate", "layer-width"])
def test_a_checkpoint_from_another_config_is_refused(nnexp, config, store, monkeypatch, edit):
    """config.yaml edited after the stop (a learning rate: the weights still
    fit; a width: they would not): resume refuses before touching anything."""
    import nnexp.train as train_module

    cfg = config()
    monkeypatch.setattr(train_module, "train_one_epoch", _interrupt_on_call(train_module.train_one_epoch, 2))
    assert nnexp("run", cfg, "-q")[0] == 130
    [run] = run_folders(store)
    text = (run / "config.yaml").read_text()
    assert text.count(edit[0]) == 1
    (run / "config.yaml").write_text(text.replace(*edit))
    before = snapshot_tree(run)
    code, out, err = nnexp("resume", run.name, "--store", store)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: run {run.name}: its checkpoint was written for another config than its config.yaml "
        "(was config.yaml edited?); nothing was changed"]
    assert out == ""
    assert snapshot_tree(run) == before
    assert summary(run)["status"] == "interrupted"


def _interrupt_on_call(real, n):
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_moment_then_resume_is_bit_for_bit(config, store, seed):
    """A real process killed with SIGKILL (no handler runs) at a random point
    of its training, then `nnexp resume`: the same result as a run never killed."""
    cfg = config(epochs=8, subset=3000, optimizer="sgd" if seed == 1 else "adamw")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "nnexp", "run", str(cfg), "-q"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    [reference] = run_folders(store)
    epoch_s = summary(reference)["train_seconds"] / 8

    # The moment: once epoch k (1..5) is logged, then a random part of one
    # reference epoch: at least three epochs are left, room enough for a
    # machine that turns faster, and a loaded one only kills later in training.
    moment = random.Random(seed)
    k, pause = moment.randint(1, 5), moment.uniform(0.0, 1.0) * epoch_s
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + DEADLINE
    while len(_logged_rows([p for p in run_folders(store) if p != reference])) < k:
        assert time.monotonic() < deadline, f"epoch {k} not logged after {DEADLINE} s"
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before epoch {k} was logged"
        time.sleep(0.02)
    time.sleep(pause)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = [p for p in run_folders(store) if p != reference][0]
    assert summary(killed)["status"] == "running"  # nothing ran to record the kill...
    listed = subprocess.run([sys.executable, "-m", "nnexp", "runs", "--store", str(store)],
                            env=env, capture_output=True, text=True, check=True)
    assert [line.split()[2] for line in listed.stdout.splitlines() if line.startswith(killed.name)] == ["dead"]
    done = subprocess.run([sys.executable, "-m", "nnexp", "resume", killed.name, "--store", str(store), "-q"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert summary(killed)["status"] == "completed" and summary(killed)["resumes"] == 1
    assert_same_result(reference, killed)


def _logged_rows(runs: list[Path]) -> list[str]:
    """The epoch rows in the metrics.csv of the one run in ``runs`` (none yet: [])."""
    try:
        return (runs[0] / "metrics.csv").read_text().splitlines()[1:] if runs else []
    except FileNotFoundError:
        return []


def test_a_checkpoint_that_does_not_fit_the_model_changes_nothing(nnexp, config, store, monkeypatch):
    import nnexp.train as train_module

    monkeypatch.setattr(train_module, "train_one_epoch", _interrupt_on_call(train_module.train_one_epoch, 3))
    assert nnexp("run", config(), "-q")[0] == 130
    [run] = run_folders(store)
    path = run / "checkpoint.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["model/1.W"] = arrays["model/1.W"][:, :3]  # a weight of the wrong shape
    np.savez(path, **arrays)
    before = snapshot_files(run)
    code, _, err = nnexp("resume", run.name, "--store", store)
    assert code == 1 and "does not fit the model" in err and "Traceback" not in err
    assert snapshot_files(run) == before and summary(run)["status"] == "interrupted"


def snapshot_files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


def snapshot_tree(folder: Path) -> dict:
    """Every file under ``folder`` (the resume lock file aside, which holds nothing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _save_with_meta(tmp_path, edit):
    """A checkpoint whose metadata ``edit(meta)`` changed, written as save() writes one."""
    checkpoint.save(tmp_path, checkpoint.TrainState("d", 1, 10, train_seconds=0.5, model={"w": np.zeros(2)}))
    with np.load(tmp_path / "checkpoint.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))
    edit(meta)
    np.savez(tmp_path / "checkpoint.npz", **{**arrays, "meta": np.array(json.dumps(meta))})


def test_a_checkpoint_from_before_the_diagnostics_loads_with_no_diagnostics_time(tmp_path):
    checkpoint.save(tmp_path, checkpoint.TrainState("d", 1, 10, train_seconds=0.5))
    assert checkpoint.load(tmp_path).diagnostics_seconds == 0.0
    _save_with_meta(tmp_path, lambda meta: meta.pop("diagnostics_seconds"))
    assert checkpoint.load(tmp_path).diagnostics_seconds == 0.0


def test_a_format_1_checkpoint_loads_without_the_fields_it_did_not_have(tmp_path):
    def as_format_1(meta):
        for key in ("diagnostics", "checkpoint_seconds", "diagnostics_seconds", "stop"):
            meta.pop(key)
        meta["format"] = 1
    _save_with_meta(tmp_path, as_format_1)
    back = checkpoint.load(tmp_path)
    assert (back.epoch, back.step, back.train_seconds) == (1, 10, 0.5)
    assert (back.diagnostics, back.checkpoint_seconds, back.stop) == ([], 0.0, None)


def test_a_checkpoint_of_a_newer_format_is_one_clear_error(tmp_path):
    _save_with_meta(tmp_path, lambda meta: meta.update(format=checkpoint.FORMAT + 1))
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint format {checkpoint.FORMAT + 1}; this one reads"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("edit", [lambda m: m.pop("step"), lambda m: m.update(rows=5), lambda m: m.update(epoch="x"), lambda m: m.update(step=float("inf")),
                                  lambda m: m.update(stopper={"best": "high"}), lambda m: m.update(stopper={"x": 1}),
                                  lambda m: m.update(stop={"status": "exploded"}), lambda m: m.update(diagnostics=[3])],
                         ids=["a-field-missing", "rows-not-a-list", "epoch-not-a-number", "step-infinite", "stopper-not-a-number",
                              "stopper-unknown-key", "stop-unknown-status", "diagnostics-rows-not-rows"])
def test_damaged_metadata_is_one_clear_error(tmp_path, edit):
    _save_with_meta(tmp_path, edit)
    with pytest.raises(checkpoint.CheckpointError, match="its metadata is damaged"):
        checkpoint.load(tmp_path)


def test_an_unreadable_checkpoint_is_named(tmp_path):
    (tmp_path / "checkpoint.npz").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="cannot read .*checkpoint.npz"):
        checkpoint.load(tmp_path)


def test_removing_a_checkpoint_that_is_not_there_is_fine(tmp_path):
    checkpoint.save(tmp_path, checkpoint.TrainState("d", 1, 10, train_seconds=0.5))
    checkpoint.remove(tmp_path)
    checkpoint.remove(tmp_path)
    assert checkpoint.load(tmp_path) is None


def test_the_engine_is_part_of_what_a_checkpoint_must_match():
    layers = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    digest = {engine: checkpoint.config_digest(validate({"model": {"layers": layers, "engine": engine}}))
              for engine in ("fast", "reference")}
    assert digest["fast"] != digest["reference"]
    # a config from before model.engine existed (the fast engine then) keeps its digest
    cfg = validate({"model": {"layers": layers, "engine": "fast"}})
    del cfg["model"]["engine"]
    assert checkpoint.config_digest(cfg) == digest["fast"]
