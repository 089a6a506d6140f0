"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every file nnexp replaces in place (summary.json, config.yaml, checkpoints,
sweep states, downloaded datasets, reports, files shipped from Ray workers)
is written through :func:`atomic_writer`: the new content goes to a
temporary file next to the target (the same filesystem, so the rename is
atomic), and only a complete file is renamed over the old one. A failure at
any point, Ctrl-C included, removes the temporary file and leaves the target
as it was.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_writer(path, binary: bool = False, durable: bool = True, mode: int | None = None) -> Iterator[IO]:
    """Yield a file for ``path``'s new content; it replaces ``path`` when the block ends without an error.

    ``durable`` fsyncs the data before the rename and the folder after it, so
    that the new file also survives a power cut, not only a crash of the
    process. ``mode`` sets the new file's permission bits (default: as
    ``open`` makes them).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path, text: str, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` (UTF-8), atomically; see :func:`atomic_writer`."""
    with atomic_writer(path, durable=durable) as f:
        f.write(text)


def atomic_write_bytes(path, data: bytes, durable: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``, atomically; see :func:`atomic_writer`."""
    with atomic_writer(path, binary=True, durable=durable, mode=mode) as f:
        f.write(data)


def fsync_file(path) -> None:
    """Make what was written to ``path`` (appended rows, say) survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path) -> None:
    """Make a rename inside ``path`` durable (POSIX keeps the entry in the folder). Best effort:
    some filesystems cannot fsync a folder, and the file itself is already safe then."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
