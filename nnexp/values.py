"""What counts as a number and what counts as missing, everywhere nnexp reads
values it did not make (summaries, configs, tables, filters).

Both work without importing NumPy or pandas: a NumPy or pandas value can
only exist once its library is loaded, so they look the library up among
the loaded modules instead of loading it (``nnexp runs`` stays light).
"""

from __future__ import annotations

import numbers
import sys

_CONTAINERS = (str, bytes, list, tuple, dict, set, frozenset)
_PLAIN = {str, int, float, bool, type(None), list, dict}


def is_number(value) -> bool:
    """A real number (Python's or NumPy's, NaN and inf included), not a bool: True is not 1 in a table."""
    kind = type(value)
    if kind is float or kind is int:  # the common case, without the slower abstract-class check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_missing(value) -> bool:
    """No value: None, NaN (of any float type), pandas' NA and NaT, NumPy's NaT.

    A string or a container is a value, even an empty one.
    """
    if value is None:
        return True
    kind = type(value)
    if kind is float:
        return value != value
    if kind is str or kind is int or kind is bool:
        return False
    if isinstance(value, _CONTAINERS):
        return False
    if isinstance(value, numbers.Number):
        return bool(value != value)  # NaN is the one number that differs from itself
    pandas = sys.modules.get("pandas")
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return True
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.datetime64, numpy.timedelta64)):
        return bool(numpy.isnat(value))
    return False


def plain(value):
    """NumPy scalars as Python scalars and NumPy arrays as lists; anything else as it is."""
    if type(value) in _PLAIN:
        return value
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):
            return value.item()
        if isinstance(value, numpy.ndarray):
            return value.tolist()
    return value
