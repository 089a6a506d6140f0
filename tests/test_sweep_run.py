"""Running sweeps: trials as runs, parallel workers, failures, pruning, resume
after Ctrl-C and after SIGKILL, one driver per sweep."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

BASE = """\
data: {{dataset: mnist, val_size: 200, batch_size: 64, train_subset: {subset}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: {units}}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.002}}
train: {{epochs: {epochs}, seed: 0, eval_batch_size: 500}}
tracking: {{store: {store}, plots: false}}
"""


@pytest.fixture
def sweep_dir(tmp_path, store):
    def make(spec, subset=600, units=16, epochs=2):
        (tmp_path / "base.yaml").write_text(BASE.format(subset=subset, units=units, epochs=epochs, store=store))
        path = tmp_path / "spec.yaml"
        path.write_text("base: base.yaml\n" + textwrap.dedent(spec))
        return path
    return make


def summaries(store: Path, prefix: str = "") -> dict[str, dict]:
    out = {}
    for path in sorted(store.iterdir()) if store.is_dir() else []:
        if path.name.startswith(prefix) and (path / "summary.json").exists():
            out[path.name] = json.loads((path / "summary.json").read_text())
    return out


def sweep_id(nnexp, spec) -> str:
    code, out, err = nnexp("sweep", spec, "--dry-run")
    assert code == 0, err
    return out.split()[0].rsplit("-t", 1)[0]


def test_every_trial_is_a_run_with_its_values_and_a_rerun_skips_them(nnexp, sweep_dir, store):
    spec = sweep_dir("""
        parameters:
          optimizer.lr: [0.001, 0.01]
        repeats: 2
    """)
    code, out, err = nnexp("sweep", spec, "--workers", "2", "-q")
    assert code == 0, err
    runs = summaries(store)
    assert len(runs) == 4
    assert {s["status"] for s in runs.values()} == {"completed"}
    assert {(s["trial_params"]["optimizer.lr"], s["seed"]) for s in runs.values()} == {
        (0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)}
    sweep = {s["sweep"] for s in runs.values()}
    assert len(sweep) == 1 and "best: trial" in out and f"--sweep {sweep.pop()}" in out
    mtimes = {p: (store / p / "summary.json").stat().st_mtime_ns for p in runs}
    code, out, err = nnexp("sweep", spec, "-q")
    assert code == 0 and "4 completed" in out
    assert mtimes == {p: (store / p / "summary.json").stat().st_mtime_ns for p in runs}  # untouched
    code, out, _ = nnexp("sweeps", "--store", store, "--json")
    state = json.loads(out)[0]
    assert state["status"] == "completed" and state["counts"] == {"completed": 4} and state["trials"] == 4


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(nnexp, sweep_dir, store):
    # lr 1e30 with plain SGD diverges: that trial fails, the others complete
    spec = sweep_dir("""
        overrides: {optimizer: {name: sgd, lr: 0.1}}
        parameters:
          optimizer.lr: [0.05, 1.0e+30, 0.1]
    """)
    code, out, err = nnexp("sweep", spec, "--workers", "1", "-q")
    assert code == 1
    runs = summaries(store)
    statuses = sorted((s["trial"], s["status"]) for s in runs.values())
    assert statuses == [(0, "completed"), (1, "failed"), (2, "completed")]
    failed = [s for s in runs.values() if s["status"] == "failed"][0]
    assert "diverged" in failed["reason"]


def test_fail_fast_stops_at_the_first_failure(nnexp, sweep_dir, store):
    spec = sweep_dir("""
        overrides: {optimizer: {name: sgd, lr: 0.1}}
        parameters:
          optimizer.lr: [1.0e+30, 0.05, 0.1]
    """)
    code, out, err = nnexp("sweep", spec, "--workers", "1", "--fail-fast", "-q")
    assert code == 1
    assert [s["status"] for s in summaries(store).values()] == ["failed"]  # nothing else started


def test_halving_prunes_and_records_pruned_trials(nnexp, sweep_dir, store):
    spec = sweep_dir("""
        method: random
        n_trials: 6
        seed: 2
        parameters:
          optimizer.lr: {distribution: loguniform, low: 1.0e-5, high: 0.01}
        halving: {min_epochs: 1, eta: 3}
    """, epochs=3)
    code, out, err = nnexp("sweep", spec, "--workers", "1", "-q")
    assert code == 0, err
    runs = summaries(store)
    statuses = [s["status"] for s in runs.values()]
    assert len(runs) == 6 and "pruned" in statuses and "completed" in statuses
    for s in runs.values():
        if s["status"] == "pruned":
            assert s["epochs_completed"] < 3 and "pruned at epoch" in s["reason"]
            assert s["test_accuracy"] is not None  # a pruned run is complete, only shorter
        else:
            assert s["epochs_completed"] == 3


HALVING = """
    method: random
    n_trials: 6
    seed: 2
    parameters:
      optimizer.lr: {distribution: loguniform, low: 1.0e-5, high: 0.01}
    halving: {min_epochs: 1, eta: 3}
