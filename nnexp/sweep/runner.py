"""The sweep driver: hands trials to worker processes, prunes, resumes.

State lives in the store, never only in memory: each trial is an ordinary
run folder (``<store>/<sweep-id>-t000/``), and the sweep's own files are in
``<store>/sweeps/<sweep-id>/`` (see ``nnexp/tracking/sweeps.py``).

Running the same spec again finds the same sweep id: completed and pruned
trials are skipped, failed, interrupted and never-started ones run: from
their last checkpoint where they have one (see ``checkpoint.py``), else from
the start (moving the earlier attempt's files into ``attempts/N/``), and the
lock keeps two drivers from running one sweep at once, so no trial is ever
duplicated.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .. import checkpoint
from ..tracking import RunStore
from ..tracking.run import FAILED, FINISHED, INTERRUPTED, METRICS, RUNNING, DamagedRun, live_status, \
    prepare_attempt, read_summary
from ..tracking.store import slugify
from ..tracking.sweeps import SweepFolder
from .executor import LocalExecutor, TrialEvent
from .ray_executor import RayExecutor
from .spec import SweepSpec, Trial


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
        self.runs = RunStore(self.store)
        self.folder = SweepFolder(self.store, self.id)
        self.dir = self.folder.path
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads_per_worker
        self.fail_fast, self.log, self.progress = fail_fast, log, progress
        self.executor, self.address, self.cpus_per_trial = executor, address, cpus_per_trial
        self.statuses: dict[int, str] = {}
        self.values: dict[int, float] = {}
        self.rungs = (Rungs(spec.halving.rungs, spec.halving.eta, spec.goal) if spec.halving else None)

    # ------------------------------------------------------------ public --
    def run(self) -> SweepResult:
        self.folder.make()
        with self.folder.lock():
            self._write_plan()
            todo = self._resume()
            self._write_state(RUNNING)
            interrupted = False
            try:
                self._run_trials(todo)
            except KeyboardInterrupt:
                interrupted = True
            result = self.result(interrupted)
            self._write_state(INTERRUPTED if interrupted else
                              "completed" if len(self._finished()) == len(self.trials) else "incomplete")
        return result

    def result(self, interrupted: bool = False) -> SweepResult:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return SweepResult(self.id, self.dir, counts, self._best(), interrupted)

    def run_path(self, trial: Trial) -> Path:
        return self.store / trial.run_id(self.id)

    def payload(self, trial: Trial, summary_fields: dict) -> dict:
        """What an executor needs to train ``trial`` (plain data, picklable): its
        config and run folder, the metric, the rungs, the fields its summary.json
        records (with ``summary_fields``: where it runs), and whether it resumes.
        A trial that starts again from scratch gets an empty folder here."""
        path = self.run_path(trial)
        resume = self._resumable(trial, path)
        attempt = int((_summary_of(path) or {}).get("attempt") or 1) + 1 if resume else prepare_attempt(path)
        cfg = json.loads(json.dumps(trial.config))  # a plain copy for pickling
        cfg["tracking"]["store"] = str(self.store)
        cfg["tracking"]["name"] = f"{slugify(self.spec.name)[:40]}-t{trial.index:03d}"
        extra = {"sweep": self.id, "sweep_name": self.spec.name, "trial": trial.index,
                 "trial_params": trial.params, "attempt": attempt, **summary_fields}
        return {"index": trial.index, "run_path": str(path), "config": cfg, "metric": self.spec.metric,
                "rungs": self.spec.halving.rungs if self.spec.halving else [], "extra_summary": extra,
                "resume": resume}

    # ------------------------------------------------------------- state --
    def _write_plan(self) -> None:
        self.folder.write_spec(self.spec.path.read_text(encoding="utf-8"))
        self.folder.write_plan([{"index": t.index, "run": t.run_id(self.id), "params": t.params, "seed": t.seed}
                                for t in self.trials])

    def _resume(self) -> list[Trial]:
        """Statuses of trials already in the store; returns the ones to run."""
        todo = []
        for trial in self.trials:
            summary = _summary_of(self.run_path(trial))
            status = live_status(summary) if summary else None
            if status in FINISHED:
                self.statuses[trial.index] = status
                self.values[trial.index] = summary.get(f"final_{self.spec.metric}")
                self._replay_rungs(trial)
            elif status == RUNNING and summary.get("executor") == "ray":
                todo.append(trial)  # we hold the sweep's lock: the Ray job that ran it ended with its driver
            elif status == RUNNING:  # its process is alive: an orphan of a killed driver, still stopping
                self.statuses[trial.index] = RUNNING
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
        try:
            with open(self.run_path(trial) / METRICS, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    self.rungs.record(int(row["epoch"]), float(row[self.spec.metric]))
        except (OSError, KeyError, ValueError):
            pass

    def _finished(self) -> list[int]:
        return [i for i, s in self.statuses.items() if s in FINISHED]

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
        self.folder.write_state({
            "id": self.id, "name": self.spec.name, "status": status, "spec": str(self.spec.path),
            "base": str(self.spec.base_path), "method": self.spec.method, "metric": self.spec.metric,
            "goal": self.spec.goal, "trials": len(self.trials), "counts": result.counts, "best": result.best,
            "halving": self.spec.halving.__dict__ if self.spec.halving else None})

    # ----------------------------------------------------------- running --
    def _executor(self):
        if self.executor == "ray":
            return RayExecutor(self.store, self.address, self.cpus_per_trial, self.log)
        return LocalExecutor(self.workers, self.threads)

    def _run_trials(self, todo: list[Trial]) -> None:
        if not todo:
            return
        bar = tqdm(total=len(self.trials), initial=len(self.trials) - len(todo), unit="trial",
                   desc=f"sweep {self.spec.name}", disable=None if self.progress else True, dynamic_ncols=True)
        executor = self._executor()
        trials = {t.index: t for t in todo}
        payloads = (self.payload(trial, executor.summary_fields) for trial in todo)
        try:
            for event in executor.run(payloads, len(todo), self.rungs):
                trial = trials[event.index]
                if event.status == RUNNING:
                    self.statuses[trial.index] = RUNNING
                    continue
                self._finish_trial(trial, event, bar)
                if event.status == FAILED and self.fail_fast:
                    self.log(f"--fail-fast: {trial.label()} failed; stopping the sweep")
                    self._stopped(executor.stop())
                    return
        except KeyboardInterrupt:
            self.log(f"interrupted: {executor.stopping} (their trials are recorded as interrupted)")
            self._stopped(executor.stop())
            raise
        finally:
            executor.close()
            bar.close()

    def _resumable(self, trial: Trial, path: Path) -> bool:
        """A stopped trial with a usable checkpoint goes on from it; one whose
        checkpoint is damaged starts again (its files kept under attempts/)."""
        if _summary_of(path) is None:
            return False
        try:
            found = checkpoint.load(path) is not None
        except checkpoint.CheckpointError as exc:
            self.log(f"warning: {trial.label()}: {exc}; training it again from epoch 1")
            return False
        if found:
            self._replay_rungs(trial)  # the rungs it passed before it stopped
        return found

    def _record_end(self, trial: Trial, event: TrialEvent) -> None:
        """The trial's status; a trial whose process died could not record its end itself."""
        self.statuses[trial.index] = event.status
        if event.status in (FAILED, INTERRUPTED):
            self.runs.mark_stopped(trial.run_id(self.id), event.status, event.reason or event.status)

    def _finish_trial(self, trial: Trial, event: TrialEvent, bar) -> None:
        self._record_end(trial, event)
        status, value, reason = event.status, event.value, event.reason
        if value is not None:
            self.values[trial.index] = value
        best = self._best()
        shown = "-" if value is None else _format_metric(self.spec.metric, value)
        text = f"{trial.label()}: {status} {self.spec.metric} {shown}"
        if status == FAILED and reason:
            text += f" ({reason})"
        if best is not None:
            best_text = f"best {_format_metric(self.spec.metric, best['value'])} (trial {best['trial']})"
            bar.set_postfix_str(best_text)
            text += f"  | {best_text}"
        bar.update(1)
        self.log(text)
        self._write_state(RUNNING)

    def _stopped(self, events: list[TrialEvent]) -> None:
        """The last events of the trials an executor stopped."""
        by_index = {t.index: t for t in self.trials}
        for event in events:
            self._record_end(by_index[event.index], event)


def _summary_of(path: Path) -> dict | None:
    """A trial folder's summary.json; None if it has none (never started) or it is unreadable."""
    try:
        return read_summary(path)
    except DamagedRun:
        return None


def _format_metric(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric.endswith("accuracy") else f"{value:.4f}"
