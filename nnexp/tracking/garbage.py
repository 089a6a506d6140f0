"""What no run needs (``nnexp gc``): found, then removed.

- **partial files**: ``.<name>.<pid>.tmp``, the temporary file of an atomic
  write (see nnexp/atomic.py) whose writer died before renaming it; only when
  that process is gone and the file is older than GRACE_SECONDS (a writer on
  another host sharing the store has no pid here);
- **old attempts**: a sweep trial's ``attempts/N/``, the files of attempts
  before the one the run folder holds (kept for a look at what failed);
- **checkpoints of finished runs**: ``checkpoint.npz`` of a completed or
  pruned run (the trainer deletes it when the run finishes; a process killed
  at that moment leaves it). A checkpoint of an unfinished run is never
  touched: it is what ``nnexp resume`` continues from;
- **removal leftovers**: ``.trash-*`` folders of an ``nnexp rm`` that was
  killed while deleting;
- **orphan folders**: a folder named like a run that never got a
  summary.json (its creator was killed within its first moments) and holds
  nothing but a config, a code.patch, earlier attempts or partial files, older than
  GRACE_SECONDS, not a trial folder of a running sweep.

Lock files (``.lock``, a sweep's ``lock``) are left alone: deleting a lock
file while another process may be opening it would let two processes hold
"the" lock at once, and they are empty. Anything inside a running run, a
run being resumed or a running sweep's unfinished trials is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..filelock import LockHeld, is_locked, waiting
from .index import INDEX_NAME, RunIndex
from .removal import is_trash, why_kept
from .run import ATTEMPTS, CHECKPOINT, CODE_PATCH, CONFIG, FINISHED, LOCK, SUMMARY, DamagedRun, live_status, process_alive, \
    read_summary
from .sweeps import SWEEPS, SweepFolder
from .usage import tree_size

GRACE_SECONDS = 600
PARTIAL = "partial file"
ATTEMPT = "old attempts"
CHECKPOINT_KIND = "checkpoint of a finished run"
TRASH = "removal leftover"
ORPHAN = "orphan folder"
KINDS = (PARTIAL, ATTEMPT, CHECKPOINT_KIND, TRASH, ORPHAN)

_TMP_RE = re.compile(r"^\..+\.(\d+)\.tmp$")
_RUN_NAME_RE = re.compile(r"^(\d{8}-\d{6}-.+|(?P<sweep>.+)-t\d{3,})$")


@dataclass
class Garbage:
    path: Path
    kind: str
    bytes: int
    run: str | None = None  # the run folder it belongs to, if any

    def as_dict(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "bytes": self.bytes, "run": self.run}


def find_garbage(store, now: float | None = None) -> list[Garbage]:
    """Everything under the store at ``store`` that ``nnexp gc`` removes (see above)."""
    root = Path(store)
    now = time.time() if now is None else now
    found: list[Garbage] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith(INDEX_NAME):
            continue
        if is_trash(entry.name) and entry.is_dir(follow_symlinks=False):
            if not _locked_folder(path):  # an rm still deleting it holds its lock
                found.append(Garbage(path, TRASH, tree_size(path)[0]))
        elif entry.name == SWEEPS and entry.is_dir(follow_symlinks=False):
            found += _partials(path, now)
        elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            found += _in_run_folder(root, path, now)
        elif _is_partial(entry.name, path, now):
            found.append(Garbage(path, PARTIAL, tree_size(path)[0]))
    return found


def collect(store, items: list[Garbage]) -> int:
    """Remove ``items`` (from find_garbage), checking each run's state again under
    its lock; returns the bytes freed."""
    root = Path(store)
    freed = 0
    for item in items:
        if item.run is not None and item.kind != ORPHAN:
            freed += _collect_in_run(root, item)
        elif item.kind == TRASH and _locked_folder(item.path):
            continue
        else:
            freed += _delete(item)
    try:
        RunIndex(root, timeout=2.0).sync(warn=lambda message: None, full=False, brief=True)  # drop stale rows
    except Exception:  # noqa: BLE001 - the index is a cache; the next listing cleans it
        pass
    return freed


def _in_run_folder(root: Path, path: Path, now: float) -> list[Garbage]:
    run_id = path.name
    try:
        summary = read_summary(path, run_id)
    except DamagedRun:
        summary = None
    if summary is None:
        return _orphan(root, path, now)
    busy = why_kept(root, path, summary) is not None
    found = [] if busy else _partials(path, now, run_id)
    if busy:
        return found
    attempts = path / ATTEMPTS
    if attempts.is_dir():
        found.append(Garbage(attempts, ATTEMPT, tree_size(attempts)[0], run_id))
    checkpoint = path / CHECKPOINT
    if live_status(summary) in FINISHED and checkpoint.is_file():
        found.append(Garbage(checkpoint, CHECKPOINT_KIND, tree_size(checkpoint)[0], run_id))
    return found


def _orphan(root: Path, path: Path, now: float) -> list[Garbage]:
    """A folder without a readable summary.json: garbage only if it is clearly a run
    folder whose creator died (see the module's docstring); else left alone."""
    match = _RUN_NAME_RE.match(path.name)
    if match is None or (path / SUMMARY).exists():  # not a run's name, or a damaged summary: not ours to judge
        return []
    sweep = match.group("sweep")
    if sweep and SweepFolder(root, sweep).is_running():
        return []
    try:
        names = {p.name for p in path.iterdir()}
        old = now - path.stat().st_mtime > GRACE_SECONDS
    except OSError:
        return []
    extra = names - {CONFIG, CODE_PATCH, ATTEMPTS, LOCK}
    if not old or any(not _TMP_RE.match(n) for n in extra):
        return []
    if LOCK in names and is_locked(path / LOCK):
        return []
    return [Garbage(path, ORPHAN, tree_size(path)[0], path.name)]


def _partials(folder: Path, now: float, run_id: str | None = None) -> list[Garbage]:
    found = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            if _is_partial(name, path, now):
                found.append(Garbage(path, PARTIAL, tree_size(path)[0], run_id))
    return found


def _is_partial(name: str, path: Path, now: float) -> bool:
    match = _TMP_RE.match(name)
    if match is None:
        return False
    try:
        old = now - path.lstat().st_mtime > GRACE_SECONDS
    except OSError:
        return False
    return old and not process_alive(int(match.group(1)))


def _locked_folder(path: Path) -> bool:
    try:
        with waiting(path, timeout=0.0):
            return False
    except LockHeld:
        return True
    except OSError:
        return False


def _collect_in_run(root: Path, item: Garbage) -> int:
    """Delete an item of a run folder, under the run's lock, if the run is still idle."""
    run_dir = root / item.run
    try:
        with waiting(run_dir, timeout=5.0):
            summary = read_summary(run_dir, item.run)
            if why_kept(root, run_dir, summary) is not None:
                return 0
            if item.kind == CHECKPOINT_KIND and live_status(summary) not in FINISHED:
                return 0
            return _delete(item)
    except (OSError, LockHeld, DamagedRun):
        return 0


def _delete(item: Garbage) -> int:
    """Remove a file or folder; the bytes it took (0 if it was gone already)."""
    size = tree_size(item.path)[0]
    try:
        if item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path)
        else:
            item.path.unlink()
    except FileNotFoundError:
        return 0
    except OSError:
        return size - tree_size(item.path)[0]
    return size
