"""Removing runs (``nnexp rm``) and sweep folders, never one that is running.

A run folder is removed in two steps: renamed, inside the store, to a hidden
``.trash-<id>-<random>`` (one atomic rename: a listing sees the run or not,
never half of it), then deleted. If the process dies between the two, the
trash folder is left for ``nnexp gc``. Before the rename, under the run
folder's lock (the one ``nnexp tag`` and ``note`` take) and its resume lock,
the run's status is read again: a run that is running, being resumed, or an
unfinished trial of a sweep whose driver is running (which may start it
again) is kept, with the reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..atomic import fsync_dir
from ..filelock import LockHeld, exclusive, is_locked, waiting
from .index import RunIndex
from .run import FINISHED, LOCK, RUNNING, DamagedRun, live_status, read_summary
from .sweeps import LOCK as SWEEP_LOCK
from .sweeps import SweepFolder
from .usage import tree_size

TRASH_PREFIX = ".trash-"


@dataclass
class Candidate:
    """A run chosen for removal, as the preview shows it."""

    id: str
    name: str | None
    status: str | None
    sweep: str | None
    bytes: int
    files: int
    kept: str | None  # why it will not be removed (None: it will be)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def why_kept(root: Path, run_dir: Path, summary: dict) -> str | None:
    """The reason run folder ``run_dir`` must not be removed now, or None."""
    status = live_status(summary)
    if status == RUNNING:
        pid, host = summary.get("pid"), summary.get("host")
        if pid is None:
            return "running"
        return f"running (pid {pid} on {host})" if host else f"running (pid {pid})"
    if (run_dir / LOCK).exists() and is_locked(run_dir / LOCK):
        return "being resumed"
    sweep = summary.get("sweep")
    if isinstance(sweep, str) and status not in FINISHED and SweepFolder(root, sweep).is_running():
        return f"its sweep {sweep} is running and may start it again"
    return None


def candidates(root, records: list[dict]) -> list[Candidate]:
    """The preview of removing these runs: each with its size and, if it will be
    kept, why."""
    root = Path(root)
    out = []
    for r in records:
        s = r.get("summary") or {}
        size, files = tree_size(r["path"])
        out.append(Candidate(r["id"], s.get("name"), live_status(s), s.get("sweep"), size, files,
                             why_kept(root, Path(r["path"]), s)))
    return out


def remove_run(root, run_id: str) -> str | None:
    """Remove run folder ``run_id`` of the store at ``root``; None when it is
    gone, else why it was kept (checked again here, under the run's locks)."""
    root = Path(root)
    run_dir = root / run_id
    try:
        with ExitStack() as stack:
            fd = stack.enter_context(waiting(run_dir, timeout=5.0))
            if os.fstat(fd).st_ino != os.stat(run_dir).st_ino:
                return "removed by another process"
            try:
                summary = read_summary(run_dir, run_id)
            except DamagedRun:
                summary = {}  # a damaged run may be removed: nothing will ever run it
            reason = why_kept(root, run_dir, summary)
            if reason:
                return reason
            # Nothing can start the run while these are held: a resume taking .lock or a
            # sweep driver taking its sweep's lock just now fails with "locked", retriable.
            stack.enter_context(exclusive(run_dir / LOCK))
            sweep = summary.get("sweep")
            if isinstance(sweep, str) and summary.get("status") not in FINISHED:
                folder = SweepFolder(root, sweep)
                if folder.path.is_dir():
                    stack.enter_context(exclusive(folder.path / SWEEP_LOCK))
            _discard(root, run_dir, run_id)
    except FileNotFoundError:
        return "already removed"
    except LockHeld:
        return "locked by another process (being resumed, tagged or removed)"
    return None


def remove_runs(root, run_ids) -> dict[str, str | None]:
    """remove_run for each id ({id: None or why kept}), then the index forgets the removed ones."""
    results = {run_id: remove_run(root, run_id) for run_id in run_ids}
    try:
        RunIndex(root, timeout=2.0).forget([i for i, why in results.items() if why is None])
    except Exception:  # noqa: BLE001 - the next listing drops rows of vanished folders anyway
        pass
    return results


def remove_sweep_folder(root, sweep_id: str, remaining: int) -> str | None:
    """Remove ``sweeps/<sweep_id>`` when no run of the sweep is left (``remaining``)
    and no driver runs it; None when removed, else why it was kept."""
    root = Path(root)
    folder = SweepFolder(root, sweep_id)
    if not folder.path.is_dir():
        return None
    if remaining:
        return f"{remaining} of its runs {'is' if remaining == 1 else 'are'} kept"
    try:
        with exclusive(folder.path / SWEEP_LOCK):
            _discard(root, folder.path, f"sweep-{sweep_id}")
    except LockHeld:
        return "its driver is running"
    except FileNotFoundError:
        return None
    return None


def _discard(root: Path, path: Path, label: str) -> None:
    """Rename ``path`` to a hidden trash folder of the store, then delete it."""
    trash = root / f"{TRASH_PREFIX}{label}-{secrets.token_hex(3)}"
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)  # what cannot be deleted now stays for nnexp gc


def is_trash(name: str) -> bool:
    return name.startswith(TRASH_PREFIX)

