"""Track any training loop: ``nnexp.init``, ``run.log``, ``run.finish``, in W&B's call shapes.

::

    import nnexp
    run = nnexp.init(config={"lr": 0.1, "hidden": 10}, name="numpy-net", tags=["tutorial"], seed=0)
    for epoch in range(1, 11):
        ...                                  # your own forward, backward and update
        run.log({"epoch": epoch, "train_loss": loss, "val_accuracy": acc})
    run.summary["test_accuracy"] = test_acc
    run.finish()

The run is an ordinary nnexp run folder (``config.yaml``, ``metrics.csv``,
``summary.json``, see ``run.py``): ``nnexp runs``, ``compare``, ``--where``,
``tag``, ``rm``, ``nnexp ui`` and ``load_runs`` take it as they take the
built-in trainer's, which logs through this same :class:`Run`.

Rows are buffered: :meth:`Run.log` appends to a list, and the rows reach
metrics.csv at least once a second (a background thread), at ``finish`` and
at exit, so that a log call costs microseconds, a dashboard sees a row
within about two seconds and a process killed with SIGKILL loses at most its
last second of rows. A row carries ``step`` (the argument; counted from 0 on
its own when a row has neither a step nor an ``epoch`` key), ``epoch`` (a key
of the row) or both; a row at a lower step or epoch than one already logged
is not written, with one warning. A logging slip (a value that is not a
number, a key that cannot be a column) costs a warning, never the script.

Ends: ``finish()`` (completed, or failed with ``exit_code`` != 0); an
exception out of a ``with nnexp.init(...)`` block or out of the script
marks the run failed with the traceback in error.txt (Ctrl-C: interrupted);
a script that ends without ``finish`` is completed at exit; SIGTERM is
turned into KeyboardInterrupt (interrupted) while a run is open. A process
killed outright leaves the run ``running``, which listings show as ``dead``.

Inside a sweep trial (``command:`` or ``function:`` sweeps, see
``nnexp/sweep``), ``init`` attaches to the trial's run folder, named by the
environment variable ``NNEXP_RUN``, and ``run.config`` holds the trial's
parameters and seed over the script's own defaults.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import numbers
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from ..errors import ConfigError, NnexpError
from .annotations import check_tag
from .provenance import code_changes, provenance
from .run import COMPLETED, ERROR, FAILED, INTERRUPTED, Run as RunFolder, csv_cell, metric_name_problem
from .store import RunStore

FLUSH_SECONDS = 1.0
KIND = "script"  # summary.json's kind for a run made by nnexp.init
ENV_STORE = "NNEXP_STORE"  # the store init() writes into when it is given none
ENV_RUN = "NNEXP_RUN"  # a sweep trial's run folder: init() attaches to it
ENV_TRIAL = "NNEXP_TRIAL"  # the trial's name, parameters, seed and summary fields, as JSON
ENV_PARAMS = "NNEXP_PARAMS"  # the trial's parameters alone, as JSON (for scripts that read them directly)
WEIGHTS = "weights.npz"
LISTED = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")  # a script's values nnexp runs shows
FILES = "files"

#: init's arguments: nnexp's, W&B's it honours, and W&B's it accepts and records
SUPPORTED = ("config", "name", "tags", "notes", "store", "seed", "project", "group", "job_type", "mode", "reinit")
MODES = ("online", "offline")  # both mean: write the run folder here

_float_text, _int_text = float.__repr__, int.__repr__  # metrics.csv's cells: exact, as run.py writes them
_PLAIN = frozenset((float, int))  # value types metrics.csv takes as they are
KEY_SETS = 256  # the rows' key sets remembered as having fine names
_current: list["Run"] = []  # the open run of this process (nnexp.log and nnexp.finish use it)
_hooks_installed = [False]


class Config(dict):
    """A run's config: a dict whose keys also read as attributes (``run.config.lr``);
    changes (``run.config.update(...)``, ``run.config.lr = 0.2``) rewrite config.yaml."""

    def __init__(self, values: dict, on_change=None):
        super().__init__(values)
        object.__setattr__(self, "_on_change", on_change)

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"run.config has no key {key!r} (keys: {', '.join(map(str, self)) or 'none'})") from None

    def __setattr__(self, key, value):
        self[key] = value

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed()

    def update(self, other=(), allow_val_change=None, **kwargs):  # noqa: ARG002 -- W&B's signature
        super().update(_as_mapping(other, "run.config.update"), **kwargs)
        self._changed()

    def setdefaults(self, values: dict):
        """W&B's ``config.setdefaults``: set the keys not set yet."""
        for key, value in _as_mapping(values, "run.config.setdefaults").items():
            super().setdefault(key, value)
        self._changed()

    def _changed(self):
        if self._on_change is not None:
            self._on_change()


