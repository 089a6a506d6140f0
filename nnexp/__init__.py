"""nnexp: a from-scratch NumPy neural network with honest, on-disk experiment tracking."""

import os as _os

__version__ = "0.1.0"

# OpenBLAS's worker threads spin for 2**28 cycles (~0.1 s) after every call
# before they sleep.  The Winograd convolution runs its own threads between
# BLAS calls (nnexp/nn/fast/threads.py), and a spinning BLAS thread takes the core
# one of them needs: the CNN benchmark trained 1.4x faster with 2**20 cycles
# (~0.4 ms), the MLP benchmark no slower.  OpenBLAS reads this when it is
# loaded, so it only takes effect if NumPy is imported after nnexp (as in the
# `nnexp` command and the processes it starts); a value already set is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

__all__ = ["load_runs"]


def __getattr__(name):
    # load_runs pulls in pandas; importing it lazily keeps `nnexp runs` quick
    if name == "load_runs":
        from .compare.frame import load_runs

        return load_runs
    raise AttributeError(f"module 'nnexp' has no attribute {name!r}")