"""


def run_files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_rerun_of_a_halving_sweep_leaves_its_pruned_trials_alone(nnexp, sweep_dir, store):
    spec = sweep_dir(HALVING, epochs=3)
    code, out, err = nnexp("sweep", spec, "--workers", "1", "-q")
    assert code == 0, err
    first = summaries(store)
    pruned = sorted(name for name, s in first.items() if s["status"] == "pruned")
    assert pruned and len(pruned) < len(first)
    before = {name: run_files(store / name) for name in first}
    code, out, err = nnexp("sweep", spec, "--workers", "1")
    assert code == 0, err
    for name in pruned:  # not trained again: no earlier attempt set aside, not one byte changed
        assert not (store / name / "attempts").exists(), name
        assert run_files(store / name) == before[name], name
    assert {name: run_files(store / name) for name in first} == before
    assert "6 of 6 trials already finished, 0 to run" in err
    assert f"{6 - len(pruned)} completed, {len(pruned)} pruned" in out
    code, out, _ = nnexp("sweeps", "--store", store, "--json")
    state = json.loads(out)[0]
    assert state["status"] == "completed"
    assert state["counts"] == {"completed": 6 - len(pruned), "pruned": len(pruned)}


def test_a_resumed_halving_sweep_prunes_as_one_never_stopped(nnexp, sweep_dir, store):
    """The later trials' folders removed (as if never started): the rerun
    replays the rungs the finished trials passed, so its pruning decisions
    are those of the sweep run in one go (one worker: decisions are ordered)."""
    spec = sweep_dir(HALVING, epochs=3)
    code, out, err = nnexp("sweep", spec, "--workers", "1", "-q")
    assert code == 0, err
    whole = {s["trial"]: s["status"] for s in summaries(store).values()}
    assert sorted(whole) == list(range(6))
    later = [name for name, s in summaries(store).items() if s["trial"] >= 3]
    assert {whole[t] for t in range(3, 6)} >= {"pruned"}  # a trial pruned only by the rungs' history
    for name in later:
        shutil.rmtree(store / name)
    code, out, err = nnexp("sweep", spec, "--workers", "1")
    assert code == 0, err
    assert "3 of 6 trials already finished, 3 to run" in err
    assert {s["trial"]: s["status"] for s in summaries(store).values()} == whole


def test_a_second_driver_for_the_same_sweep_is_refused(nnexp, sweep_dir, store):
    import fcntl

    spec = sweep_dir("parameters: {optimizer.lr: [0.001]}\n")
    sid = sweep_id(nnexp, spec)
    lock_dir = store / "sweeps" / sid
    lock_dir.mkdir(parents=True)
    with open(lock_dir / "lock", "w") as f:
        f.write("pid 123 on elsewhere")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)
        code, _, err = nnexp("sweep", spec, "-q")
    assert code == 1 and "already running" in err and "pid 123" in err
    assert summaries(store) == {}


def _start_driver(spec, store) -> subprocess.Popen:
    env = dict(os.environ, NNEXP_STORE=str(store))
    return subprocess.Popen([sys.executable, "-m", "nnexp", "sweep", str(spec), "--workers", "2", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


DEADLINE = 600  # seconds any wait for a sweep's progress may take on a loaded machine


def _wait_until(condition, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie waiting to be reaped does not)."""
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _some_trial_mid_training(store, epochs: int = 1) -> bool:
    return any(s.get("status") == "running" and s.get("epochs_completed", 0) >= epochs
               for s in summaries(store).values())


