"""A CPU stand-in for CuPy that keeps CuPy's rules about host and device memory.

The GPU tests (test_gpu.py) run the reference network on CuPy where a GPU
is present; everywhere else they run on this module, installed as
``sys.modules["cupy"]``.  Its arrays compute with NumPy underneath, but they
are a type of their own and refuse what CuPy refuses:

- implicit conversion to NumPy (``np.asarray(a)``, ``np.array(a)``): TypeError,
  as CuPy's ``__array__`` raises; ``a.get()`` is the explicit copy to the host;
- NumPy arrays mixed into device computations: in an operator or ufunc, a
  module function other than ``asarray``/``array`` (the uploads), an index or
  the value of an item assignment: TypeError;
- reductions give 0-d device arrays, not NumPy scalars; ``float()``,
  ``int()``, ``bool()`` and ``.item()`` copy one number to the host.

So a code path that would reach the host by accident, or mix a host array
into a device one, fails here as it would on a GPU.  What it cannot show is
CUDA's own numerics and any function CuPy lacks.

``OPERATIONS`` counts the operations on device arrays by name (ufuncs,
functions, methods, indexing): each is at least one call into CuPy, whose
host-side cost per call bounds how fast a network of small layers can go
(benchmarks/device_ops.py).
"""

from __future__ import annotations

import collections
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__version__ = "stand-in"

UPLOADS = {"asarray", "array", "asanyarray", "ascontiguousarray"}
OPERATIONS: collections.Counter = collections.Counter()


def _is_host_array(value) -> bool:
    return isinstance(value, np.ndarray)


def _unwrap(value, where: str, allow_host: bool = False):
    """``value`` with every device array replaced by its NumPy storage; a NumPy
    array (unless ``allow_host``) is refused as CuPy refuses it."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, where, allow_host) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v, where, allow_host) for k, v in value.items()}
    if _is_host_array(value) and not allow_host:
        raise TypeError(f"Unsupported type {type(value)} in {where}: a NumPy array given to CuPy "
                        "(upload it with cupy.asarray first)")
    return value


def _has_array(index) -> bool:
    """Whether an index gathers (an array in it) rather than slices."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (ndarray, np.ndarray, list)) for i in items)


def _wrap(value):
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        return ndarray(np.asarray(value))   # CuPy's reductions return 0-d device arrays
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 -- CuPy's name
    """A device array: NumPy storage, CuPy's rules."""

    __array_priority__ = 100

    def __init__(self, storage: np.ndarray):
        self._a = storage

    # host <-> device
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self):
        return self._a.copy()

    def item(self):
        return self._a.item()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(row) if isinstance(row, np.ndarray) else _wrap(row) for row in self._a)

    def __repr__(self):
        return f"standin.{self._a!r}"

    # NumPy's functions called on a device array
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        OPERATIONS[ufunc.__name__] += 1
        args = _unwrap(inputs, f"numpy.{ufunc.__name__}")
        kwargs = _unwrap(kwargs, f"numpy.{ufunc.__name__}")
        return _wrap(getattr(ufunc, method)(*args, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        where = f"numpy.{func.__name__}"
        OPERATIONS[func.__name__] += 1
        return _wrap(func(*_unwrap(args, where), **_unwrap(kwargs, where)))

    # indexing
    def __getitem__(self, index):
        OPERATIONS["getitem" if not _has_array(index) else "take"] += 1
        return _wrap(self._a[_unwrap(index, "an index")])

    def __setitem__(self, index, value):
        if _is_host_array(value) and value.ndim > 0:
            raise TypeError("non-scalar numpy.ndarray cannot be assigned into a CuPy array "
                            "(upload it with cupy.asarray first)")
        OPERATIONS["setitem"] += 1
        self._a[_unwrap(index, "an index")] = _unwrap(value, "an item assignment")

    # attributes and methods: NumPy's, with device arrays in and out
    @property
    def T(self):  # noqa: N802
        return ndarray(self._a.T)

    def __getattr__(self, name):
        if name.startswith("__"):   # NumPy's array protocols (__array_interface__, ...) would hand over the storage
            raise AttributeError(name)
        value = getattr(self._a, name)
        if not callable(value):
            return _wrap(value) if isinstance(value, np.ndarray) else value

        def method(*args, **kwargs):
            where = f"ndarray.{name}"
            OPERATIONS[name] += 1
            return _wrap(value(*_unwrap(args, where), **_unwrap(kwargs, where)))
        return method


def _function(name: str, func):
    allow_host = name in UPLOADS

    def call(*args, **kwargs):
        where = f"cupy.{name}"
        OPERATIONS[name] += 1
        return _wrap(func(*_unwrap(args, where, allow_host), **_unwrap(kwargs, where, allow_host)))
    call.__name__ = name
    return call


def _namespace(source, name: str) -> types.SimpleNamespace:
    space = types.SimpleNamespace()
    for attr in dir(source):
        if not attr.startswith("_"):
            value = getattr(source, attr)
            setattr(space, attr, _function(attr, value) if callable(value) and not isinstance(value, type)
                    else value)
    return space


def __getattr__(name: str):
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):   # dtypes and constants are NumPy's in CuPy too
        return value
    return _function(name, value)


lib = types.SimpleNamespace(stride_tricks=_namespace(np.lib.stride_tricks, "lib.stride_tricks"))


class _Device:
    def __init__(self, device_id: int = 0):
        self.id = device_id


class _Runtime:
    @staticmethod
    def getDeviceCount():  # noqa: N802 -- CUDA's name
        return 1

    @staticmethod
    def getDeviceProperties(device_id):  # noqa: N802
        return {"name": b"CPU stand-in for CuPy", "totalGlobalMem": 0}

    @staticmethod
    def runtimeGetVersion():  # noqa: N802
        return 12040


cuda = types.SimpleNamespace(Device=_Device, runtime=_Runtime())