class Summary(dict):
    """A run's summary values: the last value logged of every key, unless set here
    (``run.summary["test_accuracy"] = 0.91``), which goes into summary.json at once."""

    def __init__(self, run: "Run"):
        super().__init__()
        self._run = run

    def __getitem__(self, key):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        return self._run._last[key]

    def __contains__(self, key):
        return dict.__contains__(self, key) or key in self._run._last

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __setitem__(self, key, value):
        problem = metric_name_problem(key)
        if problem is not None:
            raise ConfigError(f"run.summary[{key!r}]: the name {problem}")
        dict.__setitem__(self, key, _plain(value))
        self._run._write_values()

    def update(self, other=(), **kwargs):
        for key, value in {**_as_mapping(other, "run.summary.update"), **kwargs}.items():
            problem = metric_name_problem(key)
            if problem is not None:
                raise ConfigError(f"run.summary[{key!r}]: the name {problem}")
            dict.__setitem__(self, key, _plain(value))
        self._run._write_values()


class Run:
    """One run being tracked: its folder (``self.folder``, a ``run.Run``), its
    buffered rows and its end. Made by :func:`init`, or by the trainer through
    :meth:`start` and :meth:`resume`."""

    def __init__(self, folder: RunFolder, config: dict | None = None, background: bool = False):
        self.folder = folder
        self.script = background  # a script's run (init): summary.json follows its epochs
        self.config = Config(config or {}, on_change=self._write_config)
        self.summary = Summary(self)
        self._rows: list[dict] = []  # logged, not yet written
        self._pending: dict = {}  # log(..., commit=False): the row being put together
        self._last: dict = {}  # the last value logged of every key
        self._step = -1  # the highest step logged (-1: none yet)
        self._epoch = -math.inf  # the highest epoch logged
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._warned: set[str] = set()
        self._names_ok: set[str] = set()  # metric names checked and found fine
        self._key_sets: set[tuple] = set()  # rows' key tuples whose names are all fine
        self._progress_written = (None, None)  # the last (epoch, step) summary.json was told of
        self._closed = False
        self._wake = threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._flush_loop, name=f"nnexp-flush-{folder.id}", daemon=True)

    # -- made by the trainer and by init --
    @classmethod
    def start(cls, folder: RunFolder, name: str, config_text: str | None = None, config: dict | None = None,
              background: bool = False, **fields) -> "Run":
        """Start the new run ``folder``: its config.yaml (``config_text``, or ``config``
        dumped as YAML), then summary.json with ``fields`` (see ``run.Run.start``)."""
        run = cls(folder, config, background)
        if config_text is not None:
            folder.write_config(config_text)
        elif config is not None:
            run._write_config()
        folder.start(name, **_code_changes(folder), **fields)
        run._begin()
        return run

    @classmethod
    def resume(cls, folder: RunFolder, config_text: str | None = None, **fields) -> "Run":
        """Resume the run ``folder`` (failed, interrupted or dead) in this process; a
        changed ``config_text`` replaces its config.yaml."""
        run = cls(folder)
        if config_text is not None and folder.config_path.read_text(encoding="utf-8") != config_text:
            folder.write_config(config_text)
        folder.resume(**_code_changes(folder), **fields)
        run._begin()
        return run

    def _begin(self) -> None:
        if self._thread is not None:
            self._thread.start()

    # -- what a script sees --
    @property
    def id(self) -> str:
        return self.folder.id

    @property
    def name(self) -> str | None:
        return self.folder.summary.get("name")

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def dir(self) -> str:
        """The run folder (W&B's ``run.dir``)."""
        return str(self.folder.path)

    @property
    def tags(self) -> tuple:
        return tuple(self.folder.summary.get("tags") or ())

    @property
    def notes(self) -> str | None:
        return self.folder.summary.get("note")

    @property
    def status(self) -> str | None:
        return self.folder.status

    def log(self, data: dict, step: int | None = None, commit: bool | None = None, sync=None) -> None:  # noqa: ARG002
        """Log a row of metrics (``{"train_loss": 0.3, "val_accuracy": 0.9}``; an
        ``epoch`` key is the row's epoch); ``step`` is the row's step. ``commit=False``
        holds the values back until the next call that commits, as in W&B."""
        if self._closed:
            self._warn_once("closed", f"nnexp: run {self.id} is finished; log() after finish() is not written")
            return
        if type(data) is not dict:
            if not hasattr(data, "items"):
                self._warn_once("data", f"nnexp: log() takes a dict of metrics, got {type(data).__name__}; "
                                        "not written")
                return
            data = dict(data.items())
        if commit is False:
            self._pending.update(data)
            if step is not None:
                self._pending["step"] = step
            return
        if self._pending:
            data = {**self._pending, **data}
            if step is None:
                step = self._pending.get("step")
            self._pending = {}
        if step is None:
            step = data.get("step")
        epoch = data.get("epoch")
        if step is not None:
            if not _is_int(step) or step < 0:
                self._warn_once("step", f"nnexp: step must be an integer >= 0, got {step!r}; the row is not written")
                return
            step = int(step)
        elif epoch is None:
            step = self._step + 1
        if step is not None:
            if step < self._step:
                self._warn_once("order", f"nnexp: run {self.id}: a row at step {step} comes after step {self._step}; "
                                         "rows at a lower step than one logged are not written (warned once)")
                return
        if epoch is not None:
            if not _is_number(epoch):
                self._warn_once("epoch", f"nnexp: epoch must be a number, got {epoch!r}; the row is not written")
                return
            if epoch < self._epoch:
                self._warn_once("order", f"nnexp: run {self.id}: a row at epoch {epoch} comes after epoch "
                                         f"{self._epoch}; rows at a lower epoch than one logged are not written "
                                         "(warned once)")
                return
            self._epoch = epoch
        with self._lock:
            if step is None:
                row = dict(data)
                row.pop("step", None)
                self._rows.append(row)
            else:
                if step == self._step and self._rows and self._rows[-1].get("step") == step:
                    row = self._rows[-1]  # the same step again: one row, as in W&B
                else:
                    row = {"step": step}  # first, as in metrics.csv's header: the row's cells need no reordering
                    self._rows.append(row)
                row.update(data)
                row["step"] = step
                self._step = step
            self._last.update(data)
            if time.monotonic() - self._flushed >= FLUSH_SECONDS:
                self._flush_locked()

    def flush(self) -> None:
        """Write the buffered rows to metrics.csv now."""
        with self._lock:
            self._flush_locked()

    def finish(self, exit_code: int | None = None, quiet=None) -> None:  # noqa: ARG002 -- W&B's signature
        """End the run: completed, or failed when ``exit_code`` is not 0."""
        if exit_code:
            self.end(FAILED, f"finished with exit code {exit_code}", **self._final_fields())
        else:
            self.end(COMPLETED, **self._final_fields())

    def _final_fields(self) -> dict:
        """What listings show of a script's run, from its last values: the final
        validation figures and the test figures, under the trainer's names."""
        fields = {}
        for key in LISTED:
            value = self.summary.get(key)
            if _is_number(value):
                fields[key if key.startswith("test_") else f"final_{key}"] = value
        return fields

    def save_weights(self, arrays: dict, name: str = WEIGHTS) -> Path:
        """Save ``{name: array}`` into the run folder as an .npz file (no pickled
        objects: loadable with ``numpy.load(path, allow_pickle=False)``)."""
        import numpy as np  # the run folder may be written without NumPy loaded

        if not isinstance(arrays, dict) or not arrays:
            raise ConfigError("run.save_weights takes a non-empty dict {name: array}")
        plain = {}
        for key, value in arrays.items():
            array = np.asarray(value)
            if array.dtype == object:
                raise ConfigError(f"run.save_weights: {key!r} is not a numeric array (dtype object)")
            plain[str(key)] = array
        path = self.folder.path / _file_name(name, ".npz")
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **plain)
        os.replace(tmp, path)
        self.folder.notify_file(path.name)
        return path

    def save_file(self, path, name: str | None = None) -> Path:
        """Copy the file ``path`` into the run folder's ``files/`` (W&B's ``run.save``)."""
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"run.save_file: {source} is not a file")
        target_dir = self.folder.path / FILES
        target_dir.mkdir(exist_ok=True)
        target = target_dir / _file_name(name or source.name)
        shutil.copyfile(source, target)
        self.folder.notify_file(f"{FILES}/{target.name}")
        return target

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            self.finish()
        else:
            self.fail(exc)
        return False

    # -- what the trainer (and init's hooks) use --
    def update(self, **fields) -> None:
        """Merge progress fields into summary.json (see ``run.Run.update_summary``)."""
        self.folder.update_summary(**fields)

    def rewind(self, rows: list[dict]) -> None:
        """metrics.csv becomes exactly ``rows`` (a resumed run goes back to its checkpoint)."""
        with self._lock:
            self._rows.clear()
            self.folder.rewrite_metrics(rows)
            epochs = [r["epoch"] for r in rows if _is_number(r.get("epoch"))]
            steps = [r["step"] for r in rows if _is_int(r.get("step"))]
            self._epoch = max(epochs, default=-math.inf)
            self._step = max(steps, default=-1)

    def end(self, status: str, reason: str | None = None, **fields) -> None:
        """Write the buffered rows and end the run as ``status`` (see ``run.Run.finish``)."""
        if self._closed:
            return
        self._stop()
        self.folder.finish(status, reason, **fields)

    def fail(self, exc: BaseException) -> None:
        """End the run because of ``exc``: interrupted for Ctrl-C or SIGTERM, completed for
        ``sys.exit(0)``, otherwise failed with its traceback in error.txt. Never raises
        (the exception is what to show)."""
        if self._closed:
            return
        try:
            self._stop()
        except OSError:
            pass
        if isinstance(exc, KeyboardInterrupt):
            try:
                self.folder.finish(INTERRUPTED, str(exc) or "interrupted by the user (Ctrl-C)")
            except OSError:
                pass
        elif isinstance(exc, SystemExit) and exc.code in (None, 0):  # sys.exit() or sys.exit(0): a normal end
            self.folder.finish(COMPLETED, **self._final_fields())
        elif isinstance(exc, SystemExit):  # sys.exit("message") exits with status 1, as Python does
            code, text = (exc.code, "") if isinstance(exc.code, int) else (1, f": {exc.code}")
            self.folder.record_crash(exc, f"exit status {code}{text}")
        else:
            self.folder.record_crash(exc)

    # -- inside --
    def _stop(self) -> None:
        if self._pending:
            self.log({})
        self._closed = True
        if self in _current:
            _current.remove(self)
        self._wake.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._flushed = time.monotonic()
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        clean = self._cells(rows)
        try:
            self.folder.append_metrics(clean)
            epoch = self._epoch if self._epoch > -math.inf else None
            step = self._step if self._step >= 0 else None
            if self.script and (epoch, step) != self._progress_written:  # what listings show of its progress
                self._progress_written = (epoch, step)
                fields = {"epochs_completed": epoch, "last_step": step}
                self.folder.update_summary(**{k: v for k, v in fields.items() if v is not None})
        except OSError as exc:  # a full disk: the script goes on; the rows are lost, said once
            self._warn_once("write", f"nnexp: run {self.id}: cannot write metrics.csv ({exc.strerror or exc}); "
                                     "rows are lost until it can")

    def _cells(self, rows: list[dict]) -> list[dict]:
        """The rows for metrics.csv: one of floats and ints under names already found
        fine as it is, any other through :meth:`_clean`."""
        out = []
        known = self._key_sets
        for row in rows:
            if _PLAIN.issuperset(map(type, row.values())):
                keys = tuple(row)
                if keys in known or all(k in self._names_ok or metric_name_problem(k) is None for k in keys):
                    if len(known) < KEY_SETS:
                        known.add(keys)
                    out.append(row)
                    continue
            row = self._clean(row)
            if row:
                out.append(row)
        return out

    def _clean(self, row: dict) -> dict:
        """The row as metrics.csv cells: values that are not numbers and names that
        cannot be columns are dropped with a warning."""
        out = {}
        names_ok = self._names_ok
        for key, value in row.items():
            kind = type(value)
            if kind is float:
                cell = _float_text(value)
            elif kind is int:
                cell = _int_text(value)
            else:
                number = _number(value)
                if number is None:
                    self._warn_once(f"value:{key}", f"nnexp: run {self.id}: {key!r} is a {type(value).__name__}, "
                                                    "not a number; it is not written to metrics.csv")
                    continue
                cell = csv_cell(number)
            if key not in names_ok:
                problem = metric_name_problem(key)
                if problem is not None:
                    self._warn_once(f"name:{key}", f"nnexp: run {self.id}: the metric name {key!r} {problem}; "
                                                   "it is not written")
                    continue
                names_ok.add(key)
            out[key] = cell
        return out

    def _flush_loop(self) -> None:
        while not self._wake.wait(FLUSH_SECONDS):
            try:
                with self._lock:
                    if self._rows and time.monotonic() - self._flushed >= FLUSH_SECONDS * 0.5:
                        self._flush_locked()
            except Exception as exc:  # noqa: BLE001 -- the flusher must not die silently, nor kill anything
                self._warn_once("flusher", f"nnexp: run {self.id}: writing rows failed: {type(exc).__name__}: {exc}")

    def _write_config(self) -> None:
        text = yaml.safe_dump(_plain_tree(dict(self.config)), sort_keys=False, allow_unicode=True)
        self.folder.write_config(text)

    def _write_values(self) -> None:
        self.folder.update_summary(values=dict(dict.items(self.summary)))

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            print(message, file=sys.stderr)


