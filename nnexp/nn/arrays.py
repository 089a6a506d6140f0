"""The array module: NumPy on the CPU, CuPy on a GPU.

The reference network is written once.  Each layer asks the arrays it is
given which module made them (``xp = array_module(x)``) and calls ``xp.``
where NumPy's functions would not follow a CuPy array on their own; CuPy
implements NumPy's API, so the code is the same on both.  Parameters, their
gradients and the optimizer's state live where the model was moved
(``Sequential.to_device``); weight files and checkpoints are always written
as NumPy arrays (``to_numpy``), so a model trained on a GPU loads on a CPU
and the other way round.

CuPy is optional (``pip install "nnexp[gpu]"``) and only imported by
``gpu_module()``.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["array_module", "gpu_module", "gpu_facts", "host_copy", "to_numpy", "GPU_INSTALL_HINT"]

GPU_INSTALL_HINT = ('pip install "nnexp[gpu]" (CuPy for CUDA 12; for CUDA 11: pip install cupy-cuda11x, '
                    'for another CUDA see CuPy\'s installation guide)')


def array_module(*arrays):
    """CuPy if any of ``arrays`` is a CuPy array, else NumPy."""
    cupy = sys.modules.get("cupy")   # a CuPy array exists only if CuPy was imported
    if cupy is not None and any(isinstance(a, cupy.ndarray) for a in arrays):
        return cupy
    return np


def to_numpy(a):
    """``a`` as a NumPy array: copied from the GPU if it lives there, as it is otherwise."""
    return np.asarray(a) if array_module(a) is np else a.get()


def host_copy(a) -> np.ndarray:
    """A NumPy copy of ``a``, wherever it lives (for weight files and checkpoints)."""
    return a.copy() if array_module(a) is np else a.get()


def gpu_module():
    """CuPy, once it has been checked that it imports and sees a GPU; ValueError
    with one line saying what is missing and how to install it otherwise."""
    try:
        import cupy
    except ImportError:
        raise ValueError(f"train.device is gpu, but CuPy is not installed: {GPU_INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:   # noqa: BLE001 -- CUDA's errors: no driver, a driver too old, no device
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"train.device is gpu, but CuPy {cupy.__version__} cannot use a GPU here ({first}); "
                         "check the NVIDIA driver, or that the CuPy package matches the CUDA version") from None
    if count < 1:
        raise ValueError("train.device is gpu, but CuPy sees no GPU (CUDA_VISIBLE_DEVICES?)")
    return cupy


def gpu_facts(cupy) -> dict:
    """What a run records about its GPU: name, memory, CuPy's and CUDA's versions."""
    device = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props.get("name", b"")
    version = cupy.cuda.runtime.runtimeGetVersion()
    return {"gpu": name.decode() if isinstance(name, bytes) else str(name),
            "gpu_memory_mib": round(props.get("totalGlobalMem", 0) / 2**20),
            "cupy": cupy.__version__, "cuda_runtime": f"{version // 1000}.{version % 1000 // 10}"}
