"""Where a run's network computes: ``train.device``, cpu (NumPy) or gpu (CuPy).

On the GPU the reference network runs with CuPy as its array module
(nnexp/nn/arrays.py): parameters, activations, gradients, optimizer state
and the training data live on the device; the data goes up once per run.
The run folder does not change: weights and checkpoints are NumPy arrays.
Before anything is written, ``array_module`` checks that CuPy imports and
sees a GPU, and says in one line what is missing otherwise.
"""

from __future__ import annotations

import os
import platform

import numpy as np

from .errors import ConfigError
from .nn.arrays import gpu_facts, gpu_module

DEVICES = ("cpu", "gpu")


def array_module(device: str):
    """NumPy for "cpu"; CuPy for "gpu" once it is known to work (ConfigError, exit 2, otherwise)."""
    if device == "cpu":
        return np
    try:
        return gpu_module()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), or what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def facts(xp) -> dict:
    """What a run records about where it computed: the device, the CPU (model,
    cores) and, on a GPU, its name, memory and CuPy's and CUDA's versions."""
    out = {"device": "cpu" if xp is np else "gpu", "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    if xp is not np:
        out.update(gpu_facts(xp))
    return out
