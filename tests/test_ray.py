"""Sweeps on Ray: `nnexp sweep SPEC --executor ray [--address ADDR]`.

The cluster tests start a real two-node Ray cluster on this machine (a head
node and a worker node, loopback addresses, separate temporary directories),
run sweeps across it, and stop the worker node mid-sweep. Every Ray instance
a test starts has a temporary directory of its own, and only the processes
that name it are stopped: other Ray instances on the machine (another test
run's) are neither joined nor touched.

Without Ray installed, the tests that need it skip, and fail under
NNEXP_STRICT_SKIPS=1 (CI installs Ray); the message shown when Ray is
missing is tested either way."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from strict_skips import require

pytestmark = pytest.mark.integration

DEADLINE = 600  # seconds any wait for a state of a sweep may take on a loaded machine

BASE = """\
data: {{dataset: mnist, val_size: 300, batch_size: 64, train_subset: {subset}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 64}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.002}}
train: {{epochs: {epochs}, seed: 0, eval_batch_size: 500}}
tracking: {{plots: false}}
"""

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           # notice a dead node within seconds, not the default half minute
           "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "3"}


def write_spec(tmp_path: Path, spec: str, subset=3000, epochs=6) -> Path:
    (tmp_path / "base.yaml").write_text(BASE.format(subset=subset, epochs=epochs))
    path = tmp_path / "spec.yaml"
    path.write_text("base: base.yaml\n" + textwrap.dedent(spec))
    return path


def summaries(store: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "summary.json").read_text())
            for p in sorted(store.iterdir()) if (p / "summary.json").exists()} if store.is_dir() else {}


def epochs_logged(run: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]


def without_seconds(run: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args, env, timeout=DEADLINE):
    exe = Path(sys.executable).with_name("ray")
    return subprocess.run([str(exe), *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


def wait_until(condition, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {timeout:.0f} s for {what}"
        time.sleep(0.1)


def processes_naming(marker: Path) -> list[int]:
    """Live processes whose command line names ``marker`` (a Ray instance's
    temporary directory), with all their descendants (Ray's workers rename
    their command line)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state, ppid = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state not in ("Z", "X"):
            procs[int(entry)] = (int(ppid), cmdline)
    found = {pid for pid, (_, cmdline) in procs.items() if str(marker).encode() in cmdline}
    while True:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        if not children:
            return sorted(found)
        found |= children


def stop_instance(marker: Path) -> int:
    """SIGKILL the processes of the Ray instance(s) whose temporary directory is
    ``marker``; returns how many were signalled."""
    killed = 0
    for pid in processes_naming(marker):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


@pytest.fixture
def needs_ray():
    require("ray", 'Ray is not installed (pip install "nnexp[ray]")')


@pytest.fixture
def ray_env(needs_ray, tmp_path):
    """The environment for a command that starts its own local Ray instance:
    its temporary directory (RAY_TMPDIR) is this test's, so it neither joins
    another instance on the machine nor is found by one; stopped afterwards."""
    short = Path(f"/tmp/nnexp-ray-{os.getpid()}-{tmp_path.name[-12:]}")  # Ray's socket paths must stay short
    short.mkdir(parents=True)
    try:
        yield dict(os.environ, **RAY_ENV, RAY_TMPDIR=str(short))
    finally:
        stop_instance(short)
        wait_until(lambda: not processes_naming(short), f"the processes of the Ray instance in {short} to end", 60)
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def cluster(ray_env):
    """A head node (1 CPU) and a worker node (2 CPUs) on 127.0.0.1; yields
    (address, worker temp dir, env) and stops both."""
    short = Path(ray_env["RAY_TMPDIR"])
    head_tmp, worker_tmp = short / "head", short / "worker"
    env = ray_env
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--min-worker-port", "0",
              "--max-worker-port", "0"]
    head = ray_cli("start", "--head", "--port", port, "--num-cpus", 1, "--temp-dir", head_tmp,
                   "--include-dashboard", "false", *common, env=env)
    if head.returncode != 0:
        pytest.fail(f"ray start --head failed: {head.stderr[-2000:]}")
    address = f"127.0.0.1:{port}"
    worker = ray_cli("start", "--address", address, "--num-cpus", 2, "--temp-dir", worker_tmp, *common, env=env)
    if worker.returncode != 0:
        pytest.fail(f"ray start (worker node) failed: {worker.stderr[-2000:]}")
    yield address, worker_tmp, env  # ray_env stops both nodes (`ray stop` would stop every Ray on the machine)