SLOW = """
    parameters:
      optimizer.lr: [0.001, 0.002, 0.003]
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_the_driver_is_stopped(nnexp, sweep_dir, store, sig):
    """Stop the driver mid-trial (SIGKILL: no chance to clean up; SIGINT:
    Ctrl-C), run the same command again: every trial exactly once, completed."""
    spec = sweep_dir(SLOW, subset=8000, units=128, epochs=20)
    driver = _start_driver(spec, store)
    try:
        assert _wait_until(lambda: _some_trial_mid_training(store, epochs=2) or driver.poll() is not None)
        assert driver.poll() is None, driver.communicate()
    finally:
        driver.send_signal(sig)
    driver.wait(timeout=DEADLINE)
    if sig == signal.SIGINT:
        assert driver.returncode == 130
    # the workers notice and record their trials as interrupted, not left 'running'
    assert _wait_until(lambda: all(s["status"] != "running" for s in summaries(store).values()))
    stopped = summaries(store)
    assert stopped and {s["status"] for s in stopped.values()} <= {"interrupted", "completed"}
    assert "interrupted" in {s["status"] for s in stopped.values()}

    # resume: the same spec is the same sweep
    for path in stopped:
        assert (store / path / "config.yaml").exists()
    code, out, err = nnexp("sweep", spec, "--workers", "2", "-q", "--store", store)
    assert code == 0, err
    final = summaries(store)
    assert len(final) == 3 and sorted(s["trial"] for s in final.values()) == [0, 1, 2]
    assert {s["status"] for s in final.values()} == {"completed"}
    resumed = 0
    for name, before in stopped.items():
        if before["status"] == "interrupted":
            after = final[name]
            assert after["attempt"] == before.get("attempt", 1) + 1
            assert _epochs_logged(store / name) == list(range(1, 21))
            if before["epochs_completed"] >= 2:  # it had a checkpoint: went on from it, not from epoch 1
                assert after["resumed_from_epoch"] >= before["epochs_completed"] - 1 >= 1
                resumed += 1
    assert resumed >= 1


def _epochs_logged(run: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]


def test_sigkill_of_the_whole_sweep_at_random_moments_loses_and_repeats_nothing(
        nnexp, sweep_dir, store, tmp_path):
    """SIGKILL to the driver and its workers at once (no handler runs), three
    times at random moments, then the same command to the end: every trial
    exactly once, completed trials untouched, the others resumed from their
    checkpoints -- and each trial's weights equal those of a sweep never killed."""
    import random

    spec = sweep_dir("parameters: {optimizer.lr: [0.001, 0.002, 0.003]}\n", subset=4000, units=128, epochs=8)
    env = dict(os.environ, NNEXP_STORE=str(store))
    cmd = [sys.executable, "-m", "nnexp", "sweep", str(spec), "--workers", "2", "-q"]
    rng = random.Random(4)
    finished_at: dict[str, int] = {}
    for _ in range(3):
        driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        # a random moment once some trial is under way (or the sweep has ended: later rounds may find it done)
        assert _wait_until(lambda: _some_trial_mid_training(store, epochs=2) or driver.poll() is not None)
        time.sleep(rng.uniform(0.0, 1.0))
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _wait_until(lambda: not _group_alive(driver.pid)), "the killed sweep's workers still run"
        for name, s in summaries(store).items():
            mtime = (store / name / "summary.json").stat().st_mtime_ns
            if s["status"] == "completed":
                assert finished_at.setdefault(name, mtime) == mtime  # completed earlier: never touched again
    code, _, err = nnexp("sweep", spec, "--workers", "2", "-q")
    assert code == 0, err
    final = summaries(store)
    assert len(final) == 3 and sorted(s["trial"] for s in final.values()) == [0, 1, 2]
    assert {s["status"] for s in final.values()} == {"completed"}
    for name in final:
        assert _epochs_logged(store / name) == list(range(1, 9))
        if name in finished_at:
            assert (store / name / "summary.json").stat().st_mtime_ns == finished_at[name]
    assert any(s.get("resumed_from_epoch") for s in final.values()), "no trial was resumed from a checkpoint"

    # the reference: the same trials in another store, never killed
    other = tmp_path / "other-store"
    code, _, err = nnexp("sweep", spec, "--workers", "2", "-q", "--store", other)
    assert code == 0, err
    reference = {s["trial"]: name for name, s in summaries(other).items()}
    for name, s in final.items():
        with np.load(store / name / "model.npz") as a, np.load(other / reference[s["trial"]] / "model.npz") as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_two_sweeps_and_a_run_writing_one_store_at_once(sweep_dir, store, tmp_path):
    """Two sweeps (different specs) and a plain run share a store, concurrently:
    every run is in the folders and in the index listing, exactly once."""
    from nnexp.tracking import RunStore

    first = sweep_dir("parameters: {optimizer.lr: [0.001, 0.002, 0.003]}\n")
    second = tmp_path / "second.yaml"
    second.write_text("name: second\nbase: base.yaml\nparameters: {data.batch_size: [32, 64, 128]}\n")
    env = dict(os.environ, NNEXP_STORE=str(store))
    procs = [subprocess.Popen([sys.executable, "-m", "nnexp", "sweep", str(spec), "--workers", "1", "-q"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for spec in (first, second)]
    procs.append(subprocess.Popen([sys.executable, "-m", "nnexp", "run", str(tmp_path / "base.yaml"), "-q"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
    folders = summaries(store)
    assert len(folders) == 7 and {s["status"] for s in folders.values()} == {"completed"}
    listed = [r["id"] for r in RunStore(store).records()]
    assert sorted(listed) == sorted(folders)
