"""Statistics for comparing runs: mean and 95% confidence interval over seeds,
and a one-factor ranking of how much of a metric's variance each parameter explains.

NumPy and pandas only: the Student-t quantile behind the confidence interval
is computed here from the regularized incomplete beta function.
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

# --------------------------------------------------------------------------- Student-t quantile

_EPS = 1e-16
_TINY = 1e-300
_LARGE_DF = 1e5  # from here on the Cornish-Fisher expansion around the normal is exact to double precision


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method.

    It converges quickly for x < (a + 1) / (a + b + 2); the caller uses the
    symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
    """
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    # The iterations needed grow like sqrt(max(a, b)); a, b <= _LARGE_DF / 2 here.
    for m in range(1, 20_000):
        # even step: d_2m = m (b - m) x / ((a + 2m - 1)(a + 2m))
        num = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # odd step: d_2m+1 = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            return h
    return h  # not reached for the arguments used here


def _log_gamma_half_ratio(a: float) -> float:
    """log Gamma(a + 1/2) - log Gamma(a) for a >= 50, without the cancellation of
    two lgamma values near a log a: Stirling's series for both, subtracted by hand.

    (z - 1/2) log z - z + log(2 pi)/2 + S(z), S(z) = 1/(12 z) - 1/(360 z^3) + ...,
    at z = a + 1/2 minus at z = a is  log(a)/2 + a log1p(1/(2a)) - 1/2 + S(a + 1/2) - S(a).
    """

    def series(z: float) -> float:
        return 1 / (12 * z) - 1 / (360 * z**3) + 1 / (1260 * z**5) - 1 / (1680 * z**7)

    return 0.5 * math.log(a) + (a * math.log1p(0.5 / a) - 0.5) + (series(a + 0.5) - series(a))


def _log_beta(a: float, b: float) -> float:
    """log B(a, b); for B(a, 1/2) with a large (the t distribution with many
    degrees of freedom) computed without lgamma's cancellation."""
    if b == 0.5 and a >= 50:
        return math.lgamma(0.5) - _log_gamma_half_ratio(a)
    if a == 0.5 and b >= 50:
        return math.lgamma(0.5) - _log_gamma_half_ratio(b)
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _betainc(a: float, b: float, x: float, y: float, log_x: float | None = None,
             log_y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b), with y = 1 - x given
    separately so that neither loses precision near 0 or 1; ``log_x`` and
    ``log_y`` may be given when they are known more precisely than log(x)
    (an x that underflows, or an x near 1)."""
    if log_x is None:
        if x <= 0.0:
            return 0.0
        log_x = math.log(x)
    if log_y is None:
        if y <= 0.0:
            return 1.0
        log_y = math.log(y)
    log_front = a * log_x + b * log_y - _log_beta(a, b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, y) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    if t > 1e150:  # t*t would overflow: x = df / t^2 to double precision (may underflow), 1 - x = 1
        log_x = math.log(df) - 2.0 * math.log(t)
        return 0.5 * _betainc(df / 2.0, 0.5, math.exp(log_x), 1.0, log_x)
    if t == 0.0:
        return 0.5
    t2 = t * t
    # log x = -log1p(t^2/df): precise when x is near 1, where (df/2) log x is large
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2),
                          log_x=-math.log1p(t2 / df), log_y=math.log(t2) - math.log(df + t2))


def _normal_lower_quantile(q: float) -> float:
    """z < 0 with P(Z < z) = q for 0 < q < 0.5, by bisection on erfc (exact to rounding)."""
    lo, hi = -40.0, 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) > q:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def _t_upper_quantile_large_df(q: float, df: float) -> float:
    """Cornish-Fisher expansion of the t quantile in powers of 1/df (Abramowitz &
    Stegun 26.7.5); the first omitted term is O(df^-5)."""
    z = -_normal_lower_quantile(q)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t distribution with ``df`` degrees of freedom.

    ``t_quantile(0.975, n - 1)`` is the multiplier of a 95% confidence
    interval from n samples (12.706 for n = 2, 2.262 for n = 10). ``df`` may
    be fractional or ``inf`` (the normal distribution). The tail probability
    is found by bisection on the t distribution's tail, written with the
    regularized incomplete beta function; accurate to about 1e-12 relative.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be a probability in (0, 1), got {p!r}")
    if isinstance(df, bool) or not isinstance(df, (int, float, np.integer, np.floating)) or not df > 0:
        raise ValueError(f"t_quantile: df must be > 0, got {df!r}")
    p, df = float(p), float(df)
    if p == 0.5:
        return 0.0
    sign, q = (1.0, 1.0 - p) if p > 0.5 else (-1.0, p)  # q: the tail probability, <= 0.5
    if math.isinf(df):
        return -sign * _normal_lower_quantile(q)
    if df >= _LARGE_DF:
        return sign * _t_upper_quantile_large_df(q, df)
    # Bracket the answer [lo, hi] by doubling, then bisect to the last bit.
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > q:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return sign * math.inf
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_upper_tail(mid, df) > q:
            lo = mid
        else:
            hi = mid
    return sign * 0.5 * (lo + hi)


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
