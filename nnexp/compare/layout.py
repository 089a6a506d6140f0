"""What a comparison chart shows, before anything is drawn: groups of repeats, labels, scales, curves.

The PNG plots (``plots.py``, matplotlib) and the interactive charts
(``charts.py``, plotly.js) draw the same things; this module decides them once:
which runs form a group (the runs that share every varied parameter, repeats
over seeds together), how a group is labelled and ranked, where a parameter's
values sit along an axis (numbers, log scale, categories), a group's mean
learning curve with its 95% band, and the best value so far of a sweep.
Nothing here imports a plotting library.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..values import is_missing
from .fmt import format_cell
from .significance import t_quantile
from .stats import group_summary

GOALS = ("maximize", "minimize")
SEED_COLUMN = "param.train.seed"
MAX_LABELLED_GROUPS = 8  # up to this many groups: every group its own coloured, labelled line
HIGHLIGHTED_GROUPS = 5  # beyond it: all runs thin and grey, the best few highlighted
MAX_BACKGROUND_CURVES = 400  # grey curves drawn at most (a random sample beyond)
MAX_RUNS_PER_BAND = 500  # runs averaged for one group's mean curve at most
MAX_CURVE_POINTS = 300  # epochs drawn per curve at most (evenly spaced)
MAX_SERIES = 6  # metric-vs-param: one line per combination of the other params up to this
MAX_HEATMAP_VALUES = 20
CATEGORY_WIDTH = 200  # a category is its label cut to this many characters (then shortened for display)


# ----------------------------------------------------------------- arguments and the frame


def check_arguments(runs, varied, metric, goal) -> None:
    """ValueError unless ``runs`` is a DataFrame holding ``metric`` and every ``varied`` column."""
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    if not isinstance(runs, pd.DataFrame):
        raise ValueError(f"runs must be a pandas DataFrame, got {type(runs).__name__}")
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} is not a column of the runs table")
    missing = [c for c in varied if c not in runs.columns]
    if missing:
        raise ValueError(f"varied column(s) not in the runs table: {', '.join(missing)}")


def clean_frame(runs: pd.DataFrame, varied: list[str], metric: str) -> pd.DataFrame:
    """A copy with a fresh index, the metric as float, and varied values hashable.

    Unhashable param values (lists, dicts) become their repr so that grouping
    and statistics can treat them like any other category.
    """
    frame = runs.reset_index(drop=True).copy()
    frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype(float)
    for column in varied:
        values = frame[column]
        if values.dtype == object and values.map(_unhashable).any():
            frame[column] = values.map(lambda v: repr(v) if _unhashable(v) else v).astype(object)
    if "id" not in frame.columns:
        frame["id"] = [str(i) for i in range(len(frame))]
    return frame


# ----------------------------------------------------------------- values and axes


def use_log_axis(values) -> bool:
    """True when the values are numbers, all positive, spanning a decade or more
    (learning rates 0.0005 .. 0.008 read better on a log axis; batch sizes
    64 .. 512 do not).

    Missing and infinite values are ignored; strings, booleans or fewer than
    two finite values give False (max/min >= 10 decides).
    """
    x = as_numeric(values)
    if x is None:
        return False
    x = x[np.isfinite(x)]
    return bool(x.size >= 2 and x.min() > 0 and x.max() / x.min() >= 10)


def short_names(columns: list[str]) -> dict[str, str]:
    """Display names for param columns: the last dotted part ("param.optimizer.lr" -> "lr"),
    the full dotted key where the last parts of two columns collide."""
    last = {c: c.removeprefix("param.").rsplit(".", 1)[-1] for c in columns}
    counts = pd.Series(list(last.values()), dtype=object).value_counts()
    return {c: (last[c] if counts[last[c]] == 1 else c.removeprefix("param.")) for c in columns}


def metric_name(metric: str) -> str:
    return metric.removeprefix("metric.")


def is_fraction(metric: str, values) -> bool:
    """Accuracy-like metric stored as fractions: drawn with a percent axis."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return "accuracy" in metric and x.size > 0 and x.min() >= 0 and x.max() <= 1


def _unhashable(value) -> bool:
    return isinstance(value, (list, tuple, dict, set, np.ndarray))