def node_ids(address: str, env) -> dict[str, str]:
    """{node id: temporary directory of its raylet} of the cluster's live nodes."""
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps({n['NodeID']: n['ObjectStoreSocketName'] for n in ray.nodes() if n['Alive']}))")
    out = subprocess.run([sys.executable, "-c", code % address], env=env, capture_output=True, text=True,
                         timeout=DEADLINE, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_ray_the_flag_says_how_to_install_it(nnexp, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    spec = write_spec(tmp_path, "parameters: {optimizer.lr: [0.001]}\n")
    code, _, err = nnexp("sweep", spec, "--executor", "ray", "--store", tmp_path / "runs")
    assert code == 2 and 'pip install "nnexp[ray]"' in err
    assert not (tmp_path / "runs").exists()
    code, _, err = nnexp("sweep", spec, "--address", "auto", "--store", tmp_path / "runs")
    assert code == 2 and "--executor ray" in err


def test_an_unreachable_cluster_is_named_at_once_and_nothing_is_written(nnexp, tmp_path, needs_ray):
    spec = write_spec(tmp_path, "parameters: {optimizer.lr: [0.001]}\n")
    code, _, err = nnexp("sweep", spec, "--executor", "ray", "--address", f"127.0.0.1:{free_port()}",
                         "--store", tmp_path / "runs")
    assert code == 1 and "cannot reach the Ray cluster" in err
    code, _, err = nnexp("sweep", spec, "--executor", "ray", "--address", "nowhere", "--store", tmp_path / "runs")
    assert code == 2 and "expected HOST:PORT" in err
    assert not (tmp_path / "runs").exists()


def test_trials_on_a_local_ray_instance_equal_local_workers_and_halving_prunes(nnexp, tmp_path, ray_env):
    spec = write_spec(tmp_path, """
        parameters: {optimizer.lr: [0.0003, 0.001, 0.003, 0.01]}
        halving: {min_epochs: 2, eta: 2}
    """)
    ray_store, local_store = tmp_path / "ray", tmp_path / "local"
    done = subprocess.run([sys.executable, "-m", "nnexp", "sweep", str(spec), "--executor", "ray", "-q",
                           "--store", str(ray_store)], env=ray_env, capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert nnexp("sweep", spec, "--workers", "1", "-q", "--store", local_store)[0] == 0
    on_ray, local = summaries(ray_store), summaries(local_store)
    assert sorted(on_ray) == sorted(local) and len(on_ray) == 4
    assert {s["status"] for s in on_ray.values()} == {"completed", "pruned"}
    assert all(s["executor"] == "ray" and s["ray_node"] and s["blas_threads"] == "1" for s in on_ray.values())
    for name, s in local.items():  # pruning with one local worker is sequential; on Ray it is asynchronous
        if s["status"] == "completed" and on_ray[name]["status"] == "completed":
            assert without_seconds(ray_store / name) == without_seconds(local_store / name)
            with np.load(ray_store / name / "model.npz") as a, np.load(local_store / name / "model.npz") as b:
                assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not any((ray_store / n / "checkpoint.npz").exists() for n in on_ray)


def test_a_tpe_sweep_on_ray_proposes_and_trains_as_local_workers(nnexp, tmp_path, ray_env):
    """method: tpe with batch: 2 (proposals independent of timing): Ray's tasks get the points the local
    workers get, train them to the same numbers, and the study is told each one."""
    require("optuna", 'Optuna is not installed (pip install "nnexp[tpe]")')
    spec = write_spec(tmp_path, """
        method: tpe
        n_trials: 5
        batch: 2
        startup_trials: 2
        seed: 3
        parameters:
          optimizer.lr: {distribution: loguniform, low: 1.0e-4, high: 0.05}
          model.layers.1.units: {distribution: int, low: 8, high: 64, log: true}
    """, subset=1000, epochs=2)
    ray_store, local_store = tmp_path / "ray", tmp_path / "local"
    done = subprocess.run([sys.executable, "-m", "nnexp", "sweep", str(spec), "--executor", "ray", "-q",
                           "--store", str(ray_store)], env=ray_env, capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert nnexp("sweep", spec, "--workers", "2", "-q", "--store", local_store)[0] == 0

    def plan(store):
        (path,) = (store / "sweeps").glob("*/plan.json")
        return [(t["index"], t["params"], t["seed"]) for t in json.loads(path.read_text())]

    assert plan(ray_store) == plan(local_store) and len(plan(ray_store)) == 5
    assert len({json.dumps(p, sort_keys=True) for _, p, _ in plan(ray_store)}) == 5   # five different points
    on_ray, local = summaries(ray_store), summaries(local_store)
    assert sorted(on_ray) == sorted(local) and {s["status"] for s in on_ray.values()} == {"completed"}
    assert all(s["executor"] == "ray" for s in on_ray.values())
    for name in on_ray:
        assert without_seconds(ray_store / name) == without_seconds(local_store / name)


def test_a_worker_node_that_dies_mid_sweep_loses_nothing(cluster, tmp_path):
    """Six trials on a head (1 CPU) and a worker node (2 CPUs); the worker
    node is killed once two of its trials have checkpoints. Its trials are
    retried on the head from their last checkpoints; every trial ends in the
    store exactly once, completed, with each epoch logged once."""
    address, worker_tmp, env = cluster
    spec = write_spec(tmp_path, "parameters: {optimizer.lr: [0.001, 0.0015, 0.002, 0.0025, 0.003, 0.0035]}\n",
                      subset=6000, epochs=8)
    store = tmp_path / "runs"
    nodes = node_ids(address, env)
    [worker_node] = [n for n, sock in nodes.items() if str(worker_tmp) in sock]
    driver = subprocess.Popen([sys.executable, "-m", "nnexp", "sweep", str(spec), "--executor", "ray",
                               "--address", address, "-q", "--store", str(store)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def on_worker_with_checkpoint():
        assert driver.poll() is None, driver.communicate()
        return [n for n, s in summaries(store).items() if s.get("ray_node") == worker_node
                and s.get("status") == "running" and (store / n / "checkpoint.npz").exists()]

    wait_until(on_worker_with_checkpoint, "a trial on the worker node to write a checkpoint")
    caught = on_worker_with_checkpoint()
    assert stop_instance(worker_tmp) > 0
    out, err = driver.communicate(timeout=DEADLINE)
    assert driver.returncode == 0, err
    final = summaries(store)
    assert len(final) == 6 and sorted(s["trial"] for s in final.values()) == list(range(6))
    assert {s["status"] for s in final.values()} == {"completed"}
    for name in final:
        assert epochs_logged(store / name) == list(range(1, 9))
    for name in caught:  # went on from its checkpoint, on the surviving node
        assert final[name]["resumed_from_epoch"] >= 1 and final[name]["ray_node"] != worker_node


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace (unshare)")
def test_workers_never_touch_the_store_its_files_come_through_ray(cluster, tmp_path):
    """The driver runs in a mount namespace of its own where the store is a
    private tmpfs: Ray's workers (started outside it) cannot see the store.
    Every file still reaches it, and nothing is written at the store's path
    as the workers see it."""
    address, _, env = cluster
    spec = write_spec(tmp_path, "parameters: {optimizer.lr: [0.001, 0.002, 0.003]}\n", subset=2000, epochs=3)
    store, copy = tmp_path / "store", tmp_path / "copy"
    store.mkdir()
    copy.mkdir()
    script = (f"mount -t tmpfs tmpfs {store} && {sys.executable} -m nnexp sweep {spec} --executor ray "
              f"--address {address} -q --store {store}; rc=$?; cp -a {store}/. {copy}/; exit $rc")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=DEADLINE)
    if done.returncode != 0 and "unshare" in done.stderr and "Operation not permitted" in done.stderr:
        pytest.skip(f"no mount namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert list(store.iterdir()) == []  # what the workers' side sees: nothing was written there
    final = summaries(copy)
    assert len(final) == 3 and {s["status"] for s in final.values()} == {"completed"}
    for name in final:
        assert (copy / name / "model.npz").stat().st_size > 0 and epochs_logged(copy / name) == [1, 2, 3]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_driver_and_the_rerun_resume_the_trials(tmp_path, sig, ray_env):
    """Ctrl-C cancels the tasks (their trials end `interrupted`, exit 130);
    SIGKILL ends the Ray job with the driver (its trials stay `running`).
    Either way, running the command again finishes every trial exactly once,
    the stopped ones from their checkpoints."""
    spec = write_spec(tmp_path, "parameters: {optimizer.lr: [0.001, 0.002, 0.003, 0.004]}\n",
                      subset=8000, epochs=12)
    store = tmp_path / "runs"
    cmd = [sys.executable, "-m", "nnexp", "sweep", str(spec), "--executor", "ray", "-q", "--store", str(store)]
    driver = subprocess.Popen(cmd, env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def some_trial_past_epoch_2():
        assert driver.poll() is None, driver.communicate()
        return any(s.get("status") == "running" and s.get("epochs_completed", 0) >= 2
                   for s in summaries(store).values())

    wait_until(some_trial_past_epoch_2, "a trial to finish its second epoch")
    driver.send_signal(sig)
    _, err = driver.communicate(timeout=DEADLINE)
    stopped = summaries(store)
    if sig == signal.SIGINT:
        assert driver.returncode == 130, err
        assert stopped and "running" not in {s["status"] for s in stopped.values()}
        assert "interrupted" in {s["status"] for s in stopped.values()}
    else:  # the Ray instance the driver started, and its tasks, end with it
        ray_dir = Path(ray_env["RAY_TMPDIR"])
        wait_until(lambda: not processes_naming(ray_dir), "the killed driver's Ray processes to end")

    done = subprocess.run(cmd, env=ray_env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    final = summaries(store)
    assert len(final) == 4 and {s["status"] for s in final.values()} == {"completed"}
    for name in final:
        assert epochs_logged(store / name) == list(range(1, 13))
    assert any(final[n].get("resumed_from_epoch", 0) >= 1 for n, s in stopped.items() if s["status"] != "completed")


def test_a_failing_trial_on_ray_is_recorded_and_the_sweep_goes_on(tmp_path, ray_env):
    spec = write_spec(tmp_path, """
        overrides: {optimizer: {name: sgd, lr: 0.1}}
        parameters: {optimizer.lr: [0.1, 1.0e+30]}
    """, subset=1000, epochs=2)
    store = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "nnexp", "sweep", str(spec), "--executor", "ray", "-q",
                           "--cpus-per-trial", "2", "--store", str(store)], env=ray_env,
                          capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 1, done.stderr
    final = summaries(store)
    by_lr = {s["trial_params"]["optimizer.lr"]: s for s in final.values()}
    assert by_lr[0.1]["status"] == "completed" and by_lr[0.1]["blas_threads"] == "2"
    assert by_lr[1e30]["status"] == "failed" and "diverged" in by_lr[1e30]["reason"]
    assert "1 completed, 1 failed" in done.stdout


OWN_SCRIPT = """\
import argparse, nnexp
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()
with nnexp.init(config={"lr": args.lr}) as run:
    for epoch in range(1, 4):
        run.log({"epoch": epoch, "val_accuracy": args.lr * epoch + run.config["seed"] / 100})
"""

OWN_FUNCTION = """\
import nnexp

def train(params):
    with nnexp.init(config={"width": 3}) as run:
        for step in range(5):
            run.log({"score": params["lr"] * step + run.config["width"]}, step=step)
"""


@pytest.mark.parametrize("kind", ["command", "function"])
def test_a_sweep_of_your_own_code_on_ray_makes_each_trial_a_completed_run(tmp_path, ray_env, kind):
    (tmp_path / "own.py").write_text(OWN_SCRIPT if kind == "command" else OWN_FUNCTION)
    script = ("command: python own.py --lr {lr}\nmetric: val_accuracy\nrepeats: 2\n" if kind == "command" else
              "function: own.py:train\nmetric: score\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: own-{kind}\n{script}parameters: {{lr: [0.1, 0.2]}}\n")
    store = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "nnexp", "sweep", str(spec), "--executor", "ray", "-q",
                           "--store", str(store)], env=ray_env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    final = summaries(store)
    seeds = (0, 1) if kind == "command" else (None,)
    assert len(final) == 2 * len(seeds)
    assert all(s["status"] == "completed" and s["executor"] == "ray" and s["ray_node"] for s in final.values())
    found = set()
    for name, s in final.items():
        config = (store / name / "config.yaml").read_text()
        lines = (store / name / "metrics.csv").read_text().splitlines()
        header, rows = lines[0].split(","), [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
        lr, seed = s["trial_params"]["lr"], s.get("seed")
        found.add((lr, seed))
        assert f"lr: {lr}" in config
        if kind == "command":
            assert [float(r["val_accuracy"]) for r in rows] == [lr * e + seed / 100 for e in (1, 2, 3)]
            assert [r["epoch"] for r in rows] == ["1", "2", "3"]
            assert s["final_val_accuracy"] == lr * 3 + seed / 100
        else:
            assert "width: 3" in config and "score" in header
            assert [float(r["score"]) for r in rows] == [lr * k + 3 for k in range(5)]
    assert found == {(lr, seed) for lr in (0.1, 0.2) for seed in seeds}
