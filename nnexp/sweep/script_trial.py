"""One trial of a sweep of your own code: a ``command:`` run as a process, or a
``function:`` called in the worker, each finding its run through the environment.

The trial's run folder is prepared by the driver; the code's ``nnexp.init()``
attaches to it (``NNEXP_RUN``, ``NNEXP_TRIAL``; see nnexp/tracking/api.py) and
its ``run.config`` holds the trial's parameters and seed. ``NNEXP_PARAMS``
holds the parameters (and seed) as JSON for code that reads them directly; a
command's ``{name}`` placeholders are filled in with them too.

Halving and the median rule work on what the trial logs: a thread reads the
run's metrics.csv (written at least once a second) and, when the sweep's
metric reaches a rung (the first row at or past it, by epoch, else by step),
asks the driver; a pruned trial's process gets SIGTERM (a function's worker:
KeyboardInterrupt), and its run is marked pruned once it has stopped.

A command that exits non-zero fails its trial with the end of its stderr
(its stdout and stderr are kept in the run folder, stdout.txt and
stderr.txt); a trial that never called ``nnexp.init`` fails saying so.
A stopped command starts again from the beginning when the sweep is rerun.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..tracking.api import ENV_PARAMS, ENV_RUN, ENV_STORE, ENV_TRIAL
from ..tracking.records import make_record, read_metric_rows
from ..tracking.run import COMPLETED, FAILED, INTERRUPTED, PRUNED, RUNNING, DamagedRun, Run
from ..tracking.store import RunStore

STDOUT, STDERR = "stdout.txt", "stderr.txt"
POLL_SECONDS = 0.2
TERM_GRACE_SECONDS = 10
STDERR_LINES = 20  # the end of stderr a failed trial's error.txt keeps


def run_script_trial(payload: dict, decide, stop_reason) -> tuple:
    """Run the trial of ``payload``; ``decide(epoch, value)`` answers halving rungs
    (a reason to prune, or None); ``stop_reason()`` says why the worker was stopped.
    Returns ``(index, status, value, reason)`` as ``worker.train_trial`` does."""
    path = Path(payload["run_path"])
    script = payload["script"]
    values = dict(payload["params"], **({"seed": payload["seed"]} if payload["seed"] is not None else {}))
    env = {ENV_RUN: str(path), ENV_STORE: str(path.parent), ENV_PARAMS: json.dumps(values, default=str),
           ENV_TRIAL: json.dumps({"name": payload["name"], "params": payload["params"], "seed": payload["seed"],
                                  "summary": payload["extra_summary"]}, default=str)}
    watcher = _Watcher(path, payload["metric"], payload["rungs"], decide)
    try:
        if "command" in script:
            outcome = _command(script, values, env, path, watcher)
        else:
            outcome = _function(script, values, env, watcher)
    except KeyboardInterrupt:  # the sweep is stopping
        watcher.stop()
        _interrupted(payload, path, stop_reason())
        return payload["index"], INTERRUPTED, None, stop_reason()
    except Exception as exc:  # noqa: BLE001 -- the function could not be loaded: its trial fails
        outcome = {"code": 1, "error": f"{type(exc).__name__}: {exc}", "exception": exc}
    watcher.stop()
    return _record(payload, path, watcher, outcome, stop_reason)


def _interrupted(payload: dict, path: Path, reason: str) -> None:
    store = RunStore(path.parent)
    try:
        run = store.open(path.name)
    except (DamagedRun, FileNotFoundError):
        run = store.attach(path.name)
    if run.status is None:
        run.start(payload["name"], kind="script", seed=payload["seed"], **payload["extra_summary"])
    if run.status == RUNNING:
        run.finish(INTERRUPTED, reason)


# ---------------------------------------------------------------- running


def command_line(command: str, values: dict) -> list[str]:
    """The command's words with ``{name}`` filled in; a first word ``python`` (or
    ``python3``) is this Python, so that the trial sees the same environment."""
    words = [word.format_map(values) for word in shlex.split(command)]
    if words and words[0] in ("python", "python3"):
        words[0] = sys.executable
    return words


def _command(script: dict, values: dict, env: dict, path: Path, watcher: "_Watcher") -> dict:
    words = command_line(script["command"], values)
    with open(path / STDOUT, "wb") as out, open(path / STDERR, "wb") as err:
        try:
            proc = subprocess.Popen(words, cwd=script["cwd"], env=dict(os.environ, **env), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            return {"code": None, "error": f"cannot run {words[0]!r}: {exc.strerror or exc}"}
        watcher.start(lambda: _terminate(proc))
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the sweep is stopping: the script records its own interruption
            _terminate(proc)
            proc.wait()
            raise
    return {"code": code}


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM (the script's run ends as interrupted), then SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TERM_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()


def _function(script: dict, values: dict, env: dict, watcher: "_Watcher") -> dict:
    fn = load_function(script["function"], script["cwd"])
    try:
        return _call(fn, values, env, watcher)
    finally:
        _finish_open_runs()


def _call(fn, values: dict, env: dict, watcher: "_Watcher") -> dict:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    watcher.start(lambda: os.kill(os.getpid(), signal.SIGTERM))  # the worker turns SIGTERM into KeyboardInterrupt
    try:
        fn(dict(values))
        return {"code": 0}
    except KeyboardInterrupt:
        if watcher.pruned is None:
            raise
        return {"code": 0}
    except Exception as exc:  # noqa: BLE001 -- one trial's failure is its run's, the sweep goes on
        return {"code": 1, "error": f"{type(exc).__name__}: {exc}", "exception": exc}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _finish_open_runs() -> None:
    """A function that returns without finishing its run: it is completed here, as at a script's exit."""
    from ..tracking import api

    while api.current() is not None:
        api.current().finish()


