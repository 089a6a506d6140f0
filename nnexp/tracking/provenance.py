"""Where and with what a run was made: versions, git commit and uncommitted changes, BLAS, host.

The uncommitted changes are those of the nnexp package's own git checkout
(the code that computes), as ``git diff HEAD --binary`` of the package
folder, written to the run's code.patch, plus the untracked files under it
by name; nothing when the package is not in a git checkout or git is
missing. A patch over CODE_PATCH_CAP bytes is cut at a line end and the
summary says so; its sha256 is always of the whole patch.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__

PACKAGE = Path(__file__).resolve().parent.parent
#: the most bytes of code.patch written; a run's folder stays small whatever is left uncommitted
CODE_PATCH_CAP = 1 << 20
GIT_TIMEOUT_S = 5


def _git(folder: Path, *args: str) -> str | None:
    """stdout of ``git -C folder args`` (bytes as text), None if git is missing or fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", errors="surrogateescape") if done.returncode == 0 else None


def git_commit(folder: Path = PACKAGE) -> str | None:
    """The commit of the nnexp checkout, with ``-dirty`` if it has local changes."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return None
    dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return commit.strip() + ("-dirty" if (dirty or "").strip() else "")


@dataclass
class CodeChanges:
    """The uncommitted changes under a checkout's folder: ``patch`` (cut to the cap) and
    ``record`` (what summary.json keeps of them)."""

    patch: bytes
    record: dict


def code_changes(folder: Path = PACKAGE, cap: int = CODE_PATCH_CAP) -> CodeChanges | None:
    """The uncommitted changes of the files under ``folder`` (tracked: as a patch against
    HEAD; untracked, not ignored: by name), None when there are none or ``folder`` is in
    no git checkout (or git is missing)."""
    diff = _git(folder, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--", ".")
    if diff is None:
        return None
    untracked = _git(folder, "ls-files", "--others", "--exclude-standard", "--full-name", "--", ".") or ""
    untracked = sorted(line for line in untracked.splitlines() if line)
    if not diff and not untracked:
        return None
    whole = diff.encode("utf-8", errors="surrogateescape")
    patch = whole if len(whole) <= cap else whole[:whole.rfind(b"\n", 0, cap) + 1]
    changed = sorted(line[len("diff --git a/"):].split(" b/", 1)[0] for line in diff.splitlines()
                     if line.startswith("diff --git a/"))
    record = {"patch_sha256": hashlib.sha256(whole).hexdigest(), "patch_bytes": len(whole), "changed": changed,
              "untracked": untracked,
              "patch_cut": None if len(patch) == len(whole) else
              f"code.patch holds the first {len(patch):,} of {len(whole):,} bytes (cap {cap:,})"}
    return CodeChanges(patch, record)


def blas_info() -> dict | None:
    """NumPy's BLAS as threadpoolctl sees it in this process: library, version, kernel
    family (OpenBLAS's ``architecture``) and the threads it computes with now; None
    when no BLAS library is found."""
    from threadpoolctl import threadpool_info  # here only: the CLI's listing commands never load it

    libraries = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    if not libraries:
        return None
    numpy_dir = str(Path(np.__file__).resolve().parent)   # a wheel's own OpenBLAS lies beside it (numpy.libs)
    ours = [lib for lib in libraries if str(lib.get("filepath", "")).startswith((numpy_dir, numpy_dir + ".libs"))]
    lib = (ours or libraries)[0]
    return {"library": lib.get("internal_api"), "version": lib.get("version"),
            "architecture": lib.get("architecture"), "threads": lib.get("num_threads"),
            "threading_layer": lib.get("threading_layer")}


def provenance() -> dict:
    return {
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "nnexp": __version__,
        },
        "git_commit": git_commit(),
        "blas": blas_info(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