def as_numeric(values) -> np.ndarray | None:
    """Values as a float array (NaN where missing), or None if any is not a number.

    Booleans and strings (even "0.1") are not numbers: they are categories.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_bool_dtype(series.dtype):
        return None
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=float, na_value=np.nan)
    out = np.full(len(series), np.nan)
    for i, value in enumerate(series):
        if is_missing(value):
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return None
        out[i] = float(value)
    return out


def value_label(value, width: int = 60) -> str:
    """How a param value reads on an axis or in a legend ('-' when missing)."""
    text = format_cell("", None if is_missing(value) else value)
    return text if len(text) <= width else text[: width - 1] + "…"


def abbreviate(labels: list[str], width: int) -> list[str]:
    """Shorten labels to `width` characters so that they still differ.

    Layer lists share long beginnings ("flatten | dense(..."); a common prefix
    is cut back to a word boundary and replaced by '…' before cutting the ends.
    """
    if all(len(label) <= width for label in labels):
        return list(labels)
    distinct = list(dict.fromkeys(labels))
    prefix = os.path.commonprefix(distinct) if len(distinct) > 1 else ""
    cut = max(prefix.rfind(" "), prefix.rfind("|"), prefix.rfind(","))
    if cut >= 8:
        labels = ["…" + label[cut + 1:].lstrip() for label in labels]
    return [label if len(label) <= width else label[: width - 1] + "…" for label in labels]


def _hashable(value):
    """A dictionary key for a param value: one shared key for every kind of missing."""
    if is_missing(value):
        return ("<missing>",)
    if isinstance(value, np.generic):
        return value.item()
    return repr(value) if _unhashable(value) else value


@dataclass
class Scale:
    """How the values of one parameter are placed along a plot axis.

    numeric: positions are the values themselves (log: drawn on a log axis);
    categorical: positions are 0..k-1 in the order of `categories` (labels),
    missing values being the category '-' at the end.
    """

    numeric: bool
    log: bool
    categories: list[str]

    @classmethod
    def of(cls, values: pd.Series) -> Scale | None:
        """The scale for these values, None when none of them can be placed."""
        x = as_numeric(values)
        if x is not None:
            if not np.isfinite(x).any():
                return None
            return cls(numeric=True, log=use_log_axis(x), categories=[])
        distinct = {}
        for value in values:
            distinct.setdefault(value_label(value, CATEGORY_WIDTH), value)
        order = sorted(distinct.items(), key=lambda item: _category_key(item[1], item[0]))
        return cls(numeric=False, log=False, categories=[label for label, _ in order])

    def positions(self, values: pd.Series) -> np.ndarray:
        """(N,) float positions; NaN for a missing numeric value."""
        if self.numeric:
            x = as_numeric(values)
            return np.where(np.isfinite(x), x, np.nan)
        index = {label: i for i, label in enumerate(self.categories)}
        return np.array([index.get(value_label(v, CATEGORY_WIDTH), np.nan) for v in values], dtype=float)


def _category_key(value, label: str):
    """Sort categories: numbers by value, then text, missing last."""
    if is_missing(value):
        return (2, 0.0, label)
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return (0, float(value), label)
    return (1, 0.0, label)


def grid_categories(values: pd.Series) -> tuple[list[str], np.ndarray] | None:
    """Rows or columns of a grid: (labels in order, (G,) index of each value).

    Every distinct number gets its own row, in numeric order; missing values
    share a last row labelled '-'. None when nothing can be placed.
    """
    scale = Scale.of(values)
    if scale is None:
        return None
    if not scale.numeric:
        return scale.categories, scale.positions(values)
    x = scale.positions(values)
    distinct = np.unique(x[np.isfinite(x)])
    labels = [value_label(float(v)) for v in distinct]
    index = np.searchsorted(distinct, np.nan_to_num(x, nan=np.inf)).astype(float)
    if np.isnan(x).any():
        labels.append("-")  # searchsorted put the missing ones at len(distinct): that row
    return labels, index


def unit_positions(values: pd.Series, metric: str | None = None):
    """Positions in [0, 1] for one axis of parallel coordinates, its tick
    (position, label) list, and whether it is log.

    Numbers are scaled min-max (in log10 where they span decades), categories
    by their index (labels shortened to 34 characters, at most about 12 of
    them). Missing values go to -0.1, labelled '-'. None when nothing can be placed.
    """
    scale = Scale.of(values)
    if scale is None:
        return None
    raw = scale.positions(values)
    ticks = []
    if scale.numeric:
        shown = np.log10(raw) if scale.log else raw
        finite = shown[np.isfinite(shown)]
        low, high = finite.min(), finite.max()
        span = high - low
        pos = (shown - low) / span if span > 0 else np.where(np.isfinite(shown), 0.5, np.nan)
        distinct = np.unique(finite)
        marks = distinct if distinct.size <= 6 else np.linspace(low, high, 5)
        for mark in marks:
            value = 10 ** mark if scale.log else mark
            label = format_cell(metric, float(value)) if metric else value_label(float(value), 18)
            ticks.append(((mark - low) / span if span > 0 else 0.5, label))
    else:
        k = len(scale.categories)
        pos = raw / (k - 1) if k > 1 else np.full(raw.size, 0.5)
        step = max(1, math.ceil(k / 12))
        labels = abbreviate(scale.categories, 34)
        ticks = [((i / (k - 1) if k > 1 else 0.5), label) for i, label in enumerate(labels) if i % step == 0]
    missing = ~np.isfinite(pos)
    if missing.any():
        pos = np.where(missing, -0.1, pos)
        ticks.append((-0.1, "-"))
    return pos, ticks, scale.log


# ----------------------------------------------------------------- groups of repeats


class Groups:
    """Runs pooled by the values of the varied params (repeats over seeds together).

    Attributes:
        run_group: (N,) int group of each run of `frame`, numbered by first appearance.
        table: one row per group: the varied params (first run's values), `mean`,
            `ci95` (half-width, NaN for n < 2), `n` (runs with a metric) and `runs`.
        ranked: group numbers, best mean first, groups without a metric last.

    Table positions equal group numbers (0..G-1).
    """

    def __init__(self, frame: pd.DataFrame, varied: list[str], metric: str, goal: str, names: dict[str, str]):
        self.frame, self.varied, self.metric, self.goal, self.names = frame, varied, metric, goal, names
        codes = [self.codes(frame[c]) for c in varied]
        keys: dict[tuple, int] = {}
        self.run_group = np.array([keys.setdefault(key, len(keys)) for key in zip(*codes)]
                                  if varied else np.zeros(len(frame)), dtype=np.int64)
        pooled = frame[[metric]].assign(_group=self.run_group)
        summary = group_summary(pooled, by=["_group"], metrics=[metric]).set_index("_group")
        # Groups are numbered by first appearance, so group g's first run is the g-th first run.
        first_run = pd.Series(np.arange(len(frame))).groupby(self.run_group).min()
        table = frame.iloc[first_run.to_numpy()][varied].set_axis(first_run.index.to_numpy())
        table["mean"] = summary[metric].reindex(table.index).astype(float)
        table["ci95"] = summary[f"{metric} ci95"].reindex(table.index).astype(float)
        table["n"] = summary[f"{metric} n"].reindex(table.index).fillna(0).astype(int)
        table["runs"] = np.bincount(self.run_group, minlength=len(table))[: len(table)]
        self.table = table
        self._short: dict[str, list[str]] = {}
        self._hovers: list[str] | None = None
        mean = table["mean"].to_numpy()
        sign = -1.0 if goal == "maximize" else 1.0
        order = np.lexsort((np.arange(len(mean)), np.where(np.isfinite(mean), sign * mean, np.inf)))
        self.ranked = table.index.to_numpy()[order]

    @staticmethod
    def codes(values: pd.Series) -> list[int]:
        """A small int per distinct value, in order of first appearance (missing values share one)."""
        seen: dict = {}
        return [seen.setdefault(_hashable(v), len(seen)) for v in values]

    def label(self, group: int) -> str:
        """'lr=0.001, layers=...' for a group; 'all runs' when nothing varies."""
        if not self.varied:
            return "all runs"
        text = ", ".join(f"{self.names[c]}={self._short_values(c)[group]}" for c in self.varied)
        return text if len(text) <= 120 else text[:119] + "…"

    def _short_values(self, column: str) -> list[str]:
        """Each group's value of `column`, abbreviated so that groups stay distinguishable."""
        if column not in self._short:
            self._short[column] = abbreviate([value_label(v, 200) for v in self.table[column]], 45)
        return self._short[column]

    def hover_texts(self) -> list[str]:
        """Each group's hover text (computed once): its parameters, the metric's mean, CI and n, and
        the run if it is one."""
        if self._hovers is None:
            mean, ci95, n, runs = (self.table[c].to_numpy() for c in ("mean", "ci95", "n", "runs"))
            first = np.unique(self.run_group, return_index=True)[1]  # group g's first run
            ids = self.frame["id"].to_numpy()
            name = metric_name(self.metric)
            texts = []
            for g in range(len(self.table)):
                score = format_cell(self.metric, float(mean[g])) if np.isfinite(mean[g]) else "-"
                ci = f" ± {format_cell(self.metric + ' ci95', float(ci95[g]))}" if np.isfinite(ci95[g]) else ""
                lines = [self.label(g), f"{name} {score}{ci} (n={int(n[g])})"]
                if runs[g] == 1:
                    lines.append(f"run {ids[first[g]]}")
                texts.append("\n".join(lines))
            self._hovers = texts
        return self._hovers

    @property
    def any_repeats(self) -> bool:
        return bool((self.table["n"] >= 2).any())

    def members(self, group: int) -> np.ndarray:
        """Row positions of the runs in `group`."""
        return np.flatnonzero(self.run_group == group)

    def curve_label(self, group: int, rank: int, few: bool) -> str:
        """A learning curve's legend: the group, its score and n; its rank when only the best are shown."""
        row = self.table.loc[group]
        label = self.label(group)
        if label == "all runs" and row["runs"] == 1:
            label = str(self.frame["id"].iloc[self.members(group)[0]])
        score = format_cell(self.metric, float(row["mean"])) if np.isfinite(row["mean"]) else "-"
        repeats = f", n={int(row['n'])}" if row["n"] >= 2 else ""
        prefix = "" if few else f"#{rank + 1} "
        return f"{prefix}{label}  ({metric_name(self.metric)} {score}{repeats})"

    def curves_title(self, few: bool, sampled: bool) -> str:
        """The learning curves' title: how many runs, and what the lines and bands are."""
        parts = [f"{len(self.frame)} run{'s' if len(self.frame) != 1 else ''}"]
        if self.any_repeats:
            parts.append("mean over seeds, band: 95% CI")
        if not few:
            parts.append(f"grey: all runs{' (a sample)' if sampled else ''}, "
                         f"coloured: best {min(HIGHLIGHTED_GROUPS, len(self.table))}")
        elif sampled:
            parts.append(f"means over at most {MAX_RUNS_PER_BAND} runs per group")
        return "Learning curves  —  " + ", ".join(parts)


def series_of(table: pd.DataFrame, others: list[str]) -> np.ndarray:
    """(G,) int: which combination of the other params each group has."""
    if not others:
        return np.zeros(len(table), dtype=np.int64)
    keys: dict = {}
    codes = zip(*(Groups.codes(table[c]) for c in others))
    return np.array([keys.setdefault(k, len(keys)) for k in codes], dtype=np.int64)


# ----------------------------------------------------------------- learning curves


def _floats(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


def curve_points(curve, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epoch, value) of one run's column, finite points only, at most MAX_CURVE_POINTS.

    ``curve`` is the run's metrics.csv as a DataFrame, or a mapping of column
    name to values (see ``nnexp.charts.comparison.read_curves``).
    """
    if not isinstance(curve, (pd.DataFrame, dict)) or column not in curve:
        return None
    value = _floats(curve[column])
    if value.size == 0:
        return None
    epoch = _floats(curve["epoch"]) if "epoch" in curve else np.arange(1.0, value.size + 1)
    if epoch.size != value.size:
        return None
    keep = np.isfinite(epoch) & np.isfinite(value)
    epoch, value = epoch[keep], value[keep]
    if epoch.size == 0:
        return None
    if epoch.size > MAX_CURVE_POINTS:
        index = np.unique(np.linspace(0, epoch.size - 1, MAX_CURVE_POINTS).round().astype(int))
        epoch, value = epoch[index], value[index]
    return epoch, value


def mean_band(pieces: list[tuple[np.ndarray, np.ndarray]]):
    """Mean curve over runs, aligned by epoch, with a 95% t-interval where n >= 2.

    Returns (epoch, mean, low, high, n_max); low/high are NaN at epochs with one run.
    """
    epoch = np.concatenate([e for e, _ in pieces])
    value = np.concatenate([v for _, v in pieces])
    grid, where = np.unique(epoch, return_inverse=True)
    n = np.bincount(where, minlength=grid.size).astype(float)
    mean = np.bincount(where, weights=value, minlength=grid.size) / n
    squares = np.bincount(where, weights=(value - mean[where]) ** 2, minlength=grid.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(squares / (n - 1))
        half = np.full(grid.size, np.nan)
        for count in np.unique(n[n >= 2]):
            at = n == count
            half[at] = t_quantile(0.975, count - 1) * std[at] / math.sqrt(count)
    return grid, mean, mean - half, mean + half, int(n.max())


def panel_column(curves: dict, ids, kind: str) -> str | None:
    """'val_<kind>' if any run has it, else 'train_<kind>', else None."""
    for column in (f"val_{kind}", f"train_{kind}"):
        for run_id in ids:
            if curve_points(curves.get(run_id), column) is not None:
                return column
    return None


def sample(indices: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most `limit` of `indices`, a fixed random sample in the original order."""
    if indices.size <= limit:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))


