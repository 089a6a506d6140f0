"""Running a sweep's trials as Ray tasks: `nnexp sweep SPEC --executor ray`.

Ray is optional (``pip install "nnexp[ray]"``) and imported only here.

How a trial's files reach the store. Worker nodes need not see the store's
filesystem: each task trains in a folder on its own node's disk, and every
file the trainer writes (config.yaml, each metrics row, summary.json, each
epoch's checkpoint; model.npz, plots and error.txt at the end) is posted, as
it is written, to the sweep's *hub*: a small Ray actor pinned to the driver's
node. The driver drains the hub twice a second and writes the files into the
store, atomically. So the store always holds the trial's last checkpoint, and
listings show trials training on other machines epoch by epoch.

What the hub also does:
- it keeps the latest version of each unfinished trial's files: a task that
  is retried on another node after its node died (``max_retries``), or that
  resumes a trial stopped earlier, starts from them -- from the trial's last
  checkpoint;
- it answers halving decisions (``Rungs``) for all tasks, so pruning works
  across the cluster exactly as with local workers.

The dataset is loaded once by the driver and put into Ray's object store:
each node fetches it once and its tasks share it (zero-copy), however many
trials they run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..atomic import atomic_write_bytes
from ..environment import process_environment
from ..errors import ConfigError, NnexpError
from ..tracking import RunStore
from ..tracking.run import ATTEMPTS, CHECKPOINT, INTERRUPTED, RUNNING, SUMMARY, Run, RunObserver
from ..train import load_data
from .executor import BLAS_ENV, STOP_GRACE_SECONDS, STOPPED, WAIT, TrialEvent
from .worker import data_key, train_trial

POLL_SECONDS = 0.5
TASK_RETRIES = 3  # re-runs of a task whose worker or node died


def import_ray():
    """Ray, or exit 2 with how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a sweep
    try:
        import ray  # optional and heavy: only `--executor ray` loads it
    except ImportError:
        raise ConfigError('--executor ray needs Ray, which is not installed: pip install "nnexp[ray]" '
                          "(or pip install ray)") from None
    return ray