# ---------------------------------------------------------------- module functions


def init(config=None, name: str | None = None, tags=None, notes: str | None = None, store=None,
         seed: int | None = None, project: str | None = None, group: str | None = None,
         job_type: str | None = None, mode: str | None = None, reinit=None, **unsupported) -> Run:
    """Start tracking a run of this script; returns the :class:`Run` (also ``nnexp.run``).

    Args:
        config: the run's settings (a dict, or an argparse.Namespace), written to
            config.yaml; compared, grouped and filtered on (``--where lr > 0.1``).
        name: the run's name (default: the script's file name).
        tags, notes: the run's tags and note, as ``nnexp tag`` and ``nnexp note`` set them.
        store: the run store (default: $NNEXP_STORE, else ``runs``).
        seed: the run's seed, also ``config["seed"]``: runs that differ only in it are
            grouped over seeds by ``nnexp compare``.
        project, group, job_type: recorded in summary.json.
        mode: "online" or "offline" (both write the run folder here).
        reinit: accepted; a run still open in this process is finished first either way.

    Any other argument (W&B's ``entity``, ``resume``, ``id``, ``dir``, ...) is an
    error naming it. Inside a sweep trial the run is the trial's (see the module doc).
    """
    if unsupported:
        names = ", ".join(sorted(unsupported))
        raise ConfigError(f"nnexp.init: {names} {'is' if len(unsupported) == 1 else 'are'} not supported; "
                          f"nnexp.init takes {', '.join(SUPPORTED)} (docs/your-code.md)")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"nnexp.init: mode={mode!r} is not supported; nnexp writes the run folder "
                          f"({' or '.join(MODES)}); leave out nnexp.init to track nothing")
    values = _config_values(config)
    tags = _tags(tags)
    if notes is not None and not isinstance(notes, str):
        raise ConfigError(f"nnexp.init: notes must be text, got {type(notes).__name__}")
    if seed is not None:
        if not _is_int(seed):
            raise ConfigError(f"nnexp.init: seed must be an integer, got {seed!r}")
        if "seed" in values and values["seed"] != seed:
            raise ConfigError(f"nnexp.init: seed={seed} but config['seed'] is {values['seed']!r}; give one of them")
        values["seed"] = int(seed)
    while _current:
        _current[-1].finish()
    trial = _trial_from_environment()
    if trial is not None:
        values.update(trial["params"])
        if trial.get("seed") is not None:
            values["seed"] = trial["seed"]
        folder = RunStore(Path(trial["run"]).parent).attach(Path(trial["run"]).name)
        name = trial.get("name") or name
        extra = dict(trial.get("summary") or {})
    else:
        store = store if store is not None else os.environ.get(ENV_STORE) or "runs"
        name = name or _script_name()
        folder = RunStore(store).create(name)
        extra = {}
    fields = {"kind": KIND, "tags": tags, **({"note": notes.strip()} if notes else {}),
              **{k: v for k, v in (("project", project), ("group", group), ("job_type", job_type)) if v is not None},
              "command": _command_line(), "cwd": os.getcwd(), **provenance(), **extra}
    if "seed" in values and _is_int(values["seed"]):
        fields["seed"] = int(values["seed"])
    run = Run.start(folder, name, config=values, background=True, **fields)
    _current.append(run)
    _install_hooks()
    return run


