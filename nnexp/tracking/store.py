"""The run store: a folder of run folders, each readable with ``ls`` and ``cat``.

A run folder holds::

    config.yaml     the resolved config (every default filled in)
    metrics.csv     one row per epoch, appended as the epoch ends
    summary.json    status, best/final/test metrics, durations, versions, host
    model.npz       trained weights (loaded with allow_pickle=False)
    plots/          learning curves, confusion matrix, misclassified images

The folders are the source of truth; this module only creates and reads them.
Small files are replaced atomically (temp file, rename), so a crash leaves
either the old or the new version, never half of one; everything is fsynced
at each status change (run start, end), when it must survive a power cut
too. Listings go
through the store's SQLite index (``index.py``), a cache of the folders'
records that listings keep up to date and writers poke when a run starts or
ends.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NnexpError

METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_index_warned = False  # warn once per process when the index cannot be updated


class RunNotFound(NnexpError):
    exit_code = 1


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` so readers never see a partial file.

    ``durable`` also fsyncs the new file before the rename, so that it
    survives a power cut, not only a crash of the process.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:40]
    return slug or "run"


class Run:
    """One run folder being written by the trainer."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self._summary: dict = {}
        self._unsynced_metrics = False

    @classmethod
    def open(cls, path: Path, **kwargs) -> "Run":
        """An existing run folder, to be written on (resuming): its summary is
        kept and updated field by field."""
        from .records import read_summary

        run = cls(path, **kwargs)
        run._summary = read_summary(str(run.path), run.id)
        return run

    # -- files --
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def model_path(self) -> Path:
        return self.path / "model.npz"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def write_config(self, text: str) -> None:
        atomic_write_text(self.path / "config.yaml", text)

    def log_epoch(self, row: dict) -> None:
        """Append one epoch's metrics; the header is written with the first row.

        The row is written through to the OS at once, so that ``cat
        metrics.csv`` during training, or after the process crashed or was
        killed, shows every finished epoch. It is fsynced (made to survive a
        power cut too) at the run's next status change, not here: an fsync
        costs 0.2 ms on an idle disk and several ms on a busy one, and the
        whole epoch's logging must stay under 1 ms.
        """
        new = not self.metrics_path.exists()
        with open(self.metrics_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(METRIC_COLUMNS)
            writer.writerow([_csv_value(row.get(col)) for col in METRIC_COLUMNS])
        self._unsynced_metrics = True

    def save_checkpoint(self, ckpt) -> None:
        """Replace checkpoint.npz (see ``nnexp/checkpoint.py``)."""
        from .. import checkpoint

        checkpoint.save(self.path, ckpt)

    def remove_checkpoint(self) -> None:
        from .. import checkpoint

        checkpoint.remove(self.path)

    def rewrite_metrics(self, rows: list[dict]) -> None:
        """Replace metrics.csv with exactly ``rows`` (a resumed run goes back to
        its checkpoint's epochs: rows logged after it are dropped)."""
        if not rows:
            self.metrics_path.unlink(missing_ok=True)
            return
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(METRIC_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row.get(col)) for col in METRIC_COLUMNS])
        atomic_write_text(self.metrics_path, buf.getvalue())

    def update_summary(self, **fields) -> dict:
        """Merge ``fields`` into summary.json (replaced atomically).

        When the status changes (running, completed, failed, ...), the run is
        also re-indexed at once, so that listings and sweeps see the change
        without waiting for their own check of the folders. Per-epoch updates
        leave the index alone: a listing notices them by the files' mtimes.
        """
        status_changed = "status" in fields and fields["status"] != self._summary.get("status")
        self._summary.update(fields)
        if status_changed:
            self._sync_metrics()
        # Durable at status changes only, like the metrics rows (see log_epoch).
        atomic_write_text(self.summary_path, json.dumps(self._summary, indent=2, default=_json_default) + "\n",
                          durable=status_changed)
        if status_changed:
            self._reindex()
        return self._summary

    def _sync_metrics(self) -> None:
        """fsync the metrics rows appended since the last status change."""
        if not self._unsynced_metrics:
            return
        fd = os.open(self.metrics_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._unsynced_metrics = False

    def _reindex(self) -> None:
        """Best effort: a broken or locked index must never stop a training run."""
        global _index_warned
        try:
            from .index import RunIndex

            RunIndex(self.path.parent, timeout=2.0).upsert(self.path)
        except Exception as exc:  # noqa: BLE001 - any failure here only delays a listing
            if not _index_warned:
                _index_warned = True
                print(f"warning: cannot update the run index of {self.path.parent} ({exc}); "
                      "listings will still find the run", file=sys.stderr)

    @property
    def summary(self) -> dict:
        return dict(self._summary)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: metrics must round-trip exactly
    return value


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def live_status(summary: dict) -> str | None:
    """The recorded status, except that a 'running' run whose process is gone
    (killed with SIGKILL, machine rebooted) is shown as 'dead'."""
    status = summary.get("status")
    pid = summary.get("pid")
    if status != "running" or summary.get("host") != socket.gethostname() or not isinstance(pid, int):
        return status
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return "dead"
    except (PermissionError, OverflowError, OSError):
        pass
    return "dead" if _is_zombie(pid) else status


def _is_zombie(pid: int) -> bool:
    """A killed process that nobody has reaped yet still answers signal 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


@dataclass
class RunInfo:
    """What a listing knows about a run: its folder and its parsed summary."""

    path: Path
    summary: dict

    @property
    def id(self) -> str:
        return self.path.name


class RunStore:
    """A directory of run folders."""

    def __init__(self, root: str | Path = "runs"):
        self.root = Path(root)

    def create(self, name: str) -> Run:
        """Make a new, empty run folder named ``<time>-<name>-<random>``."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnexpError(f"cannot create run store {self.root}: {exc.strerror or exc}") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for _ in range(10):
            path = self.root / f"{stamp}-{slugify(name)}-{secrets.token_hex(2)}"
            try:
                path.mkdir()
                return Run(path)
            except FileExistsError:
                continue
            except OSError as exc:
                raise NnexpError(f"cannot create a run folder in {self.root}: {exc.strerror or exc}") from None
        raise NnexpError(f"could not find a free run id in {self.root}")

    def records(self, warn=None, reindex: bool = False) -> list[dict]:
        """The record (see ``records.py``) of every readable run, oldest first.

        Read through the store's index, which is brought up to date first
        (``reindex``: rebuilt from scratch). Damaged runs are skipped with
        one ``warn(message)`` each (default: a line on stderr).
        """
        from .index import RunIndex

        index = RunIndex(self.root)
        return index.rebuild(warn) if reindex else index.sync(warn)

    def runs(self, warn=None) -> list[RunInfo]:
        """Every readable run as (folder, summary), oldest first; damaged ones
        are skipped with a warning."""
        from .index import RunIndex

        return [RunInfo(Path(r["path"]), r["summary"]) for r in RunIndex(self.root).sync(warn, full=False)]

    def resolve(self, ref: str) -> RunInfo:
        """Find a run by id, unique id prefix, name (newest wins) or ``latest``."""
        if not _REF_RE.match(ref or "") or ".." in ref:
            raise RunNotFound(f"{ref!r} is not a valid run id or name (letters, digits, '.', '_', '-')")
        runs = self.runs()
        if not runs and not (self.root / ref).is_dir():
            raise RunNotFound(f"no runs in store {self.root}")
        if ref in ("latest", "last"):
            return runs[-1]
        for info in runs:
            if info.id == ref:
                return info
        by_prefix = [i for i in runs if i.id.startswith(ref)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            ids = ", ".join(i.id for i in by_prefix[:5])
            raise RunNotFound(f"run prefix {ref!r} is ambiguous in {self.root}: {ids}")
        by_name = [i for i in runs if i.summary.get("name") == ref]
        if by_name:
            return by_name[-1]
        if (self.root / ref).is_dir():  # a folder of that name that the listing skipped: say why
            from .records import make_record

            make_record(self.root / ref)  # raises DamagedRun naming the problem
        raise RunNotFound(f"no run {ref!r} in store {self.root} (see 'nnexp runs --store {self.root}')")
