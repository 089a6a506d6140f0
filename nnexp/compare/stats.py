"""Statistics over pandas frames of runs, for the plots: mean and 95% confidence
interval over seeds, and a one-factor ranking of how much of a metric's
variance each parameter explains. The t quantile and the tests between
groups are in ``significance.py``.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..values import is_missing
from .significance import t_quantile

# --------------------------------------------------------------------------- summaries over seeds


def summarize(values: Iterable) -> dict:
    """Mean, sample standard deviation (ddof=1), count and 95% confidence
    interval of the mean of ``values``; NaN and None are dropped.

    ``ci95`` is the half-width t(0.975, n-1) * std / sqrt(n), and
    ``ci_low``/``ci_high`` = mean -/+ ci95. With n < 2, std and the interval
    are NaN (one run says nothing about the spread); with n = 0 the mean is too.
    """
    try:
        x = np.asarray(list(values), dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"summarize: values must be numbers, got {values!r}") from None
    x = x[~np.isnan(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    ci95 = t_quantile(0.975, n - 1) * std / math.sqrt(n) if n >= 2 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci95": ci95, "ci_low": mean - ci95, "ci_high": mean + ci95}


class _MissingKey:
    """The group key of a missing (None / NaN) value: one group of its own."""

    def __repr__(self) -> str:
        return "MISSING"


_MISSING_KEY = _MissingKey()


def _group_key(value):
    """A hashable key for ``value``: missing values share one key; lists, dicts
    and arrays become their JSON text (so they group instead of crashing)."""
    if is_missing(value):
        return _MISSING_KEY
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict, set)):
        return ("json", json.dumps(value, sort_keys=True, default=str))
    if isinstance(value, bool):
        return ("bool", value)  # True must not group with 1, nor False with 0
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return value


def _check_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    for column in columns:
        if column not in df.columns:
            close = difflib.get_close_matches(str(column), [str(c) for c in df.columns], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {what} column {column!r}{hint}")


def _groups(df: pd.DataFrame, by: list[str]) -> list[tuple[tuple, list[int]]]:
    """[(first row's values of ``by``, [row positions])] in order of first appearance."""
    groups: dict[tuple, tuple[tuple, list[int]]] = {}
    columns = [df[c].tolist() for c in by]
    for i in range(len(df)):
        values = tuple(col[i] for col in columns)
        key = tuple(_group_key(v) for v in values)
        if key not in groups:
            groups[key] = (values, [])
        groups[key][1].append(i)
    return list(groups.values())


def group_summary(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per distinct combination of the ``by`` columns, in order of first appearance.

    Columns: the ``by`` values (a missing key as None, or NaN where pandas
    stores the column as numbers or text), ``runs`` (rows in the
    group), then for each metric ``m``: ``m`` (mean over the group),
    ``"m std"``, ``"m ci95"`` (half-width of the 95% interval) and ``"m n"``
    (non-missing values). Grouping by the swept params, leaving out the seed,
    turns repeats over seeds into one line with an error bar. Missing keys
    form one group of their own; unhashable values (lists) group by content.
    """
    by, metrics = list(by), list(metrics)
    _check_columns(df, by, "group-by")
    _check_columns(df, metrics, "metric")
    rows = []
    numeric = {m: pd.to_numeric(df[m], errors="coerce").to_numpy(dtype=float) for m in metrics}
    for values, positions in _groups(df, by):
        row = {c: (None if is_missing(v) else v) for c, v in zip(by, values)}
        row["runs"] = len(positions)
        for m in metrics:
            s = summarize(numeric[m][positions])
            row[m], row[f"{m} std"], row[f"{m} ci95"], row[f"{m} n"] = s["mean"], s["std"], s["ci95"], s["n"]
        rows.append(row)
    columns = by + ["runs"] + [f"{m}{suffix}" for m in metrics for suffix in ("", " std", " ci95", " n")]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- parameter importance


def _as_number(value) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _levels(values: list, bins: int) -> list:
    """The group of each value: the value itself, or for a numeric parameter
    with more than ``bins`` distinct values, its quantile bin (0 .. bins-1).
    Missing values are a level of their own."""
    present = [v for v in values if not is_missing(v)]
    numbers = [_as_number(v) for v in present]
    distinct = {_group_key(v) for v in present}
    if not present or any(x is None for x in numbers) or len(distinct) <= bins:
        return [_group_key(v) for v in values]
    x = np.array(numbers)
    finite = x[np.isfinite(x)]
    # Learning rates and weight decays are swept on a log scale; bin them on it too.
    # Which samples share a quantile bin depends only on their order, which log10
    # keeps, so this matters only for where the interpolated edges lie (geometric
    # rather than arithmetic means of neighbouring samples).
    log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() >= 100.0
    transform = np.log10 if log else (lambda a: a)
    edges = np.quantile(transform(finite), np.linspace(0.0, 1.0, bins + 1))[1:-1] if finite.size else np.array([])
    levels = []
    for v in values:
        number = _as_number(v) if not is_missing(v) else None
        if number is None:
            levels.append(_MISSING_KEY)
        elif not math.isfinite(number):
            levels.append(("nonfinite", number))
        else:
            levels.append(("bin", int(np.searchsorted(edges, transform(np.float64(number)), side="right"))))
    return levels


def _eta_squared(y: np.ndarray, levels: list) -> float:
    """SS_between / SS_total of ``y`` grouped by ``levels``."""
    total = float(((y - y.mean()) ** 2).sum())
    by_level: dict = {}
    for value, level in zip(y, levels):
        by_level.setdefault(level, []).append(value)
    if len(by_level) < 2:
        return 0.0
    between = sum(len(g) * (float(np.mean(g)) - float(y.mean())) ** 2 for g in by_level.values())
    return min(1.0, max(0.0, between / total))


def importance(df: pd.DataFrame, params: list[str], metric: str, bins: int = 5) -> pd.Series:
    """How much of the variance of ``metric`` each parameter explains on its own,
    as eta squared = SS_between / SS_total, sorted from most to least.

    For each parameter alone, the runs are grouped by its value and eta
    squared is the share of the metric's total sum of squares that lies
    between the group means (1: the parameter determines the metric; 0: the
    group means are equal). Numeric parameters with more than ``bins``
    distinct values are grouped into ``bins`` quantile bins (on a log10 scale
    when all positive and spanning at least two decades); a missing value is
    a group of its own. Rows without a finite metric value are dropped. A
    parameter with a single value scores 0, and so does every parameter when
    there is no variance to explain (no rows, or all metric values equal).

    This is a one-factor-at-a-time measure: it ignores interactions and
    correlations between parameters (in a random sweep two parameters can
    share credit), and with few runs per group it is biased upwards (with one
    run per group it is 1). Read it as a ranking, not a decomposition.
    Returns a Series indexed by parameter, named ``metric``.
    """
    params = list(params)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"importance: bins must be an integer >= 2, got {bins!r}")
    _check_columns(df, params, "parameter")
    _check_columns(df, [metric], "metric")
    y_all = pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(y_all)
    y = y_all[keep]
    scores = {}
    for p in params:
        values = [v for v, k in zip(df[p].tolist(), keep) if k]
        if y.size == 0 or np.ptp(y) == 0.0:  # exactly: a float mean of equal values can be off by an ulp
            scores[p] = 0.0
        else:
            scores[p] = _eta_squared(y, _levels(values, bins))
    result = pd.Series(scores, dtype=float, name=metric)
    result.index.name = "param"
    return result.sort_values(ascending=False, kind="stable")