def log(data: dict, step: int | None = None, commit: bool | None = None, sync=None) -> None:
    """``run.log`` on the run ``init`` started (an error if there is none)."""
    _open_run("log").log(data, step=step, commit=commit, sync=sync)


def finish(exit_code: int | None = None, quiet=None) -> None:
    """``run.finish`` on the open run; nothing if there is none (as in W&B)."""
    if _current:
        _current[-1].finish(exit_code, quiet)


def current() -> Run | None:
    """The open run of this process (``nnexp.run``), or None."""
    return _current[-1] if _current else None


def _open_run(what: str) -> Run:
    if not _current:
        raise NnexpError(f"nnexp.{what}: no run is open; call nnexp.init() first")
    return _current[-1]


# ---------------------------------------------------------------- the end of the process


def _install_hooks() -> None:
    """At exit, an open run is completed; an uncaught exception fails it first (Ctrl-C:
    interrupted); SIGTERM becomes KeyboardInterrupt, so a stopped script ends as interrupted."""
    if _hooks_installed[0]:
        return
    _hooks_installed[0] = True
    atexit.register(_at_exit)
    previous = sys.excepthook

    def excepthook(kind, exc, tb):
        for run in list(reversed(_current)):
            run.fail(exc)
        previous(kind, exc, tb)

    sys.excepthook = excepthook
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum, frame):
    if not _current:  # no run open: die as SIGTERM would have it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise KeyboardInterrupt("interrupted: terminated (SIGTERM)")


