"""One run folder: the names of its files, and its life from creation to its end.

A run folder holds::

    config.yaml        the resolved config (every default filled in)
    metrics.csv        one row per epoch, appended as the epoch ends
    diagnostics.csv    per-layer statistics, one set of rows per epoch (see nnexp/diagnostics.py)
    summary.json       status, best/final/test metrics, durations, versions, host
    model.npz          trained weights
    checkpoint.npz     while training: the state after the last epoch (see nnexp/checkpoint.py)
    predictions.npz    an ensemble's averaged probabilities (see nnexp/ensemble.py)
    error.txt          the traceback of a crash; error.before-resume-N.txt: of a resumed attempt
    annotations.json   tags and a note added after the fact (``nnexp tag``, ``nnexp note``; see annotations.py)
    plots/             learning curves, confusion matrix, misclassified images, ...
    code/              copies of the user's layer files and manifest.json with their sha256 (see nnexp/layer_code.py)
    code.patch         the uncommitted changes of nnexp's git checkout when the run started (see provenance.py)
    attempts/N/        a sweep trial's earlier attempt, set aside when it started again from scratch
    .lock              held while ``nnexp resume`` trains the run

This module is the one place that names them. Who writes what: the trainer
writes the weights and checkpoints (this module only names those files),
annotations.json is written only by ``annotations.py``, never by
:class:`Run`, so a trainer rewriting summary.json cannot lose a tag added
while it runs; everything else goes through :class:`Run`.

A run's status (summary.json's ``status``) changes only through the
lifecycle methods of :class:`Run`::

    (created) --start--> running --finish--> completed | pruned | failed | interrupted
                            ^                                  |
                            +------ resume (failed, interrupted, or its process died)

:meth:`Run.record_crash` is ``finish("failed")`` with the traceback in
error.txt; :meth:`Run.mark_stopped` records the end of a run whose process
is gone (a sweep worker that died). Each change is written durably and told
to the run's observers: the run store's re-indexes the run at once, so that
listings and sweeps see it (see index.py), and the Ray executor's ships the
run's files to the driver.

Small files are replaced atomically, so a crash leaves the old or the new
version, never half of one. metrics.csv and diagnostics.csv rows are
written through to the OS at once and fsynced at the next status change.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import time
import traceback
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text, fsync_file
from ..errors import NnexpError
from ..timestamps import timestamp
from .reading import MAX_SMALL_FILE, parse_json, read_bytes

# -- the files --------------------------------------------------------------

CONFIG = "config.yaml"
METRICS = "metrics.csv"
DIAGNOSTICS = "diagnostics.csv"
SUMMARY = "summary.json"
MODEL = "model.npz"
CHECKPOINT = "checkpoint.npz"
PREDICTIONS = "predictions.npz"
ERROR = "error.txt"
ANNOTATIONS = "annotations.json"
CODE_PATCH = "code.patch"
PLOTS = "plots"
ATTEMPTS = "attempts"
LOCK = ".lock"

#: what the trainer measures each epoch, and what comparisons compare
CURVE_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
#: metrics.csv as the trainer writes it, one row per epoch
METRIC_COLUMNS = ("epoch", *CURVE_COLUMNS, "lr", "seconds")
#: metrics.csv columns that are not compared as metrics (``step``: a script's rows, nnexp/tracking/api.py)
NOT_CURVES = ("step", *(c for c in METRIC_COLUMNS if c not in CURVE_COLUMNS))
#: diagnostics.csv, long format: one row per (epoch, layer, statistic); ``name`` is the layer's
#: type (``relu``) or the parameter's name (``3.W``)
DIAGNOSTIC_COLUMNS = ("epoch", "layer", "name", "stat", "value")
#: the statistics diagnostics.csv holds (docs/diagnostics.md defines each)
DIAGNOSTIC_STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_norm",
                    "update_ratio")

# -- the statuses -------------------------------------------------------------

RUNNING = "running"
COMPLETED = "completed"
PRUNED = "pruned"
FAILED = "failed"
INTERRUPTED = "interrupted"
DEAD = "dead"  # never written: how a listing shows a 'running' run whose process is gone
ENDED = (COMPLETED, PRUNED, FAILED, INTERRUPTED)
FINISHED = (COMPLETED, PRUNED)  # nothing left to train


class DamagedRun(NnexpError):
    """A run folder whose summary.json or config.yaml cannot be read or parsed."""

    exit_code = 1


class RunObserver:
    """Told of every change to a run; both methods do nothing unless overridden."""

    def file_changed(self, run: "Run", name: str) -> None:
        """The file ``name`` (relative to the folder) was written, replaced or removed."""

    def status_changed(self, run: "Run", status: str) -> None:
        """The run's status is now ``status`` (summary.json is written and synced)."""