def connect(address: str | None, log=print):
    """Join the cluster at ``address`` ('auto' or host:port), or start a local Ray instance."""
    ray = import_ray()
    if address and address != "auto":
        _check_reachable(address)
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:   # "local": a new instance, never one a plain `ray start` left running here
                ray.init(address="local", num_cpus=os.cpu_count(), **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise NnexpError(f"cannot connect to {where}: {str(exc).splitlines()[0]}") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    log(f"ray: {len([n for n in ray.nodes() if n.get('Alive')])} node(s), {cpus:g} CPUs")
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the reason, where ray.init would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected HOST:PORT (the head node's GCS port, "
                          "6379 by default) or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise NnexpError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                         "(is `ray start --head` running there?)") from None


# ------------------------------------------------------------------ hub --

class Hub:
    """The driver's post office (a Ray actor on the driver's node)."""

    def __init__(self, rungs):
        self.rungs = rungs
        self.latest: dict[str, dict[str, bytes]] = {}  # run id -> file name -> content
        self.outbox: list[tuple[str, str, bytes | None]] = []

    def seed(self, run_id: str, files: dict) -> None:
        self.latest[run_id] = dict(files)

    def files(self, run_id: str) -> dict:
        return self.latest.get(run_id, {})

    def put(self, run_id: str, name: str, data: bytes | None) -> None:
        files = self.latest.setdefault(run_id, {})
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
        self.outbox.append((run_id, name, data))

    def drain(self) -> list:
        out, self.outbox = self.outbox, []
        return out

    def forget(self, run_id: str) -> None:
        self.latest.pop(run_id, None)

    def decide(self, epoch: int, value: float, trial: int | None = None):
        return self.rungs.decide(epoch, value, trial) if self.rungs is not None else None


class Shipper(RunObserver):
    """Posts every file of a trial's run folder on a worker node to the hub, as
    it is written, on its way to the store (see the module docstring)."""

    def __init__(self, ray, hub):
        self.ray, self.hub = ray, hub

    def file_changed(self, run: Run, name: str) -> None:
        path = run.path / name
        data = path.read_bytes() if path.exists() else None
        self.ray.get(self.hub.put.remote(run.id, name, data))

    def ship_all(self, run: Run) -> None:
        """Every file of the folder once more, summary.json last: the plots (written
        by the trainer without telling the run) and the final version of each."""
        names = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*")
                       if p.is_file() and not p.name.startswith("."))
        for name in sorted(names, key=lambda n: n == SUMMARY):
            self.file_changed(run, name)


# ----------------------------------------------------------------- task --

def ray_trial(payload: dict, data, hub) -> tuple:
    """A Ray task: train one trial on this node, its files posted to the hub.

    Starts from the files the hub holds for the trial (none for a new one;
    the last checkpoint for a trial that is resumed or retried after its
    node died) and returns ``(index, status, value, reason)``.
    """
    ray = import_ray()
    run_id = Path(payload["run_path"]).name
    workdir = Path(tempfile.mkdtemp(prefix="nnexp-trial-"))
    try:
        folder = workdir / run_id
        folder.mkdir()
        files = ray.get(hub.files.remote(run_id))
        resume = CHECKPOINT in files and SUMMARY in files
        if resume:
            for name, blob in files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(blob)
        node = ray.get_runtime_context().get_node_id()
        threads = os.environ.get("OPENBLAS_NUM_THREADS")
        payload = dict(payload, resume=resume,
                       extra_summary=dict(payload["extra_summary"], ray_node=node, blas_threads=threads))
        shipper = Shipper(ray, hub)
        # Not in a store: the driver's listings index the copy the hub brings there.
        run = Run.open(folder, [shipper]) if resume else Run(folder, [shipper])

        def decide(epoch: int, value: float):
            return ray.get(hub.decide.remote(epoch, value, payload["index"]))

        result = train_trial(payload, run, lambda: data, decide)
        shipper.ship_all(run)
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------- driver --

class RayExecutor:
    """Trials as Ray tasks (see ``executor.py`` for what an executor does)."""

    summary_fields = {"executor": "ray"}
    stopping = "cancelling the Ray tasks"
    on_demand = False  # True: submit only as many tasks as the cluster runs at once (see executor.py)

    def __init__(self, store: Path, address: str | None, cpus_per_trial: int, log=print,
                 gpus_per_trial: float = 0.0):
        self.store, self.address, self.cpus_per_trial, self.log = Path(store), address, cpus_per_trial, log
        self.gpus_per_trial = gpus_per_trial   # Ray's num_gpus for each trial (train.device: gpu)
        self.ray = self.hub = None
        self.pending: dict = {}  # ObjectRef -> (trial index, run id)

    def run(self, payloads: Iterable[dict], count: int, rungs) -> Iterator[TrialEvent]:
        """Submit every payload at once (on demand: as many as the cluster has
        room for, the next as one ends); events as the tasks end, with the
        files their trials posted written into the store first."""
        self.ray = ray = connect(self.address, self.log)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # part of Ray (optional)

        here = ray.get_runtime_context().get_node_id()
        self.hub = hub = ray.remote(num_cpus=0)(Hub).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote(rungs)
        env = {**process_environment(), **{k: str(self.cpus_per_trial) for k in BLAS_ENV}}
        task = ray.remote(ray_trial).options(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial,
                                             max_retries=TASK_RETRIES, retry_exceptions=False,
                                             runtime_env={"env_vars": env})
        datasets: dict[str, object] = {}
        resources = ray.cluster_resources()
        room = max(1, int(min(resources.get("CPU", 1) // self.cpus_per_trial,
                              resources.get("GPU", 0) // self.gpus_per_trial if self.gpus_per_trial else count))
                   ) if self.on_demand else count
        payloads, more = iter(payloads), True
        while more or self.pending:
            while more and len(self.pending) < room:
                payload = next(payloads, None)
                if payload is None:
                    more = False
                    break
                if payload is WAIT:
                    break
                run_id = Path(payload["run_path"]).name
                if payload["resume"]:
                    ray.get(hub.seed.remote(run_id, read_folder(Path(payload["run_path"]))))
                self.pending[task.remote(payload, _dataset_ref(ray, payload["config"], datasets), hub)] = \
                    (payload["index"], run_id)
                yield TrialEvent(payload["index"], RUNNING)
            if not self.pending:
                continue
            done, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_SECONDS)
            write_files(self.store, ray.get(hub.drain.remote()))
            for ref in done:
                index, run_id = self.pending.pop(ref)
                status, value, reason = _result(ray, ref)
                write_files(self.store, ray.get(hub.drain.remote()))
                hub.forget.remote(run_id)
                yield TrialEvent(index, status, value, reason)

    def stop(self) -> list[TrialEvent]:
        """Cancel the outstanding tasks (a running one gets KeyboardInterrupt and
        records itself as interrupted) and bring in what they wrote."""
        ray, pending = self.ray, self.pending
        if ray is None:
            return []
        for ref in pending:
            ray.cancel(ref)
        events = []
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while pending and time.monotonic() < deadline:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
            for ref in done:
                index, _ = pending.pop(ref)
                events.append(TrialEvent(index, *_result(ray, ref)))
        if self.hub is not None:
            write_files(self.store, ray.get(self.hub.drain.remote()))
        events += [TrialEvent(index, INTERRUPTED, None, STOPPED) for index, _ in pending.values()]
        pending.clear()
        return events

    def close(self) -> None:
        pass  # Ray stays up until the process ends; a local instance ends with it


def _dataset_ref(ray, cfg: dict, datasets: dict):
    """The trial's dataset in Ray's object store, put there once per distinct data section
    (None for a sweep of your own code, which loads its own data)."""
    if cfg is None:
        return None
    key = data_key(cfg)
    if key not in datasets:
        datasets[key] = ray.put(load_data(cfg, log=lambda *a, **k: None))
    return datasets[key]


def _result(ray, ref) -> tuple:
    """(status, value, reason) of a finished task, also when Ray itself failed it."""
    try:
        _, status, value, reason = ray.get(ref)
        return status, value, reason
    except ray.exceptions.TaskCancelledError:
        return INTERRUPTED, None, STOPPED
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return "failed", None, f"Ray: {type(exc).__name__}: {first}"


# ---------------------------------------------------------------- files --

def read_folder(folder: Path) -> dict[str, bytes]:
    """A run folder's files (not attempts/ or hidden ones) for the hub."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".") and ATTEMPTS not in p.relative_to(folder).parts}


def write_files(store: Path, messages: list) -> None:
    """Write (run id, file name, bytes or None to delete) into the store, atomically;
    a run whose status the new summary.json changes is re-indexed, as its own
    status changes are on the node that trains it."""
    changed = set()
    for run_id, name, data in messages:
        path = _inside(store, run_id, name)
        if data is None:
            path.unlink(missing_ok=True)
            continue
        if name == SUMMARY and _status(data) != _status(path):
            changed.add(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # What a resume needs survives a power cut.
        atomic_write_bytes(path, data, durable=name in (CHECKPOINT, SUMMARY))
    runs = RunStore(store)
    for run_id in sorted(changed):
        runs.reindex(run_id)


def _status(summary: bytes | Path) -> str | None:
    """The status in a summary.json (its bytes, or a file that may not exist); None if there is none."""
    try:
        data = json.loads(summary.read_bytes() if isinstance(summary, Path) else summary)
    except (OSError, ValueError):
        return None
    return data.get("status") if isinstance(data, dict) else None


def _inside(store: Path, run_id: str, name: str) -> Path:
    """store/run_id/name, refusing any name that would leave the run folder."""
    folder = (store / run_id).resolve()
    path = (folder / name).resolve()
    if not run_id or "/" in run_id or run_id in (".", "..") or folder not in path.parents:
        raise NnexpError(f"refusing to write {name!r} of run {run_id!r} outside its folder")
    return store / run_id / name
