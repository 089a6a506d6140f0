"""Environment variables nnexp sets for the processes it runs: the ``nnexp``
command itself (``command.py``) and the workers it starts. Never on import:
importing nnexp leaves a program's environment as it was."""

from __future__ import annotations

import os

# OpenBLAS reads this when NumPy loads it: its idle threads then sleep after ~0.4 ms instead of
# spinning for ~0.1 s on the cores the Winograd threads (nnexp/nn/fast/threads.py) need next.
SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "20"}


def process_environment() -> dict[str, str]:
    """SETTINGS, with any value already set in this process's environment kept."""
    return {key: os.environ.get(key, value) for key, value in SETTINGS.items()}


def apply() -> None:
    """Set SETTINGS in this process's environment (values already set are kept);
    only takes effect before NumPy is first imported."""
    os.environ.update(process_environment())
