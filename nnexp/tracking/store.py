"""The run store: a folder of run folders, each readable with ``ls`` and ``cat``.

A run folder holds::

    config.yaml     the resolved config (every default filled in)
    metrics.csv     one row per epoch, appended as the epoch ends
    summary.json    status, best/final/test metrics, durations, versions, host
    model.npz       trained weights (loaded with allow_pickle=False)
    plots/          learning curves, confusion matrix, misclassified images

The folders are the source of truth; this module only creates and reads them.
Small files are replaced atomically (temp file, fsync, rename), so a crash
leaves either the old or the new version, never half of one.
"""

from __future__ import annotations

import csv
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


class RunNotFound(NnexpError):
    exit_code = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
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

        The row is flushed and fsynced so that ``cat metrics.csv`` during
        training, or after a crash, shows every finished epoch.
        """
        new = not self.metrics_path.exists()
        with open(self.metrics_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(METRIC_COLUMNS)
            writer.writerow([_csv_value(row.get(col)) for col in METRIC_COLUMNS])
            f.flush()
            os.fsync(f.fileno())

    def update_summary(self, **fields) -> dict:
        self._summary.update(fields)
        atomic_write_text(self.summary_path, json.dumps(self._summary, indent=2, default=_json_default) + "\n")
        return self._summary

    @property
    def summary(self) -> dict:
        return dict(self._summary)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


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
    return status


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

    def runs(self, warn=None) -> list[RunInfo]:
        """Every readable run, oldest first; damaged ones are skipped with a warning."""
        warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        if not self.root.is_dir():
            return []
        infos = []
        for path in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            summary_path = path / "summary.json"
            if not summary_path.exists():
                continue
            try:
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
                if not isinstance(summary, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                warn(f"skipping run {path.name}: unreadable summary.json ({exc})")
                continue
            infos.append(RunInfo(path, summary))
        # ids sort by second only; start_time orders runs started in the same second
        return sorted(infos, key=lambda i: (_number(i.summary.get("start_time")), i.id))

    def resolve(self, ref: str) -> RunInfo:
        """Find a run by id, unique id prefix, name (newest wins) or ``latest``."""
        if not _REF_RE.match(ref or "") or ".." in ref:
            raise RunNotFound(f"{ref!r} is not a valid run id or name (letters, digits, '.', '_', '-')")
        runs = self.runs()
        if not runs:
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
        raise RunNotFound(f"no run {ref!r} in store {self.root} (see 'nnexp runs --store {self.root}')")
