"""The run store: a folder of run folders, each readable with ``ls`` and ``cat``.

The folders are the source of truth (see ``run.py`` for what one holds and how
its status changes). Listings go through the store's SQLite index
(``index.py``), a cache of the folders' records that listings keep up to
date; every run the store hands out re-indexes itself at each status change.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from ..errors import NnexpError
from ..timestamps import run_id_stamp
from .annotations import KEEP, annotate, annotated_summary
from .index import IndexObserver, RunIndex, Selection
from .records import make_record
from .run import DamagedRun, Run

_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunNotFound(NnexpError):
    exit_code = 1


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:40]
    return slug or "run"


class RunInfo:
    """What a listing knows about a run: its folder and its parsed summary."""

    __slots__ = ("_path", "summary", "_id")

    def __init__(self, path, summary: dict, run_id: str | None = None):
        self._path = path  # a str stays one until asked for: listings make thousands of these
        self.summary = summary
        self._id = run_id

    @property
    def path(self) -> Path:
        if not isinstance(self._path, Path):
            self._path = Path(self._path)
        return self._path

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = os.path.basename(self._path) if isinstance(self._path, str) else self._path.name
        return self._id

    def __eq__(self, other) -> bool:
        return isinstance(other, RunInfo) and (str(self._path), self.summary) == (str(other._path), other.summary)

    def __repr__(self) -> str:
        return f"RunInfo({str(self._path)!r}, {self.summary!r})"


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
        stamp = run_id_stamp()
        for _ in range(10):
            path = self.root / f"{stamp}-{slugify(name)}-{secrets.token_hex(2)}"
            try:
                path.mkdir()
                return self.attach(path.name)
            except FileExistsError:
                continue
            except OSError as exc:
                raise NnexpError(f"cannot create a run folder in {self.root}: {exc.strerror or exc}") from None
        raise NnexpError(f"could not find a free run id in {self.root}")

    def attach(self, run_id: str) -> Run:
        """The run of the store's folder ``run_id``, made but not started (a sweep
        trial's folder, prepared by its driver)."""
        return Run(self.root / run_id, [IndexObserver(self.root)])

    def open(self, run_id: str) -> Run:
        """The run of the store's folder ``run_id``, with its summary, to be written on
        (resumed, marked); DamagedRun if its summary.json cannot be read."""
        return Run.open(self.root / run_id, [IndexObserver(self.root)])

    def reindex(self, run_id: str) -> None:
        """Index run ``run_id`` now, after its files came into the store by other
        means than its Run (copied from a remote node); best effort."""
        IndexObserver(self.root).reindex(self.root / run_id)

    def mark_stopped(self, run_id: str, status: str, reason: str) -> bool:
        """Record that run ``run_id``, whose process is gone, ended as ``status``;
        see Run.mark_stopped. A folder without a readable summary is left alone."""
        try:
            return self.open(run_id).mark_stopped(status, reason)
        except (DamagedRun, FileNotFoundError):
            return False

    def records(self, warn=None, reindex: bool = False, selection: Selection | None = None) -> list[dict]:
        """The record (see ``records.py``) of every readable run, oldest first
        (with a ``selection``: of the runs it keeps, see index.py).

        Read through the store's index, which is brought up to date first
        (``reindex``: rebuilt from scratch). Damaged runs are skipped with
        one ``warn(message)`` each (default: a line on stderr).
        """
        index = RunIndex(self.root)
        if reindex:
            records = index.rebuild(warn)
            if selection is None:
                return records
        return index.sync(warn, selection=selection)

    def runs(self, warn=None, brief: bool = True) -> list[RunInfo]:
        """Every readable run as (folder, summary), oldest first; damaged ones
        are skipped with a warning. ``brief``: only the summary fields a
        listing shows (records.BRIEF_FIELDS), which is quicker to read."""
        return [RunInfo(r["path"], r["summary"], r["id"])
                for r in RunIndex(self.root).sync(warn, full=False, brief=brief)]

    def annotate(self, run_id: str, add=(), remove=(), note=KEEP) -> dict:
        """Change run ``run_id``'s tags and note (see annotations.py) and re-index it."""
        annotations = annotate(self.root / run_id, add, remove, note)
        self.reindex(run_id)
        return annotations

    def resolve(self, ref: str) -> RunInfo:
        """Find a run by id, unique id prefix, name (newest wins) or ``latest``;
        its summary is read from its folder (with its annotations)."""
        info = self.find(ref)
        return RunInfo(info.path, annotated_summary(info.path, info.id))

    def find(self, ref: str, runs: list[RunInfo] | None = None) -> RunInfo:
        """Like resolve, with the brief summary the listing has (quicker: for
        commands that need only the run's id and folder). ``runs``: the
        listing to look in (default: the store's now; one listing for many refs)."""
        if not _REF_RE.match(ref or "") or ".." in ref:
            raise RunNotFound(f"{ref!r} is not a valid run id or name (letters, digits, '.', '_', '-')")
        runs = self.runs() if runs is None else runs
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
            make_record(self.root / ref)  # raises DamagedRun naming the problem
        raise RunNotFound(f"no run {ref!r} in store {self.root} (see 'nnexp runs --store {self.root}')")