# ----------------------------------------------------------------- sweeps


def running_best(values, pruned, goal: str) -> np.ndarray:
    """(N,) best value among the first i+1 trials, NaN until the first counted one.

    Args:
        values: (N,) metric per trial, in trial order (NaN: no value).
        pruned: (N,) bool; pruned trials stopped early and do not count.
        goal: "maximize" or "minimize".
    """
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    counted = pd.Series(np.where(np.asarray(pruned, dtype=bool), np.nan, np.asarray(values, dtype=float)))
    return (counted.cummax() if goal == "maximize" else counted.cummin()).ffill().to_numpy()


def trial_order(frame: pd.DataFrame, metric: str):
    """A sweep's runs in trial order: (trial numbers, metric values, pruned flags, row positions).

    Runs without a trial number go after the numbered ones, in their order.
    """
    y = frame[metric].to_numpy(dtype=float)
    trial = (pd.to_numeric(frame["trial"], errors="coerce").to_numpy(dtype=float)
             if "trial" in frame.columns else np.full(len(frame), np.nan))
    if not np.isfinite(trial).all():
        fallback = np.nanmax(trial, initial=-1) + 1 + np.arange(len(frame))
        trial = np.where(np.isfinite(trial), trial, fallback)
    status = frame["status"].astype(str).to_numpy() if "status" in frame.columns else np.full(len(frame), "")
    pruned = status == "pruned"
    order = np.argsort(trial, kind="stable")
    return trial[order], y[order], pruned[order], order


