"""Pin BLAS to ``--threads N`` (default 2) before NumPy is imported.

OpenBLAS reads its thread count once, at import time, so each benchmark
imports this module first: ``import blas_threads  # noqa: F401``.
"""

import os
import sys


def requested_threads(argv=None, default: str = "2") -> str:
    argv = sys.argv if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return default


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, requested_threads())