def _at_exit() -> None:
    for run in list(reversed(_current)):
        try:
            run.finish()
        except Exception as exc:  # noqa: BLE001 -- at exit there is nobody left to raise to
            print(f"nnexp: could not finish run {run.id}: {type(exc).__name__}: {exc}", file=sys.stderr)


# ---------------------------------------------------------------- values


def _trial_from_environment() -> dict | None:
    """The sweep trial this process runs (NNEXP_RUN, NNEXP_TRIAL), once: the
    variables are taken out, so a second init() makes a run of its own."""
    path = os.environ.pop(ENV_RUN, None)
    text = os.environ.pop(ENV_TRIAL, None)
    os.environ.pop(ENV_PARAMS, None)
    if not path:
        return None
    try:
        trial = json.loads(text or "{}")
    except ValueError:
        raise NnexpError(f"nnexp.init: ${ENV_TRIAL} is not valid JSON") from None
    if not isinstance(trial, dict) or not isinstance(trial.get("params", {}), dict):
        raise NnexpError(f"nnexp.init: ${ENV_TRIAL} must be a JSON object with 'params'")
    trial.setdefault("params", {})
    trial["run"] = path
    return trial


def _code_changes(folder: RunFolder) -> dict:
    """Write the uncommitted changes of nnexp's checkout to the run's code.patch (none:
    no file) and return the summary field that describes them."""
    changes = code_changes()
    folder.write_code_patch(changes.patch if changes is not None else None)
    return {"code_changes": changes.record if changes is not None else None}