def load_function(text: str, cwd: str):
    """``file.py:name`` (the file relative to ``cwd``) or ``module:name``, imported."""
    where, name = text.split(":")
    if where.endswith(".py"):
        file = Path(cwd) / where
        spec = importlib.util.spec_from_file_location(f"nnexp_trial_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(file.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(file.parent))
    else:
        module = importlib.import_module(where)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise AttributeError(f"{where} has no function {name!r}")
    return fn


# ---------------------------------------------------------------- halving


class _Watcher:
    """Reads the trial's metrics as they arrive and asks the driver at each rung."""

    def __init__(self, path: Path, metric: str, rungs, decide):
        self.path, self.metric, self.rungs, self.decide = path, metric, sorted(rungs), decide
        self.pruned: str | None = None
        self._done = threading.Event()
        self._thread = None

    def start(self, stop) -> None:
        if self.rungs:
            self._thread = threading.Thread(target=self._watch, args=(stop,), daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self, stop) -> None:
        rungs = list(self.rungs)
        while rungs and not self._done.wait(POLL_SECONDS):
            for rung, value in reached(self.path, self.metric, rungs):
                rungs.remove(rung)
                reason = self.decide(rung, value)
                if reason:
                    self.pruned = reason
                    stop()
                    return


def reached(path: Path, metric: str, rungs: list[int]) -> list[tuple[int, float]]:
    """The rungs the run's metrics.csv has reached, each with the metric's value at
    the first row at or past it (by epoch, else by step) that has the metric."""
    try:
        rows = read_metric_rows(path, columns=("epoch", "step", metric))
    except DamagedRun:
        return []
    points = []
    for row in rows:
        value = row.get(metric)
        axis = row.get("epoch") if row.get("epoch") == row.get("epoch") and "epoch" in row else row.get("step")
        if value is not None and value == value and axis is not None and axis == axis:
            points.append((axis, value))
    out = []
    for rung in rungs:
        hit = next((value for axis, value in points if axis >= rung), None)
        if hit is not None:
            out.append((rung, hit))
    return out


# ---------------------------------------------------------------- the end


def _record(payload: dict, path: Path, watcher: _Watcher, outcome: dict, stop_reason) -> tuple:
    """The trial's end as its run records it, corrected where the process could not
    say (pruned, a non-zero exit, a script that never called nnexp.init)."""
    index, metric = payload["index"], payload["metric"]
    store = RunStore(path.parent)
    try:
        run = store.open(path.name)
    except (DamagedRun, FileNotFoundError):
        run = store.attach(path.name)
    code, error = outcome.get("code"), outcome.get("error")
    if run.status is None:  # nnexp.init was never called (or the command did not start)
        run.start(payload["name"], kind="script", seed=payload["seed"], **payload["extra_summary"])
        if error is None:
            error = (f"exit status {code}: {_stderr_end(path)}" if code else
                     "the trial's code ended without calling nnexp.init()")
        code = code or 1
    if watcher.pruned is not None:
        run.finish(PRUNED, watcher.pruned)
    elif code == 0 and run.status == RUNNING:  # a function whose process goes on: its run was completed above
        run.finish(COMPLETED)
    elif code != 0 and run.status != FAILED and run.status != INTERRUPTED:
        reason = error or f"exit status {code}: {_stderr_end(path)}"
        tail = _stderr_tail(path)
        if tail and not run.error_path.exists():
            run.error_path.write_text(tail, encoding="utf-8")
            run.notify_file(run.error_path.name)
        if "exception" in outcome:
            run.record_crash(outcome["exception"], reason)
        else:
            run.finish(FAILED, reason)
    elif code != 0 and code is not None and code < 0 and run.status == INTERRUPTED:
        pass  # stopped by a signal: interrupted, as the script recorded
    status = run.status
    value = None
    if status in (COMPLETED, PRUNED):
        try:
            value = make_record(path)["metrics"].get(metric)
        except DamagedRun:
            value = None
        if value is not None:
            run.update_summary(**{f"final_{metric}": value})  # what the driver reads on a rerun
    if status == INTERRUPTED:
        return index, INTERRUPTED, None, stop_reason()
    reason = run.summary.get("reason")
    return index, status, value, reason


def _stderr_tail(path: Path) -> str:
    try:
        text = (path / STDERR).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-STDERR_LINES:]) + "\n" if text.strip() else ""


def _stderr_end(path: Path) -> str:
    lines = _stderr_tail(path).strip().splitlines()
    return lines[-1] if lines else "nothing on stderr"