def read_summary(run_dir, run_id: str | None = None) -> dict:
    """summary.json of ``run_dir`` as a dict; DamagedRun if it cannot be read (see
    reading.py: a regular file of at most 1 MiB), does not parse or is not an object."""
    run_dir = os.fspath(run_dir)
    run_id = run_id or os.path.basename(os.path.normpath(run_dir))
    try:
        summary = parse_json(read_bytes(os.path.join(run_dir, SUMMARY), MAX_SMALL_FILE))
    except FileNotFoundError:
        raise DamagedRun(f"run {run_id}: no {SUMMARY}") from None
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read {SUMMARY} ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedRun(f"run {run_id}: invalid {SUMMARY} ({exc})") from None
    if not isinstance(summary, dict):
        raise DamagedRun(f"run {run_id}: {SUMMARY} is a JSON {type(summary).__name__}, not an object")
    return summary


class Run:
    """One run folder being written, and the observers told of its changes."""

    def __init__(self, path, observers=()):
        self.path = Path(path)
        self.id = self.path.name
        self.observers = list(observers)
        self._summary: dict = {}
        self._unsynced: set[Path] = set()  # appended-to files to fsync at the next status change
        self._metric_header: list[str] | None = None  # metrics.csv's columns, once read or written

    @classmethod
    def open(cls, path, observers=()) -> "Run":
        """An existing run folder, to be written on (resumed, marked): its summary is
        kept and updated field by field. DamagedRun if summary.json is unreadable."""
        run = cls(path, observers)
        run._summary = read_summary(run.path, run.id)
        return run

    # -- files --
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def diagnostics_path(self) -> Path:
        return self.path / DIAGNOSTICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def error_path(self) -> Path:
        return self.path / ERROR

    @property
    def code_patch_path(self) -> Path:
        return self.path / CODE_PATCH

    @property
    def plots_dir(self) -> Path:
        return self.path / PLOTS

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def summary(self) -> dict:
        return dict(self._summary)

    @property
    def status(self) -> str | None:
        """summary.json's status; None while the run is only created."""
        return self._summary.get("status")

    def notify_file(self, name: str) -> None:
        """Tell the observers that the file ``name`` was written or removed by
        another module (the trainer's model.npz and checkpoint.npz, say)."""
        for observer in self.observers:
            observer.file_changed(self, name)

    # -- contents --
    def write_config(self, text: str) -> None:
        atomic_write_text(self.config_path, text)
        self.notify_file(CONFIG)

    def write_code_patch(self, patch: bytes | None) -> None:
        """code.patch holds ``patch``; None: there is none (a resumed run's code may be clean now)."""
        if patch is None:
            if not self.code_patch_path.exists():
                return
            self.code_patch_path.unlink()
        else:
            atomic_write_bytes(self.code_patch_path, patch)
        self.notify_file(CODE_PATCH)

    def log_epoch(self, row: dict) -> None:
        """Append one row of the trainer's METRIC_COLUMNS (those ``row`` lacks stay empty)."""
        self.append_metrics([{col: row.get(col) for col in METRIC_COLUMNS}])

    def append_metrics(self, rows: list[dict]) -> None:
        """Append rows of {column: number or None} to metrics.csv; the header is
        written with the first rows.

        The columns are those of the file, then the rows' new ones in the order
        first seen (``step`` and ``epoch`` first): a row that brings a new column
        makes the file be rewritten once, atomically, with the column added and
        empty in the rows before. Column names must be plain (see
        :func:`metric_name_problem`); values are numbers, written to round-trip
        exactly. The rows are written through to the OS at once, so that ``cat
        metrics.csv`` while the run goes on, or after its process crashed or was
        killed, shows every row appended; they are fsynced (made to survive a
        power cut too) at the run's next status change, not here: an fsync per
        epoch would cost more than the rest of the epoch's logging
        (docs/benchmarks.md).
        """
        if not rows:
            return
        columns = self._metric_columns()
        wanted = _metric_header(columns, rows)
        if wanted != columns:
            old = _read_metric_cells(self.metrics_path, columns) if columns else []
            self._metric_header = wanted
            text = _metric_text(wanted, old) + _metric_text(wanted, rows, header=False)
            atomic_write_text(self.metrics_path, text, durable=False)  # fsynced at the next status change
        else:
            with open(self.metrics_path, "a", encoding="utf-8", newline="") as f:
                f.write(_metric_text(columns, rows, header=False))
        self._unsynced.add(self.metrics_path)
        self.notify_file(METRICS)

    def _metric_columns(self) -> list[str]:
        """metrics.csv's header ([] while the file is missing), read once per Run."""
        if self._metric_header is None:
            try:
                with open(self.metrics_path, encoding="utf-8", errors="replace", newline="") as f:
                    first = f.readline()
            except FileNotFoundError:
                first = ""
            self._metric_header = [c.strip() for c in first.rstrip("\r\n").split(",")] if first.endswith("\n") else []
        return self._metric_header

    def rewrite_metrics(self, rows: list[dict]) -> None:
        """Replace metrics.csv with exactly ``rows`` (a resumed run goes back to
        its checkpoint's epochs: rows logged after it are dropped)."""
        if rows:
            self._metric_header = _metric_header([], rows)
            atomic_write_text(self.metrics_path, _metric_text(self._metric_header, rows))
        else:
            self._metric_header = []
            self.metrics_path.unlink(missing_ok=True)
        self._unsynced.discard(self.metrics_path)  # replaced durably, or gone
        self.notify_file(METRICS)

    def log_diagnostics(self, rows) -> None:
        """Append one epoch's diagnostics, each row ``(epoch, layer, name, stat, value)``
        (DIAGNOSTIC_COLUMNS); the header is written with the first rows. Written through
        and synced as metrics.csv is (see log_epoch)."""
        new = not self.diagnostics_path.exists()
        with open(self.diagnostics_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(DIAGNOSTIC_COLUMNS)
            writer.writerows([_csv_value(v) for v in row] for row in rows)
        self._unsynced.add(self.diagnostics_path)
        self.notify_file(DIAGNOSTICS)

    def truncate_diagnostics(self, epochs: int) -> None:
        """Keep only the diagnostics of epochs 1..``epochs`` (a resumed run goes back
        to its checkpoint's epochs, as rewrite_metrics does); rows that cannot be
        read (the half-written end of a killed process's file) go too."""
        try:
            with open(self.diagnostics_path, newline="", encoding="utf-8") as f:
                lines = list(csv.reader(f))
        except FileNotFoundError:
            return
        kept = [row for row in lines[1:] if len(row) == len(DIAGNOSTIC_COLUMNS) and _epoch_at_most(row[0], epochs)]
        if len(kept) == len(lines) - 1 and lines[:1] == [list(DIAGNOSTIC_COLUMNS)]:
            return  # nothing to drop: the file stays as it is
        if kept:
            buf = io.StringIO(newline="")
            writer = csv.writer(buf)
            writer.writerow(DIAGNOSTIC_COLUMNS)
            writer.writerows(kept)
            atomic_write_text(self.diagnostics_path, buf.getvalue())
        else:
            self.diagnostics_path.unlink()
        self._unsynced.discard(self.diagnostics_path)  # replaced durably, or gone
        self.notify_file(DIAGNOSTICS)

    def update_summary(self, **fields) -> dict:
        """Merge ``fields`` (anything but the status) into summary.json.

        For progress (epochs completed, seconds, memory): the file is replaced
        atomically but not fsynced, and the index is left alone (a listing
        notices the change by the file's mtime).
        """
        if "status" in fields:
            raise ValueError("a run's status changes through start, resume, finish, record_crash or "
                             "mark_stopped, not update_summary")
        self._summary.update(fields)
        self._write_summary(durable=False)
        return self.summary

    # -- lifecycle --
    def start(self, name: str, started_at: float | None = None, **fields) -> dict:
        """created -> running: the first summary.json, with ``fields`` after the
        run's identity, times and process (``started_at``: seconds since the
        epoch, default now)."""
        if self.status is not None:
            raise ValueError(f"run {self.id} has started before (status {self.status}); resume it instead")
        t = time.time() if started_at is None else started_at
        return self._change(RUNNING, {"id": self.id, "name": name, "status": RUNNING, "reason": None,
                                      "started": timestamp(t), "start_time": t, "ended": None, "pid": os.getpid(),
                                      "host": socket.gethostname(), **fields})

    def resume(self, **fields) -> dict:
        """failed, interrupted or dead -> running, in this process. The crash
        report of the attempt being resumed is kept as error.before-resume-N.txt."""
        if self.status in FINISHED:
            raise ValueError(f"run {self.id} is {self.status}: there is nothing to resume")
        resumes = int(self._summary.get("resumes") or 0) + 1
        if self.error_path.exists():
            kept = f"error.before-resume-{resumes}.txt"
            self.error_path.replace(self.path / kept)
            self.notify_file(ERROR)
            self.notify_file(kept)
        return self._change(RUNNING, {"status": RUNNING, "reason": None, "ended": None, "pid": os.getpid(),
                                      "host": socket.gethostname(), "resumes": resumes, **fields})

    def finish(self, status: str, reason: str | None = None, **fields) -> dict:
        """running -> ``status`` (completed, pruned, failed or interrupted) and why, with
        the final ``fields`` (test metrics, durations)."""
        if status not in ENDED:
            raise ValueError(f"a run ends as one of {', '.join(ENDED)}, not {status!r}")
        return self._change(status, {"status": status, "reason": reason, "ended": timestamp(), **fields})

    def record_crash(self, exc: BaseException, reason: str | None = None) -> None:
        """-> failed, with the traceback of ``exc`` in error.txt and ``reason``
        (default: the exception's type and text). If even this cannot be written
        (disk full, folder gone), nothing is raised: the original error is the one to show."""
        try:
            self.error_path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
            self.notify_file(ERROR)
        except OSError:
            pass
        try:
            self.finish(FAILED, reason=reason or f"{type(exc).__name__}: {exc}")
        except OSError:
            pass

    def mark_stopped(self, status: str, reason: str) -> bool:
        """Record the end of a run whose process is gone (a sweep worker that died,
        a cancelled task): only a run still marked running changes. True if it did."""
        if self.status != RUNNING:
            return False
        self.finish(status, reason=reason)
        return True

    # -- writing --
    def _change(self, status: str, fields: dict) -> dict:
        self._summary.update(fields)
        self._sync_appended()
        self._write_summary(durable=True)  # a status change survives a power cut
        for observer in self.observers:
            observer.status_changed(self, status)
        return self.summary

    def _write_summary(self, durable: bool) -> None:
        atomic_write_text(self.summary_path, json.dumps(self._summary, indent=2, default=_json_default) + "\n",
                          durable=durable)
        self.notify_file(SUMMARY)

    def _sync_appended(self) -> None:
        """fsync the metrics and diagnostics rows appended since the last status change."""
        for path in sorted(self._unsynced):
            fsync_file(path)
        self._unsynced.clear()


def prepare_attempt(path) -> int:
    """Make ``path`` an empty run folder for a new attempt at a sweep trial and
    return the attempt's number; the files of an earlier attempt (failed,
    interrupted) move to ``attempts/N/``."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True)
        return 1
    try:
        previous = read_summary(path)
    except DamagedRun:
        previous = {}
    attempt = int(previous.get("attempt") or 1)
    leftovers = [p for p in path.iterdir() if p.name != ATTEMPTS]
    if not leftovers:
        return attempt
    archive = path / ATTEMPTS / str(attempt)
    archive.mkdir(parents=True, exist_ok=True)
    for p in leftovers:
        shutil.move(str(p), str(archive / p.name))
    return attempt + 1


def live_status(summary: dict) -> str | None:
    """The recorded status, except that a 'running' run whose process is gone
    (killed with SIGKILL, machine rebooted) is shown as 'dead'."""
    status = summary.get("status")
    pid = summary.get("pid")
    if status != RUNNING or summary.get("host") != socket.gethostname() or not isinstance(pid, int):
        return status
    return status if process_alive(pid) else DEAD


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists and is not a zombie (a process
    of another user counts as alive)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process that nobody has reaped yet still answers signal 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _epoch_at_most(text: str, epochs: int) -> bool:
    try:
        return int(text) <= epochs
    except ValueError:
        return False


#: the columns a metrics row may be plotted against; they lead the header
AXES = ("step", "epoch")
_PLAIN = frozenset((float, int))  # cell types whose repr is what _csv_value writes
_BAD_NAME = re.compile(r'[,"\r\n]')


def metric_name_problem(name) -> str | None:
    """Why ``name`` cannot be a metrics.csv column (None if it can): the file is
    read by splitting lines at commas, so a name holds no comma, quote or newline."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name.strip() or name != name.strip():
        return "is empty or starts or ends with a space"
    if _BAD_NAME.search(name):
        return "holds a comma, a quote or a line break"
    return None


def _metric_header(columns: list[str], rows: list[dict]) -> list[str]:
    """``columns`` with the new keys of ``rows`` added (axes first, others in the order first seen)."""
    known = set(columns)
    new = [k for row in rows if not known.issuperset(row) for k in row if k not in known and not known.add(k)]
    if not new:
        return columns
    everything = set(columns) | set(new)
    axes = [a for a in AXES if a in everything]
    return axes + [c for c in columns + new if c not in AXES]


def _metric_text(columns: list[str], rows, header: bool = True) -> str:
    """CSV text of ``rows`` (dicts of numbers, None or cell texts read back), with
    the header first if ``header``, as csv.writer writes it (CRLF line ends)."""
    lines = [",".join(columns)] if header else []
    index = {c: i for i, c in enumerate(columns)}
    width, same = len(columns), tuple(columns)
    keys = order = None
    for row in rows:
        if tuple(row) != keys:  # the cells' places, worked out once per run of rows with the same keys
            keys = tuple(row)
            order = None if keys == same else [index.get(k) for k in keys]
        values = row.values()
        if _PLAIN.issuperset(map(type, values)):  # floats and ints only: repr is their exact cell
            texts = list(map(repr, values))
        else:
            texts = [c if type(c) is str else _csv_value(c) for c in values]
        if order is None:
            lines.append(",".join(texts))
        else:
            cells = [""] * width
            for i, text in zip(order, texts):
                if i is not None:  # a key that is no column is not written
                    cells[i] = text
            lines.append(",".join(cells))
    return "\r\n".join(lines) + "\r\n" if lines else ""


def _read_metric_cells(path: Path, columns: list[str]) -> list[dict]:
    """The rows of metrics.csv as {column: cell text}; a half-written last line
    or a row with the wrong number of cells is dropped."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    header = [c.strip() for c in lines[0].rstrip("\r").split(",")]
    rows = []
    for line in lines[1:-1]:  # the last piece: "" after a complete line, or a half-written one
        cells = line.rstrip("\r").split(",")
        if len(cells) == len(header):
            rows.append(dict(zip(header, cells)))
    return rows


def csv_cell(value) -> str:
    """A number (or None) as metrics.csv writes it."""
    return _csv_value(value)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # a cell read back from the file
        return value
    if isinstance(value, float):
        return float.__repr__(value)  # full precision: metrics must round-trip exactly
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
