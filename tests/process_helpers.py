"""Helpers for the tests of forked worker processes."""

from __future__ import annotations

import os


class Children:
    """The core count a test pretends to have (``n``) and the pids of the
    children started meanwhile (``pids``)."""

    def __init__(self, n: int = 2) -> None:
        self.n, self.pids = n, []

    def recording(self, start):
        """start (a function returning a child's pid, 0 in the child) that also records the pid."""
        def wrapped(*args):
            pid = start(*args)
            if pid:
                self.pids.append(pid)
            return pid
        return wrapped


def reaped(pid: int) -> bool:
    """Whether child ``pid`` has exited and been waited for (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
