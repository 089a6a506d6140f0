"""The sweep driver: hands trials to worker processes, prunes, resumes.

State lives in the store, never only in memory:

    <store>/<sweep-id>-t000/ ...     each trial is an ordinary run folder
    <store>/sweeps/<sweep-id>/
        spec.yaml                    the spec as given
        plan.json                    every trial: index, run id, values, seed
        sweep.json                   status, counts, best trial so far
        lock                         held (flock) while a driver runs this sweep

Running the same spec again finds the same sweep id: completed and pruned
trials are skipped, failed, interrupted and never-started ones run: from
their last checkpoint where they have one (see ``checkpoint.py``), else from
the start (moving the earlier attempt's files into ``attempts/N/``), and the
lock keeps two drivers from running one sweep at once, so no trial is ever
duplicated.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from ..errors import NnexpError
from ..tracking import Run, atomic_write_text
from ..tracking.store import live_status, slugify
from .spec import SweepSpec, Trial

DONE = ("completed", "pruned")
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
STOP_GRACE_SECONDS = 30


class SweepLocked(NnexpError):
    pass


class Rungs:
    """Asynchronous successive halving (ASHA-style): a trial reaching a rung
    goes on only if its value is among the best ``1/eta`` of the values
    recorded at that rung so far (at least the best one), else it is pruned.
    With one worker the decisions are reproducible; with several they depend
    on which trials reach a rung first, as in any asynchronous scheme."""

    def __init__(self, rungs: list[int], eta: int, goal: str):
        self.eta, self.sign = eta, (1.0 if goal == "maximize" else -1.0)
        self.values: dict[int, list[float]] = {r: [] for r in rungs}

    def record(self, epoch: int, value: float) -> None:
        if epoch in self.values and value is not None and math.isfinite(value):
            self.values[epoch].append(value)

    def decide(self, epoch: int, value: float) -> str | None:
        """Record ``value`` at rung ``epoch``; the reason to prune, or None."""
        self.record(epoch, value)
        seen = self.values[epoch]
        keep = max(1, len(seen) // self.eta)
        better = sum(1 for v in seen if self.sign * v > self.sign * value)
        if value is not None and math.isfinite(value) and better < keep:
            return None
        return (f"pruned at epoch {epoch}: {value:.4g} is not in the best {keep} of {len(seen)} "
                f"trials at this rung (halving, eta {self.eta})")


@dataclass
class SweepResult:
    id: str
    path: Path
    counts: dict = field(default_factory=dict)
    best: dict | None = None
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


class SweepRunner:
    def __init__(self, spec: SweepSpec, trials: list[Trial], store: Path, workers: int | None = None,
                 threads_per_worker: int = 1, fail_fast: bool = False, log=print, progress: bool = True,
                 executor: str = "local", address: str | None = None, cpus_per_trial: int = 1):
        self.spec, self.trials, self.store = spec, trials, Path(store)
        self.id = spec.id
        self.dir = self.store / "sweeps" / self.id
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads_per_worker
        self.fail_fast, self.log, self.progress = fail_fast, log, progress
        self.executor, self.address, self.cpus_per_trial = executor, address, cpus_per_trial
        self.statuses: dict[int, str] = {}
        self.values: dict[int, float] = {}
        self.rungs = (Rungs(spec.halving.rungs, spec.halving.eta, spec.goal) if spec.halving else None)

    # ------------------------------------------------------------ public --
    def run(self) -> SweepResult:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnexpError(f"cannot create the sweep folder {self.dir}: {exc.strerror or exc}") from None
        with self._lock():
            self._write_plan()
            todo = self._resume()
            self._write_state("running")
            interrupted = False
            try:
                self._run_trials(todo)
            except KeyboardInterrupt:
                interrupted = True
            result = self.result(interrupted)
            self._write_state("interrupted" if interrupted else
                              "completed" if len(self._finished()) == len(self.trials) else "incomplete")
        return result

    def result(self, interrupted: bool = False) -> SweepResult:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return SweepResult(self.id, self.dir, counts, self._best(), interrupted)

    # ------------------------------------------------------------- state --
    def run_path(self, trial: Trial) -> Path:
        return self.store / trial.run_id(self.id)

    @contextmanager
    def _lock(self):
        import fcntl

        with open(self.dir / "lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise SweepLocked(f"sweep {self.id} is already running ({holder}); "
                                  "wait for it to finish or stop it first") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}")
            f.flush()
            yield

    def _write_plan(self) -> None:
        spec_copy = self.dir / "spec.yaml"
        if not spec_copy.exists():
            atomic_write_text(spec_copy, self.spec.path.read_text(encoding="utf-8"))
        plan = [{"index": t.index, "run": t.run_id(self.id), "params": t.params, "seed": t.seed}
                for t in self.trials]
        atomic_write_text(self.dir / "plan.json", json.dumps(plan, indent=1, default=str) + "\n")

    def _resume(self) -> list[Trial]:
        """Statuses of trials already in the store; returns the ones to run."""
        todo = []
        for trial in self.trials:
            summary = _read_summary(self.run_path(trial))
            status = live_status(summary) if summary else None
            if status in DONE:
                self.statuses[trial.index] = status
                self.values[trial.index] = summary.get(f"final_{self.spec.metric}")
                self._replay_rungs(trial)
            elif status == "running" and summary.get("executor") == "ray":
                todo.append(trial)  # we hold the sweep's lock: the Ray job that ran it ended with its driver
            elif status == "running":  # its process is alive: an orphan of a killed driver, still stopping
                self.statuses[trial.index] = "running"
                self.log(f"warning: {trial.label()} is still running in pid {summary.get('pid')}; not started again")
            else:
                todo.append(trial)
        done = len(self.trials) - len(todo)
        if done:
            self.log(f"sweep {self.id}: {done} of {len(self.trials)} trials already finished, {len(todo)} to run")
        return todo

    def _replay_rungs(self, trial: Trial) -> None:
        if self.rungs is None:
            return
        import csv

        try:
            with open(self.run_path(trial) / "metrics.csv", newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    self.rungs.record(int(row["epoch"]), float(row[self.spec.metric]))
        except (OSError, KeyError, ValueError):
            pass

    def _finished(self) -> list[int]:
        return [i for i, s in self.statuses.items() if s in DONE]

    def _best(self) -> dict | None:
        sign = 1.0 if self.spec.goal == "maximize" else -1.0
        scored = [(sign * v, i) for i, v in self.values.items()
                  if self.statuses.get(i) == "completed" and v is not None and math.isfinite(v)]
        if not scored:
            return None
        _, index = max(scored, key=lambda s: (s[0], -s[1]))  # ties: the earlier trial
        trial = self.trials[index]
        return {"trial": index, "run": trial.run_id(self.id), "value": self.values[index], "params": trial.params,
                "seed": trial.seed}

    def _write_state(self, status: str) -> None:
        result = self.result()
        state = {"id": self.id, "name": self.spec.name, "status": status, "spec": str(self.spec.path),
                 "base": str(self.spec.base_path), "method": self.spec.method, "metric": self.spec.metric,
                 "goal": self.spec.goal, "trials": len(self.trials), "counts": result.counts, "best": result.best,
                 "halving": self.spec.halving.__dict__ if self.spec.halving else None,
                 "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(),
                 "host": socket.gethostname()}
        atomic_write_text(self.dir / "sweep.json", json.dumps(state, indent=2, default=str) + "\n")

    # ----------------------------------------------------------- running --
    def _run_trials(self, todo: list[Trial]) -> None:
        if not todo:
            return
        from tqdm import tqdm

        bar = tqdm(total=len(self.trials), initial=len(self.trials) - len(todo), unit="trial",
                   desc=f"sweep {self.spec.name}", disable=None if self.progress else True, dynamic_ncols=True)
        if self.executor == "ray":
            from .ray_executor import run_on_ray

            try:
                run_on_ray(self, todo, bar, self.address, self.cpus_per_trial)
            finally:
                bar.close()
            return
        pool = _Pool(min(self.workers, len(todo)), self.threads)
        pending = list(todo)
        busy: dict[int, Trial] = {}  # worker slot -> trial
        stopping = False
        try:
            while pending or busy:
                for slot in pool.idle(busy):
                    if stopping or not pending:
                        break
                    trial = pending.pop(0)
                    busy[slot] = trial
                    self.statuses[trial.index] = "running"
                    pool.send(slot, ("trial", self._payload(trial)))
                for slot, message in pool.events(busy):
                    trial = busy[slot]
                    if message[0] == "rung":
                        _, _, epoch, value = message
                        pool.send(slot, ("decision", self.rungs.decide(epoch, value) if self.rungs else None))
                        continue
                    del busy[slot]
                    _, _, status, value, reason = message
                    self._finish_trial(trial, status, value, reason, bar)
                    if status == "failed" and self.fail_fast and not stopping:
                        stopping = True
                        self.log(f"--fail-fast: {trial.label()} failed; stopping the sweep")
                        self._stop(pool, busy, bar)
                        return
        except KeyboardInterrupt:
            self.log("interrupted: stopping the workers (their trials are recorded as interrupted)")
            self._stop(pool, busy, bar)
            raise
        finally:
            pool.close()
            bar.close()

    def _payload(self, trial: Trial) -> dict:
        path = self.run_path(trial)
        resume = self._resumable(trial, path)
        attempt = int((_read_summary(path) or {}).get("attempt") or 1) + 1 if resume else _prepare_folder(path)
        cfg = json.loads(json.dumps(trial.config))  # a plain copy for pickling
        cfg["tracking"]["store"] = str(self.store)
        cfg["tracking"]["name"] = f"{slugify(self.spec.name)[:40]}-t{trial.index:03d}"
        extra = {"sweep": self.id, "sweep_name": self.spec.name, "trial": trial.index,
                 "trial_params": trial.params, "attempt": attempt}
        return {"index": trial.index, "run_path": str(path), "config": cfg, "metric": self.spec.metric,
                "rungs": self.spec.halving.rungs if self.spec.halving else [], "extra_summary": extra,
                "resume": resume}

    def _resumable(self, trial: Trial, path: Path) -> bool:
        """A stopped trial with a usable checkpoint goes on from it; one whose
        checkpoint is damaged starts again (its files kept under attempts/)."""
        from .. import checkpoint

        if _read_summary(path) is None:
            return False
        try:
            found = checkpoint.load(path) is not None
        except checkpoint.CheckpointError as exc:
            self.log(f"warning: {trial.label()}: {exc}; training it again from epoch 1")
            return False
        if found:
            self._replay_rungs(trial)  # the rungs it passed before it stopped
        return found

    def _finish_trial(self, trial: Trial, status: str, value, reason, bar) -> None:
        self.statuses[trial.index] = status
        if status in ("failed", "interrupted"):  # a worker that died could not record it itself
            _mark(self.run_path(trial), status, reason or status)
        if value is not None:
            self.values[trial.index] = value
        best = self._best()
        shown = "-" if value is None else _format_metric(self.spec.metric, value)
        text = f"{trial.label()}: {status} {self.spec.metric} {shown}"
        if status == "failed" and reason:
            text += f" ({reason})"
        if best is not None:
            best_text = f"best {_format_metric(self.spec.metric, best['value'])} (trial {best['trial']})"
            bar.set_postfix_str(best_text)
            text += f"  | {best_text}"
        bar.update(1)
        self.log(text)
        self._write_state("running")

    def _stop(self, pool: "_Pool", busy: dict, bar) -> None:
        """Interrupt the running trials, wait for them to record it, mark the rest."""
        pool.interrupt(busy)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while busy and time.monotonic() < deadline:
            for slot, message in pool.events(busy, timeout=0.5):
                if message[0] == "rung":
                    pool.send(slot, ("decision", "the sweep was stopped"))
                    continue
                trial = busy.pop(slot)
                self.statuses[trial.index] = message[2]
        if busy:  # did not answer in time
            pool.kill_all()
        for trial in busy.values():
            _mark(self.run_path(trial), "interrupted", "interrupted: the sweep was stopped")
            self.statuses[trial.index] = "interrupted"
        busy.clear()


class _Pool:
    """Worker processes, each with a duplex pipe; a dead worker is reported as
    a failed event for its trial and replaced."""

    def __init__(self, size: int, threads: int):
        self.ctx = multiprocessing.get_context("spawn")
        self.threads = threads
        self.procs: list = [None] * size
        self.conns: list = [None] * size
        for slot in range(size):
            self._start(slot)

    def _start(self, slot: int) -> None:
        from .worker import worker_main

        parent, child = self.ctx.Pipe()
        saved = {k: os.environ.get(k) for k in BLAS_ENV}
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: Ctrl-C goes to the driver only
        try:
            os.environ.update({k: str(self.threads) for k in BLAS_ENV})
            proc = self.ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
        finally:
            signal.signal(signal.SIGINT, old_int)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.procs[slot], self.conns[slot] = proc, parent

    def idle(self, busy: dict) -> list[int]:
        """Free worker slots; a worker that died while idle is replaced first."""
        free = [slot for slot in range(len(self.procs)) if slot not in busy]
        for slot in free:
            if not self.procs[slot].is_alive():
                self._start(slot)
        return free

    def send(self, slot: int, message) -> None:
        try:
            self.conns[slot].send(message)
        except OSError:
            pass  # the worker died; its sentinel reports it

    def events(self, busy: dict, timeout: float = 1.0):
        """(slot, message) pairs from busy workers; a dead worker yields a failed 'done'."""
        watched = {}
        for slot in busy:
            watched[self.conns[slot]] = slot
            watched[self.procs[slot].sentinel] = slot
        events = []
        for ready in wait(list(watched), timeout):
            slot = watched[ready]
            if any(s == slot for s, _ in events):
                continue
            conn = self.conns[slot]
            try:
                if conn.poll():
                    events.append((slot, conn.recv()))
                    continue
            except (EOFError, OSError):
                pass
            if not self.procs[slot].is_alive():
                code = self.procs[slot].exitcode
                events.append((slot, ("done", busy[slot].index, "failed", None,
                                      f"the worker process died (exit code {code})")))
                self._start(slot)
        return events

    def interrupt(self, busy: dict) -> None:
        for slot in busy:
            if self.procs[slot].is_alive():
                os.kill(self.procs[slot].pid, signal.SIGTERM)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()

    def close(self) -> None:
        for slot, conn in enumerate(self.conns):
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _prepare_folder(path: Path) -> int:
    """Make ``path`` an empty run folder; returns the attempt number. The files
    of an earlier attempt (failed, interrupted) move to ``attempts/N/``."""
    if not path.exists():
        path.mkdir(parents=True)
        return 1
    previous = _read_summary(path) or {}
    attempt = int(previous.get("attempt") or 1)
    leftovers = [p for p in path.iterdir() if p.name != "attempts"]
    if leftovers:
        archive = path / "attempts" / str(attempt)
        archive.mkdir(parents=True, exist_ok=True)
        for p in leftovers:
            shutil.move(str(p), str(archive / p.name))
    return attempt + 1 if leftovers else attempt


def _mark(path: Path, status: str, reason: str) -> None:
    summary = _read_summary(path)
    if summary and summary.get("status") == "running":
        summary.update(status=status, reason=reason, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_text(path / "summary.json", json.dumps(summary, indent=2) + "\n")


def _read_summary(path: Path) -> dict | None:
    return _read_json(path / "summary.json")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _format_metric(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric.endswith("accuracy") else f"{value:.4f}"


def list_sweeps(store: Path, warn=None) -> list[dict]:
    """The ``sweep.json`` of every sweep in the store, oldest update first."""
    root = Path(store) / "sweeps"
    if not root.is_dir():
        return []
    states = []
    for path in sorted(root.iterdir()):
        state = _read_json(path / "sweep.json")
        if state is None:
            if warn and path.is_dir():
                warn(f"skipping sweep {path.name}: unreadable sweep.json")
            continue
        if state.get("status") == "running" and not _lock_held(path / "lock"):
            state["status"] = "dead"  # its driver is gone; run the spec again to resume
        states.append(state)
    return sorted(states, key=lambda s: str(s.get("updated", "")))


def _lock_held(path: Path) -> bool:
    import fcntl

    try:
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def find_sweep(store: Path, ref: str) -> dict:
    """A sweep's state by id, unique id prefix, or name (the newest wins)."""
    states = list_sweeps(store)
    exact = [s for s in states if s.get("id") == ref]
    prefixed = [s for s in states if str(s.get("id", "")).startswith(ref)]
    named = [s for s in states if s.get("name") == ref]
    if exact or len(prefixed) == 1:
        return (exact or prefixed)[0]
    if named:
        return named[-1]
    if prefixed:
        raise NnexpError(f"sweep {ref!r} is ambiguous: {', '.join(s['id'] for s in prefixed[:5])}")
    known = ", ".join(s["id"] for s in states[-5:]) or "none"
    raise NnexpError(f"no sweep {ref!r} in {store} (recent: {known}; see 'nnexp sweeps --store {store}')")
