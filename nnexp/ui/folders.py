"""Which files of the store the dashboard may read: run folders, and a few kinds of file inside them.

A URL names a run by its folder name and a file by its path inside the
folder, percent-encoded. Every part is checked after decoding: no empty,
``.`` or ``..`` part, no slash, backslash or NUL hidden in an encoded part
(``%2e%2e``, ``%2f``), no hidden file (``.lock``, the index); the folder must
sit directly in the store (not be a link) and hold a summary.json, and the
file, once every symbolic link is resolved, must still lie inside that
folder (compared part by part, not as a string prefix) and be a regular file
of a listed type. Anything else is "not found", the same answer as for a
file that does not exist, so probing learns nothing. A file larger than
MAX_SERVED_FILE is listed as too large and never read.

Files are served with a type chosen here, never guessed by the browser, and
as inert documents (the responses forbid scripts; see ``app.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from ..tracking.reading import MIB
from ..tracking.run import SUMMARY

# The run folder names the store makes, and what ``nnexp show`` accepts.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# The files a run page shows or links, by extension: (content type, shown in the browser).
FILE_TYPES = {
    ".png": "image/png",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".yaml": "text/plain; charset=utf-8",
    ".yml": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
}
MAX_LISTED_FILES = 500
MAX_SERVED_FILE = 64 * MIB  # plots and logs are far smaller; a larger file is refused unread


def run_folder(root, run_id: str) -> Path | None:
    """The folder of run ``run_id`` (a folder name, already decoded), or None if
    that is not a run folder directly inside the store ``root``."""
    if not isinstance(run_id, str) or not RUN_NAME.match(run_id) or ".." in run_id:
        return None
    root = Path(root)
    path = root / run_id
    try:
        real_root = os.path.realpath(root)
        if os.path.realpath(path) != os.path.join(real_root, run_id):  # a link to a folder elsewhere
            return None
        if not os.path.lexists(path / SUMMARY):  # one that is not a regular file: the run is damaged, not gone
            return None
    except (OSError, ValueError):
        return None
    return path


def decode_parts(raw: str) -> list[str] | None:
    """The parts of a percent-encoded relative path, decoded; None if any part is
    empty, '.', '..', hidden, or holds a slash, backslash or control character."""
    parts = []
    for piece in raw.split("/"):
        try:
            part = unquote(piece, errors="strict")
        except UnicodeDecodeError:
            return None
        if (not part or part in (".", "..") or part.startswith(".") or "/" in part or "\\" in part
                or any(ord(ch) < 32 or ord(ch) == 127 for ch in part)):
            return None
        parts.append(part)
    return parts


def run_file(run_dir: Path, parts: list[str]) -> tuple[str, str] | None:
    """(resolved path, content type) of the file ``parts`` inside ``run_dir``, or
    None if it is missing, not a regular file, of an unlisted type, or leads
    out of the folder through a symbolic link."""
    if not parts:
        return None
    content_type = FILE_TYPES.get(os.path.splitext(parts[-1])[1].lower())
    if content_type is None:
        return None
    try:
        base = os.path.realpath(run_dir)
        real = os.path.realpath(os.path.join(base, *parts))
        if not inside(real, base) or not os.path.isfile(real):
            return None
    except (OSError, ValueError):
        return None
    return real, content_type


def inside(path: str, folder: str) -> bool:
    """Whether the resolved ``path`` lies below the resolved ``folder``, compared part by
    part (``runs/abcdef/x`` is not inside ``runs/abc``)."""
    return path != folder and os.path.commonpath([path, folder]) == folder


def listed_files(run_dir: Path) -> list[dict]:
    """The files a run page may link: {path (relative, '/'-separated), size, too_large},
    sorted, only those ``run_file`` would serve (hidden ones and earlier attempts left
    out); ``too_large``: above MAX_SERVED_FILE, so not served."""
    out = []
    base = os.fspath(run_dir)
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            parts = os.path.relpath(os.path.join(folder, name), base).split(os.sep)
            if name.startswith(".") or run_file(run_dir, parts) is None:
                continue
            try:
                size = os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            out.append({"path": "/".join(parts), "size": size, "too_large": size > MAX_SERVED_FILE})
            if len(out) >= MAX_LISTED_FILES:
                return out
    return out
