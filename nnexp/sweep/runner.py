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

A planned sweep (grid, random) knows every trial before it starts. A
model-based one (tpe) asks for its next point when a worker frees up (see
``tpe.py``): trial ``i`` is repeat ``i % repeats`` of point ``i // repeats``,
its run id comes from its index as for planned trials, plan.json lists the
trials proposed so far, and a rerun keeps those proposals (from the trials'
folders, else plan.json) and asks only for the rest.
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
from ..compare.fmt import percent
from ..layer_code import check_unchanged
from ..tracking import RunStore
from ..tracking.run import COMPLETED, FAILED, FINISHED, INTERRUPTED, METRICS, PRUNED, RUNNING, DamagedRun, \
    live_status, prepare_attempt, read_summary
from ..tracking.store import slugify
from ..tracking.sweeps import SweepFolder
from .executor import WAIT, LocalExecutor, TrialEvent
from .pruning import Rungs, make_pruner
from .ray_executor import RayExecutor
from .spec import SweepSpec, Trial, base_lookup, make_trial, run_id
from . import tpe

__all__ = ["Rungs", "SweepResult", "SweepRunner"]


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
                 executor: str = "local", address: str | None = None, cpus_per_trial: int = 1,
                 gpus: int = 0, gpus_per_trial: float = 0.0):
        self.spec, self.trials, self.store = spec, trials, Path(store)
        self.id = spec.id
        self.runs = RunStore(self.store)
        self.folder = SweepFolder(self.store, self.id)
        self.dir = self.folder.path
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads_per_worker
        self.fail_fast, self.log, self.progress = fail_fast, log, progress
        self.executor, self.address, self.cpus_per_trial = executor, address, cpus_per_trial
        self.gpus, self.gpus_per_trial = gpus, gpus_per_trial   # GPUs of this machine; Ray's num_gpus per trial
        self.statuses: dict[int, str] = {}
        self.values: dict[int, float] = {}
        self.rungs = make_pruner(spec.halving, spec.goal, len(spec.seeds))
        self.search = None
        self.total = len(trials)
        if spec.method == "tpe":
            self.search = tpe.TpeSearch(spec.space, [o.goal for o in spec.objectives], spec.seed,
                                        base_lookup(spec), spec.startup_trials)
            self.total = spec.n_trials * len(spec.seeds)
        self.in_flight: set[int] = set()  # trials handed to the executor or waiting for a worker
        self.told: dict[int, tuple] = {}  # trial index -> (state, values, per-epoch values), once final

    # ------------------------------------------------------------ public --
    def run(self) -> SweepResult:
        self.folder.make()
        with self.folder.lock():
            if self.search is not None:
                self.trials = self.proposed_trials()
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
                              "completed" if len(self._finished()) == self.total else "incomplete")
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
        if self.spec.script is not None:  # your own code starts again from the beginning
            attempt = prepare_attempt(path)
            extra = {"sweep": self.id, "sweep_name": self.spec.name, "trial": trial.index,
                     "trial_params": trial.params, "attempt": attempt, **summary_fields}
            return {"index": trial.index, "run_path": str(path), "script": self.spec.script,
                    "params": json.loads(json.dumps(trial.params, default=str)), "seed": trial.seed,
                    "name": f"{slugify(self.spec.name)[:40]}-t{trial.index:03d}", "metric": self.spec.metric,
                    "rungs": self.rungs.epochs(trial.index) if self.rungs else [], "extra_summary": extra,
                    "resume": False, "config": None}
        resume = self._resumable(trial, path)
        attempt = int((_summary_of(path) or {}).get("attempt") or 1) + 1 if resume else prepare_attempt(path)
        cfg = json.loads(json.dumps(trial.config))  # a plain copy for pickling
        cfg["tracking"]["store"] = str(self.store)
        cfg["tracking"]["name"] = f"{slugify(self.spec.name)[:40]}-t{trial.index:03d}"
        extra = {"sweep": self.id, "sweep_name": self.spec.name, "trial": trial.index,
                 "trial_params": trial.params, "attempt": attempt, **summary_fields}
        return {"index": trial.index, "run_path": str(path), "config": cfg, "metric": self.spec.metric,
                "rungs": self.rungs.epochs(trial.index) if self.rungs else [], "extra_summary": extra,
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
            self.log(f"sweep {self.id}: {done} of {self.total} trials already finished, "
                     f"{self.total - done} to run")
        self.in_flight.update(t.index for t in todo)
        return todo

    def _replay_rungs(self, trial: Trial) -> None:
        if self.rungs is None:
            return
        for epoch, value in epoch_values(self.run_path(trial), self.spec.metric).items():
            self.rungs.record(epoch, value, trial.index)

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
        state = {
            "id": self.id, "name": self.spec.name, "status": status, "spec": str(self.spec.path),
            "base": str(self.spec.base_path) if self.spec.script is None else None,
            **({"script": self.spec.script} if self.spec.script is not None else {}), "method": self.spec.method, "metric": self.spec.metric,
            "goal": self.spec.goal, "trials": self.total, "counts": result.counts, "best": result.best,
            "halving": self.spec.halving.__dict__ if self.spec.halving else None}
        if self.spec.multi_objective:
            state["metrics"] = [{"name": o.name, "goal": o.goal} for o in self.spec.objectives]
        if self.search is not None:
            state.update(proposed=len(self.trials), batch=self.spec.batch, seed=self.spec.seed)
        self.folder.write_state(state)

    # -------------------------------------------------------- proposals --
    def proposed_trials(self) -> list[Trial]:
        """The trials a model-based sweep proposed before: each trial's folder
        says what it was given (its summary's trial_params), else plan.json
        does; the first index known from neither ends the list."""
        planned = {}
        for entry in self.folder.read_plan():
            if isinstance(entry, dict) and isinstance(entry.get("params"), dict) and "index" in entry:
                planned[entry["index"]] = entry["params"]
        trials = []
        for index in range(self.total):
            summary = _summary_of(self.store / run_id(self.id, index))
            if summary and isinstance(summary.get("trial_params"), dict):
                params = summary["trial_params"]
            elif index in planned:
                params = planned[index]
            else:
                break
            trials.append(make_trial(self.spec, index, params, self.spec.seeds[index % len(self.spec.seeds)]))
        return trials

    def _next_trial(self) -> Trial | None:
        """The next trial of a model-based sweep: the next repeat of the
        current point, or a new point asked from the sampler; WAIT while the
        last batch is still training; None when the budget is spent."""
        index = len(self.trials)
        if index >= self.total:
            return None
        repeats = len(self.spec.seeds)
        point, repeat = divmod(index, repeats)
        if repeat:
            params = self.trials[index - 1].params
        else:
            start = point - point % self.spec.batch if self.spec.batch else point
            if self.spec.batch and any(i < start * repeats for i in self.in_flight):
                return WAIT  # a batch is asked once the one before it has ended
            params = self.search.ask(point, self.history(point))
        trial = make_trial(self.spec, index, params, self.spec.seeds[repeat])
        self.trials.append(trial)
        self._write_plan()
        return trial

    def history(self, points: int) -> list[tpe.Told]:
        """What points 0 .. points-1 gave, as the sampler is told before asking
        for point ``points``, from their trials' folders. With ``batch``, the
        points of the same batch count as running, whatever their state, so
        that each batch is asked from the batches before it alone."""
        repeats = len(self.spec.seeds)
        start = points - points % self.spec.batch if self.spec.batch else points
        history = []
        for point in range(points):
            params = self.trials[point * repeats].params
            if point >= start:
                history.append(tpe.Told(params, tpe.RUNNING))
                continue
            members = [self._told(t) for t in self.trials[point * repeats:(point + 1) * repeats]]
            history.append(_combine(params, members, repeats))
        return history

    def _told(self, trial: Trial) -> tuple:
        """(state, objective values, per-epoch values) of one trial, read from its folder."""
        if trial.index in self.told:
            return self.told[trial.index]
        if trial.index in self.in_flight:
            return tpe.RUNNING, None, {}
        summary = _summary_of(self.run_path(trial))
        status = live_status(summary) if summary else None
        # per-epoch values matter for a point with a pruned repeat (halving only)
        curve = epoch_values(self.run_path(trial), self.spec.metric) if self.rungs else {}
        if status == COMPLETED:
            values = [summary.get(o.summary_key) for o in self.spec.objectives]
            usable = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            told = (tpe.COMPLETE, [float(v) for v in values], curve) if usable else (tpe.FAILED, None, {})
        elif status == PRUNED:
            told = tpe.PRUNED, None, curve
        elif status == FAILED:
            told = tpe.FAILED, None, {}
        else:
            return tpe.RUNNING, None, {}  # interrupted or orphaned: it will train again
        self.told[trial.index] = told
        return told

    # ----------------------------------------------------------- running --
    def _executor(self):
        if self.executor == "ray":
            return RayExecutor(self.store, self.address, self.cpus_per_trial, self.log, self.gpus_per_trial)
        return LocalExecutor(self.workers, self.threads, self.gpus)

    def _run_trials(self, todo: list[Trial]) -> None:
        count = len(todo) + self.total - len(self.trials)
        if not count:
            return
        bar = tqdm(total=self.total, initial=self.total - count, unit="trial",
                   desc=f"sweep {self.spec.name}", disable=None if self.progress else True, dynamic_ncols=True)
        executor = self._executor()
        trials = {t.index: t for t in todo}
        payloads = (self.payload(trial, executor.summary_fields) for trial in todo)
        if self.search is not None:
            executor.on_demand = True
            payloads = self._asked_payloads(payloads, trials, executor.summary_fields)
        try:
            for event in executor.run(payloads, count, self.rungs):
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

    def _asked_payloads(self, known, trials: dict, fields: dict):
        """The known trials' payloads, then each new trial's, asked for when a worker is free."""
        yield from known
        while True:
            trial = self._next_trial()
            if trial is None:
                return
            if trial is WAIT:
                yield WAIT
                continue
            trials[trial.index] = trial
            self.in_flight.add(trial.index)
            yield self.payload(trial, fields)

    def _resumable(self, trial: Trial, path: Path) -> bool:
        """A stopped trial with a usable checkpoint goes on from it; one whose
        checkpoint is damaged, or whose layer file has changed, starts again
        (its files kept under attempts/)."""
        if _summary_of(path) is None:
            return False
        try:
            found = checkpoint.load(path) is not None
            check_unchanged(path, path.name)
        except checkpoint.CheckpointError as exc:   # a changed layer file (layer_code.py) included
            self.log(f"warning: {trial.label()}: {exc}; training it again from epoch 1")
            return False
        if found:
            self._replay_rungs(trial)  # the rungs it passed before it stopped
        return found

    def _record_end(self, trial: Trial, event: TrialEvent) -> None:
        """The trial's status; a trial whose process died could not record its end itself."""
        self.statuses[trial.index] = event.status
        self.in_flight.discard(trial.index)
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


def epoch_values(path: Path, metric: str) -> dict[int, float]:
    """``{epoch: metric}`` from a run folder's metrics.csv (empty if it cannot be read);
    a script's run without epochs gives ``{step: metric}``, rows without the metric skipped."""
    out = {}
    try:
        with open(path / METRICS, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                axis = row.get("epoch") or row.get("step")
                if row.get(metric) in (None, "") or axis in (None, ""):
                    continue
                out[int(float(axis))] = float(row[metric])
    except (OSError, KeyError, ValueError, TypeError):
        pass
    return out


def _combine(params: dict, members: list[tuple], repeats: int) -> tpe.Told:
    """One point's result from its repeats: the mean once all completed;
    running while any is unfinished (or not yet proposed); pruned if any was
    (the per-epoch means of the repeats that reached each epoch); else failed."""
    states = [m[0] for m in members]
    if len(members) < repeats or tpe.RUNNING in states:
        return tpe.Told(params, tpe.RUNNING)
    if all(s == tpe.COMPLETE for s in states):
        return tpe.Told(params, tpe.COMPLETE, [sum(col) / len(col) for col in zip(*(m[1] for m in members))])
    if tpe.PRUNED in states:
        epochs: dict[int, list[float]] = {}
        for state, _, per_epoch in members:
            for epoch, value in per_epoch.items():
                epochs.setdefault(epoch, []).append(value)
        return tpe.Told(params, tpe.PRUNED, intermediate={e: sum(v) / len(v) for e, v in sorted(epochs.items())})
    return tpe.Told(params, tpe.FAILED)


def _format_metric(metric: str, value: float) -> str:
    return percent(value) if metric.endswith("accuracy") else f"{value:.4f}"