@dataclass
class ParamSeries:
    """What a metric-against-one-parameter chart draws, whatever draws it.

    x, y, error: per group (the param's position on its scale, the mean, the
    95% half-width, 0 where unknown); keep: groups with both; series: each
    group's setting of the other varied params; lines: whether there are few
    enough of those to draw one line each; best: the best group.
    """

    scale: "Scale"
    x: np.ndarray
    y: np.ndarray
    error: np.ndarray
    keep: np.ndarray
    others: list
    series: np.ndarray
    n_series: int
    lines: bool
    best: int

    def line_members(self):
        """(k, key, group positions sorted by x) of each line, in order of first appearance."""
        keys = list(dict.fromkeys(self.series[self.keep]))
        for k, key in enumerate(keys):
            at = np.flatnonzero(self.keep & (self.series == key))
            yield k, key, at[np.argsort(self.x[at], kind="stable")]

    def firsts(self) -> list[int]:
        """The first group of each line (whose other params label the line)."""
        return [int(at[0]) for _, _, at in self.line_members()]

    def shift(self, k: int) -> float:
        """Categorical x: line k's sideways offset, so that the lines' bars do not overlap."""
        return 0.0 if self.scale.numeric or self.n_series == 1 else (k - (self.n_series - 1) / 2) * 0.6 / self.n_series