def _config_values(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, argparse.Namespace):
        config = vars(config)
    if not isinstance(config, dict):
        raise ConfigError(f"nnexp.init: config must be a dict or an argparse.Namespace, got {type(config).__name__}")
    return {str(k): v for k, v in config.items()}


def _tags(tags) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, (list, tuple, set)):
        raise ConfigError(f"nnexp.init: tags must be a list of strings, got {tags!r}")
    return [check_tag(t) for t in tags]


def _as_mapping(value, what: str) -> dict:
    if isinstance(value, argparse.Namespace):
        return vars(value)
    if isinstance(value, dict):
        return value
    if hasattr(value, "keys"):
        return {k: value[k] for k in value.keys()}
    try:
        return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} takes a dict, got {type(value).__name__}") from None


def _plain(value):
    """A NumPy scalar or 0-d array as the Python number it holds; other values as they are."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def _plain_tree(value):
    if isinstance(value, dict):
        return {str(k): _plain_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_tree(v) for v in value]
    value = _plain(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _number(value):
    """``value`` as a number for metrics.csv, or None if it is not one (bools become 0 and 1)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real):
        return value
    if hasattr(value, "item") and getattr(value, "size", 0) == 1:  # a 0-d array, a one-element tensor
        try:
            value = value.item()
        except (TypeError, ValueError):
            return None
        return _number(value) if not hasattr(value, "item") else None
    return None


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _file_name(name: str, suffix: str = "") -> str:
    name = os.path.basename(str(name))
    if not name or name.startswith(".") or name in (ERROR,):
        raise ConfigError(f"{name!r} cannot be a file name in a run folder")
    return name if not suffix or name.endswith(suffix) else name + suffix


def _script_name() -> str:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    stem = os.path.splitext(script)[0]
    return stem if stem and stem not in ("-c", "-m", "") else "run"


def _command_line() -> list[str]:
    return [sys.executable, *sys.argv] if sys.argv and sys.argv[0] else [sys.executable]
