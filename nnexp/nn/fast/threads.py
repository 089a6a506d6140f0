"""Running independent chunks of a layer's work on several cores.

Most of nnexp's parallelism is OpenBLAS's: each big matrix product uses the
BLAS threads (``OPENBLAS_NUM_THREADS``).  The Winograd convolution
(winograd.py) is different: its matrix products are small (a few samples'
tiles at a time, kept in cache) and most of its time goes to NumPy
element-wise passes, which run on one core, so more BLAS threads do not help
it.  What does use several cores is giving each core whole chunks: Python
threads (NumPy releases the GIL inside its loops and BLAS calls) each working
through their own chunks, with BLAS set to one thread meanwhile (two threaded
BLAS calls at once compete for the same cores).

How much the other threads gain is limited by Python's interpreter lock: the
chunks are small, so each thread makes thousands of short NumPy calls and
hands the lock over at every one.  Evaluating a whole dataset therefore
shares its batches among processes (forked.py), and training can cut each
batch into shards computed by processes (data_parallel.py,
``train.data_parallel``).  docs/benchmarks.md has the figures.

The thread budget is the BLAS thread count the process was started with, so a
sweep worker started with one BLAS thread stays on one core.  Setting the BLAS
thread count at run time needs OpenBLAS's ``openblas_set_num_threads``, found
in the OpenBLAS library this process has loaded (Linux: /proc/self/maps).
Without it (another BLAS, another OS) everything runs in the calling thread.

Results do not depend on the number of threads: every chunk is computed the
same way (one BLAS thread, even when there is only one chunk) by whichever
thread runs it, and callers combine the chunks' results in chunk order.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["map_chunks", "one_blas_thread", "small_ufunc_buffers", "workers"]

# (get, set) symbol names of OpenBLAS builds: NumPy's wheels, 64-bit-int builds, plain.
_SYMBOLS = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads"))

_lock = threading.Lock()
_blas = None          # (get, set) or False once looked for and not found
_pool: tuple[int, int, ThreadPoolExecutor] | None = None   # (pid, workers, pool)


def _loaded_openblas() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.isfile(p))


def _blas_controls():
    """OpenBLAS's (get_num_threads, set_num_threads), or None."""
    global _blas
    with _lock:
        if _blas is None:
            _blas = False
            for path in _loaded_openblas():
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for get, set_ in _SYMBOLS:
                    if hasattr(lib, get) and hasattr(lib, set_):
                        getattr(lib, set_).argtypes = [ctypes.c_int]
                        _blas = (getattr(lib, get), getattr(lib, set_))
                        break
                if _blas:
                    break
        return _blas or None


def workers() -> int:
    """How many threads map_chunks uses: the BLAS thread count, or 1 when that
    cannot be set at run time."""
    controls = _blas_controls()
    return max(1, int(controls[0]())) if controls else 1


def _executor(n: int) -> ThreadPoolExecutor:
    """A pool of n threads, made again in a forked child (threads do not survive fork)."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != n:
            _pool = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="nnexp-chunks"))
        return _pool[2]


def map_chunks(fn, starts: list[int]) -> list:
    """[fn(start, worker) for start in starts], the chunks shared among workers() threads.

    ``worker`` (0 .. workers-1) tells fn which scratch buffers are its own:
    worker k runs chunks k, k + W, k + 2W, ... in order.  Results come back in
    the order of ``starts``.  fn runs under small_ufunc_buffers(): it may make
    element-wise passes and BLAS calls, but no NumPy reductions (see there)."""
    n = max(1, min(workers(), len(starts)))

    def run(k):
        with small_ufunc_buffers():
            return [fn(s, k) for s in starts[k::n]]

    # a single chunk too: two BLAS threads may round a product differently from one
    with one_blas_thread():
        if n <= 1:
            return run(0)
        parts = list(_executor(n).map(run, range(n)))
    return [parts[i % n][i // n] for i in range(len(starts))]


# NumPy's ufuncs copy operands that are not contiguous through a buffer of
# np.getbufsize() elements (8192 by default) when they cannot walk them in one
# loop.  For the strided slices of the Winograd transforms (runs of a few
# hundred contiguous floats, every other row) that copying is most of the
# cost; with a 256-element buffer NumPy walks the memory in place, with the
# same values.  Only for element-wise passes: a reduction's summation order
# follows the buffer, so a different size could change its last bits.
SMALL_UFUNC_BUFFER = 256


@contextlib.contextmanager
def small_ufunc_buffers():
    """NumPy's ufunc buffer at SMALL_UFUNC_BUFFER elements inside the block (this
    thread only), as before after it."""
    before = np.setbufsize(SMALL_UFUNC_BUFFER)
    try:
        yield
    finally:
        np.setbufsize(before)


@contextlib.contextmanager
def one_blas_thread():
    """BLAS (and so map_chunks) on one thread inside the block, as before after it."""
    controls = _blas_controls()
    if controls is None:
        yield
        return
    get, set_ = controls
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)
