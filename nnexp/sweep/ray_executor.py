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

import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, NnexpError
from ..tracking import Run
from .runner import BLAS_ENV, STOP_GRACE_SECONDS, _mark

POLL_SECONDS = 0.5
TASK_RETRIES = 3  # re-runs of a task whose worker or node died


def import_ray():
    """Ray, or exit 2 with how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a sweep
    try:
        import ray
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
            else:
                ray.init(num_cpus=os.cpu_count(), **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise NnexpError(f"cannot connect to {where}: {str(exc).splitlines()[0]}") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    log(f"ray: {len([n for n in ray.nodes() if n.get('Alive')])} node(s), {cpus:g} CPUs")
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the reason, where ray.init would retry for minutes."""
    import socket

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

    def decide(self, epoch: int, value: float):
        return self.rungs.decide(epoch, value) if self.rungs is not None else None


class ShippedRun(Run):
    """A trial's run folder on a worker node's disk; every file written is
    also posted to the hub, on its way to the store."""

    def __init__(self, path: Path, hub=None):
        super().__init__(path)
        self.hub = hub

    def write_config(self, text: str) -> None:
        super().write_config(text)
        self._post("config.yaml")

    def log_epoch(self, row: dict) -> None:
        super().log_epoch(row)
        self._post("metrics.csv")

    def rewrite_metrics(self, rows: list[dict]) -> None:
        super().rewrite_metrics(rows)
        self._post("metrics.csv")

    def update_summary(self, **fields) -> dict:
        summary = super().update_summary(**fields)
        self._post("summary.json")
        return summary

    def save_checkpoint(self, ckpt) -> None:
        super().save_checkpoint(ckpt)
        self._post("checkpoint.npz")

    def remove_checkpoint(self) -> None:
        super().remove_checkpoint()
        self._post("checkpoint.npz")

    def _reindex(self) -> None:
        pass  # this folder is not in a store; the driver's listings index the copy

    def post_all(self) -> None:
        """Every file of the folder (model.npz, plots, error.txt: written
        outside the methods above), summary.json last."""
        names = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                       if p.is_file() and not p.name.startswith("."))
        for name in sorted(names, key=lambda n: n == "summary.json"):
            self._post(name)

    def _post(self, name: str) -> None:
        import ray

        path = self.path / name
        data = path.read_bytes() if path.exists() else None
        ray.get(self.hub.put.remote(self.id, name, data))


# ----------------------------------------------------------------- task --

def ray_trial(payload: dict, data, hub) -> tuple:
    """A Ray task: train one trial on this node, its files posted to the hub.

    Starts from the files the hub holds for the trial (none for a new one;
    the last checkpoint for a trial that is resumed or retried after its
    node died) and returns ``(index, status, value, reason)``.
    """
    import ray

    from .worker import train_trial

    run_id = Path(payload["run_path"]).name
    workdir = Path(tempfile.mkdtemp(prefix="nnexp-trial-"))
    try:
        folder = workdir / run_id
        folder.mkdir()
        files = ray.get(hub.files.remote(run_id))
        resume = "checkpoint.npz" in files and "summary.json" in files
        if resume:
            for name, blob in files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(blob)
        node = ray.get_runtime_context().get_node_id()
        threads = os.environ.get("OPENBLAS_NUM_THREADS")
        payload = dict(payload, resume=resume,
                       extra_summary=dict(payload["extra_summary"], ray_node=node, blas_threads=threads))
        run = ShippedRun.open(folder, hub=hub) if resume else ShippedRun(folder, hub=hub)

        def decide(epoch: int, value: float):
            return ray.get(hub.decide.remote(epoch, value))

        result = train_trial(payload, run, lambda: data, decide)
        run.post_all()
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------- driver --

def run_on_ray(runner, todo: list, bar, address: str | None, cpus_per_trial: int) -> None:
    """Submit ``todo`` as Ray tasks and bring their results into the store;
    ``runner`` is the SweepRunner (payloads, statuses, finishing a trial)."""
    ray = connect(address, runner.log)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    hub = ray.remote(num_cpus=0)(Hub).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote(runner.rungs)
    threads = {k: str(cpus_per_trial) for k in BLAS_ENV}
    task = ray.remote(ray_trial).options(num_cpus=cpus_per_trial, max_retries=TASK_RETRIES,
                                         retry_exceptions=False, runtime_env={"env_vars": threads})
    datasets: dict[str, object] = {}
    pending: dict = {}  # ObjectRef -> trial
    try:
        for trial in todo:
            payload = runner._payload(trial)
            payload["extra_summary"]["executor"] = "ray"
            if payload["resume"]:
                ray.get(hub.seed.remote(Path(payload["run_path"]).name, read_folder(Path(payload["run_path"]))))
            pending[task.remote(payload, _dataset_ref(ray, payload["config"], datasets), hub)] = trial
            runner.statuses[trial.index] = "running"
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            write_files(runner.store, ray.get(hub.drain.remote()))
            for ref in done:
                trial = pending.pop(ref)
                status, value, reason = _result(ray, ref)
                write_files(runner.store, ray.get(hub.drain.remote()))
                hub.forget.remote(trial.run_id(runner.id))
                runner._finish_trial(trial, status, value, reason, bar)
                if status == "failed" and runner.fail_fast:
                    runner.log(f"--fail-fast: {trial.label()} failed; stopping the sweep")
                    _cancel(ray, runner, hub, pending)
                    return
    except KeyboardInterrupt:
        runner.log("interrupted: cancelling the Ray tasks (their trials are recorded as interrupted)")
        _cancel(ray, runner, hub, pending)
        raise


def _dataset_ref(ray, cfg: dict, datasets: dict):
    """The trial's dataset in Ray's object store, put there once per distinct data section."""
    from ..train import load_data
    from .worker import data_key

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
        return "interrupted", None, "interrupted: the sweep was stopped"
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return "failed", None, f"Ray: {type(exc).__name__}: {first}"


def _cancel(ray, runner, hub, pending: dict) -> None:
    """Cancel the outstanding tasks (a running one gets KeyboardInterrupt and
    records itself as interrupted), bring in what they wrote, mark the rest."""
    for ref in pending:
        ray.cancel(ref)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while pending and time.monotonic() < deadline:
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
        for ref in done:
            trial = pending.pop(ref)
            runner.statuses[trial.index] = _result(ray, ref)[0]
    write_files(runner.store, ray.get(hub.drain.remote()))
    for trial in list(pending.values()) + [t for t in runner.trials if runner.statuses.get(t.index) == "running"]:
        _mark(runner.run_path(trial), "interrupted", "interrupted: the sweep was stopped")
        runner.statuses[trial.index] = "interrupted"
    pending.clear()


# ---------------------------------------------------------------- files --

def read_folder(folder: Path) -> dict[str, bytes]:
    """A run folder's files (not attempts/ or hidden ones) for the hub."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".") and "attempts" not in p.relative_to(folder).parts}


def write_files(store: Path, messages: list) -> None:
    """Write (run id, file name, bytes or None to delete) into the store, atomically."""
    for run_id, name, data in messages:
        path = _inside(store, run_id, name)
        if data is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if name in ("checkpoint.npz", "summary.json"):  # what a resume needs survives a power cut
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)


def _inside(store: Path, run_id: str, name: str) -> Path:
    """store/run_id/name, refusing any name that would leave the run folder."""
    folder = (store / run_id).resolve()
    path = (folder / name).resolve()
    if not run_id or "/" in run_id or run_id in (".", "..") or folder not in path.parents:
        raise NnexpError(f"refusing to write {name!r} of run {run_id!r} outside its folder")
    return store / run_id / name