def param_series(groups: "Groups", column: str) -> ParamSeries | None:
    """The groups' mean metric against ``column``; None when the column has no scale or no point shows."""
    table = groups.table
    scale = Scale.of(table[column])
    if scale is None:
        return None
    x = scale.positions(table[column])
    y = table["mean"].to_numpy()
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return None
    others = [c for c in groups.varied if c != column]
    series = series_of(table, others)
    n_series = len(set(series[keep]))
    return ParamSeries(scale, x, y, np.nan_to_num(table["ci95"].to_numpy(), nan=0.0), keep, others, series,
                       n_series, n_series <= MAX_SERIES, int(groups.ranked[0]))


def parallel_axes(groups: "Groups"):
    """(axis titles, points (G, P+1) in [0, 1], tick (positions, labels) per axis, mean) of a
    parallel-coordinates chart: one axis per varied param that has a scale, then the
    metric; None with fewer than three varied params, two axes or no metric value."""
    if len(groups.varied) < 3:
        return None
    table = groups.table
    columns, coords, ticks = [], [], []
    for column in groups.varied:
        placed = unit_positions(table[column])
        if placed is None:
            continue
        columns.append(groups.names[column] + (" (log)" if placed[2] else ""))
        coords.append(placed[0])
        ticks.append(placed[1])
    mean = table["mean"].to_numpy()
    if len(columns) < 2 or not np.isfinite(mean).any():
        return None
    metric_pos, metric_ticks, _ = unit_positions(pd.Series(mean, dtype=float), metric=groups.metric)
    columns.append(metric_name(groups.metric))
    coords.append(metric_pos)
    ticks.append(metric_ticks)
    return columns, np.column_stack(coords), ticks, mean
