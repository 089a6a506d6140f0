"""Where and with what a run was made: versions, git commit, host."""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path

import numpy as np

from .. import __version__


def git_commit() -> str | None:
    """The commit of the nnexp checkout, with ``-dirty`` if it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def provenance() -> dict:
    return {
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "nnexp": __version__,
        },
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
