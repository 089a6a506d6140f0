"""What takes the disk in a run store: sizes of run folders, sweeps and the rest.

Sizes are the space files take on disk (``st_blocks``, what ``du`` reports
and what removing them frees), not their length; symbolic links are counted
as links, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .index import INDEX_NAME
from .sweeps import SWEEPS


def disk_bytes(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


def tree_size(path) -> tuple[int, int]:
    """(bytes on disk, number of files) of a file or a folder and everything in it;
    (0, 0) if it does not exist. Files vanishing meanwhile are skipped."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0, 0
    if not os.path.isdir(path) or os.path.islink(path):
        return disk_bytes(st), 1
    total, files = disk_bytes(st), 0
    stack = [os.fspath(path)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += disk_bytes(st)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                files += 1
    return total, files


def store_usage(store) -> dict:
    """{"runs": {folder name: (bytes, files)}, "sweeps": {sweep id: (bytes, files)},
    "index": bytes, "other": bytes} for every entry of the store: run folders
    (any non-hidden folder but ``sweeps``), the sweeps' own folders, the index
    files, and the rest (hidden leftovers such as a removal's trash)."""
    root = Path(store)
    out = {"runs": {}, "sweeps": {}, "index": 0, "other": 0}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name == SWEEPS and entry.is_dir(follow_symlinks=False):
            for sweep in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sweep.is_dir(follow_symlinks=False):
                    out["sweeps"][sweep.name] = tree_size(sweep.path)
        elif entry.name.startswith(INDEX_NAME):
            out["index"] += tree_size(entry.path)[0]
        elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            out["runs"][entry.name] = tree_size(entry.path)
        else:
            out["other"] += tree_size(entry.path)[0]
    return out


def human(n: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"
