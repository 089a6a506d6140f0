"""Evaluation on several cores: the batches shared among forked processes.

Within one batch, the convolutions share their chunks among threads
(threads.py), but the chunks are small (they must stay in cache), so each
thread makes thousands of short NumPy calls and every call hands Python's
global interpreter lock to the other threads: evaluation gains little from
them.  Separate processes share no lock and run side by side at full speed.

So ``map_batches`` runs whole batches in ``threads.workers()`` processes: this
process takes the first run of batches, forked children the others, and each
child sends its results back pickled through a pipe.  A child sees the
parent's memory as it was at the fork (the model, the data) without copying
it.  Each batch is computed exactly as it would be in one process, so the
results do not depend on the number of processes.

It stays in one process where forking does not pay or is not safe: one
worker, small inputs (fewer than MIN_VALUES input numbers: a fork costs a few
milliseconds), no ``os.fork`` (Windows), or a process connected to Ray (it runs
gRPC threads, which are not safe to fork).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import sys
import traceback
import warnings

import numpy as np

from .threads import one_blas_thread, workers

__all__ = ["can_fork", "describe", "kill", "map_batches", "processes", "shared_array", "start_child"]

MIN_VALUES = 2**20   # ~1,300 MNIST images; below that, one process


def processes(n_batches: int, n_values: int) -> int:
    """How many processes map_batches uses for n_batches batches of n_values numbers in all."""
    if n_values < MIN_VALUES or not can_fork():
        return 1
    return max(1, min(workers(), n_batches))


def can_fork() -> bool:
    """Whether this process may fork workers: it has ``os.fork`` and is not connected to Ray."""
    return hasattr(os, "fork") and not _in_ray()


def _in_ray() -> bool:
    """Whether this process is connected to Ray (a Ray worker or driver)."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(getattr(ray, "is_initialized", lambda: False)())


def map_batches(fn, x: np.ndarray, batch_size: int) -> list:
    """[fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)], the batches
    shared among processes() processes in contiguous runs.  fn's results must
    pickle (arrays do); an error in a child is raised here as RuntimeError with
    the child's traceback."""
    starts = list(range(0, len(x), batch_size))
    n = processes(len(starts), x.size)
    if n <= 1:
        return [fn(x[s:s + batch_size]) for s in starts]
    runs = [list(part) for part in np.array_split(starts, n)]
    children = []   # (pid, readable end of its pipe)
    try:
        for run in runs[1:]:
            children.append(_fork(lambda run=run: [fn(x[s:s + batch_size]) for s in run]))
        with one_blas_thread():
            results = [fn(x[s:s + batch_size]) for s in runs[0]]
        while children:
            results += _collect(*children.pop(0))
    finally:
        for pid, reader in children:      # only after an error: stop and reap the rest
            reader.close()
            kill(pid)
    return results


def _fork(work):
    """Start a child that runs work() and pickles (True, result) or (False,
    traceback text) into a pipe; (pid, reader)."""
    r, w = os.pipe()

    def body():
        os.close(r)
        try:
            message = (True, work())
        except BaseException:
            message = (False, traceback.format_exc())
        with os.fdopen(w, "wb") as pipe:
            pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)

    pid = start_child(body)
    os.close(w)
    return pid, os.fdopen(r, "rb")


def start_child(body) -> int:
    """Fork a child that runs body() with one BLAS thread, then exits: status 0
    if body returned, 1 if it raised.  The child ignores Ctrl-C (the parent's to
    handle), dies with its parent (Linux), and skips atexit handlers and stdio
    flushing.  Returns the child's pid."""
    parent = os.getpid()
    with warnings.catch_warnings():
        # Python >= 3.12 warns about forking a process with threads.  Ours are
        # idle pool threads (threads.py) and OpenBLAS's; the child uses neither.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:                                      # the child
        status = 1
        try:
            _die_with(parent)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the parent's handler
            with one_blas_thread():
                body()
            status = 0
        finally:
            os._exit(status)
    return pid


def shared_array(shape, dtype) -> np.ndarray:
    """A zeroed array in anonymous shared memory: a child forked after this
    call and this process see each other's writes to it."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    memory = mmap.mmap(-1, max(1, count * dtype.itemsize))   # MAP_SHARED, zero-filled
    return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)


def _die_with(parent: int) -> None:
    """Linux: have the kernel SIGKILL this child when its parent dies (a training
    killed mid-evaluation), instead of computing on as an orphan."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):                   # not Linux: no such call
        return
    if os.getppid() != parent:                          # it died before the call
        os._exit(1)


def _collect(pid: int, reader) -> list:
    """The result a child sends, once it has exited; on any error the child is
    killed (if still running) and reaped before the error goes on."""
    try:
        with reader:
            ok, value = pickle.load(reader)
    except BaseException as exc:
        status = kill(pid)
        if isinstance(exc, (EOFError, pickle.UnpicklingError)):
            raise RuntimeError(f"evaluation worker process {pid} died without a result "
                               f"({describe(status)})") from exc
        raise
    os.waitpid(pid, 0)
    if not ok:
        raise RuntimeError(f"evaluation failed in worker process {pid}:\n{value}")
    return value


def kill(pid: int) -> int:
    """SIGKILL (harmless if it has already exited: it is not reaped yet) and reap; its status."""
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"
