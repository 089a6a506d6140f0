"""Advisory file locks (``flock``): one process at a time holds one; the kernel drops
it when the holder exits, however it exits, so a killed process never leaves a
stale lock behind."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is the note it left in the file ('' if none)."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked" + (f" by {holder}" if holder else ""))
        self.path, self.holder = path, holder


@contextmanager
def exclusive(path, note: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the with-block.

    Raises LockHeld at once, without waiting, if another process holds it.
    ``note`` (who holds the lock, e.g. "pid 12 on host") replaces the file's
    text while the lock is held, for the message of whoever finds it taken.
    """
    path = Path(path)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise LockHeld(path, f.read().strip()) from None
        if note is not None:
            f.seek(0)
            f.truncate()
            f.write(note)
            f.flush()
        yield


def is_locked(path) -> bool:
    """Whether some process holds the lock on ``path`` now (False if the file cannot be opened).

    Opened read-only: asking creates no file (a listing of a read-only store,
    or the dashboard, changes nothing); a missing file is a free lock. Only a
    regular file is a lock: a named pipe in its place is never opened in a way
    that could block, and holds no lock.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@contextmanager
def waiting(path, timeout: float = 10.0, poll: float = 0.01) -> Iterator[int]:
    """Hold an exclusive lock on the folder or file ``path`` (which must exist) for
    the with-block, waiting up to ``timeout`` seconds for another holder; yields
    the open descriptor (``os.fstat`` of it tells whether ``path`` was replaced
    meanwhile). Raises LockHeld after the timeout, FileNotFoundError if ``path``
    does not exist."""
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(Path(path), "") from None
                time.sleep(poll)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock
