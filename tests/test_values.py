"""What counts as a number and as missing, the same everywhere (tables, filters, records, reports)."""

from __future__ import annotations

import decimal
import fractions
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nnexp.values import is_missing, is_number, plain


@pytest.mark.parametrize("value", [0, -3, 2.5, math.nan, math.inf, np.float32(1.5), np.int64(7), np.float64("nan"),
                                   fractions.Fraction(1, 3)])
def test_numbers(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), "1", "nan", None, [1], (1,), {"a": 1},
                                   np.array([1.0]), decimal.Decimal("1.5"), 1 + 2j])
def test_not_numbers(value):
    assert not is_number(value)


@pytest.mark.parametrize("value", [None, math.nan, float("nan"), np.float32("nan"), np.float64("nan"),
                                   pd.NA, pd.NaT, np.datetime64("NaT"), decimal.Decimal("NaN")])
def test_missing(value):
    assert is_missing(value)


@pytest.mark.parametrize("value", [0, 0.0, "", "nan", "None", [], [None], (math.nan,), {}, False, math.inf,
                                   np.array([math.nan]), np.array([]), np.datetime64("2024-01-01"),
                                   pd.Timestamp("2024-01-01")])
def test_present(value):
    """A string or a container is a value, even an empty one or one of missing values."""
    assert not is_missing(value)


def test_plain_unwraps_numpy_and_leaves_the_rest():
    assert plain(np.float32(0.5)) == 0.5 and type(plain(np.float32(0.5))) is float
    assert type(plain(np.int64(3))) is int and type(plain(np.bool_(True))) is bool
    assert plain(np.arange(3)) == [0, 1, 2]
    for value in (1, "x", None, [np.int64(1)], {"a": 1}):
        assert plain(value) is value


def test_the_predicates_load_neither_numpy_nor_pandas():
    code = ("import sys; from nnexp.values import is_missing, is_number, plain; "
            "assert is_missing(float('nan')) and is_number(3) and plain(2) == 2; "
            "print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_integers():
    from nnexp.values import is_integer

    assert all(is_integer(v) for v in (0, -3, np.int64(7), np.uint8(1)))
    assert not any(is_integer(v) for v in (True, np.bool_(False), 2.0, "3", None, math.nan))
