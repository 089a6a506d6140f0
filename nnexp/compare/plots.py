"""Plots that compare runs: curves overlaid, the metric against each parameter, sweeps.

`comparison_plots` writes every plot that the selected runs support into one
folder and returns (title, path) pairs in display order, ready for the HTML
report. Runs that repeat a configuration over seeds are pooled into one group
(mean and 95% confidence interval); a "group" below always means the runs that
share the values of every varied parameter.

Like `nnexp.tracking.plots`, drawing uses matplotlib's Agg backend and closes
every figure, and it is built to stay quick and legible with thousands of runs:
curves are subsampled, many lines go into one LineCollection, and only the best
few groups are labelled.
"""

from __future__ import annotations

import logging
import math
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator, NullLocator, PercentFormatter

from ..figure import float_column, saved_figure, widen_short_axes
from ..values import is_missing
from .best_so_far import running_best
from .fmt import format_cell
from .pareto import pareto_front
from .significance import t_quantile
from .stats import group_summary, importance, summarize

logger = logging.getLogger(__name__)

GOALS = ("maximize", "minimize")
SEED_COLUMN = "param.train.seed"
MAX_LABELLED_GROUPS = 8  # up to this many groups: every group its own coloured, labelled line
HIGHLIGHTED_GROUPS = 5  # beyond it: all runs thin and grey, the best few highlighted
MAX_BACKGROUND_CURVES = 400  # grey curves drawn at most (a random sample beyond)
MAX_RUNS_PER_BAND = 500  # runs averaged for one group's mean curve at most
MAX_CURVE_POINTS = 300  # epochs drawn per curve at most (evenly spaced)
MAX_SERIES = 6  # metric-vs-param: one line per combination of the other params up to this
MAX_HEATMAP_VALUES = 20
MAX_CATEGORY_TICKS = 30
CATEGORY_WIDTH = 200  # a category is its label cut to this many characters (then shortened for display)
BEST_COLOR = "tab:green"
PRUNED_COLOR = "0.55"


# ----------------------------------------------------------------- entry point


def comparison_plots(runs: pd.DataFrame, curves: dict[str, pd.DataFrame], varied: list[str],
                     metric: str, goal: str, out_dir, sweep: bool = False,
                     objectives: list[tuple[str, str]] = ()) -> list[tuple[str, Path]]:
    """Write the comparison plots for a set of runs; return [(title, png path)] in display order.

    Args:
        runs: the pandas view of runs (one row per run; columns id, trial,
            status, param.*, metric.*), already filtered and sorted.
        curves: run id -> that run's metrics.csv as a DataFrame (epoch,
            val_accuracy, val_loss, ...); runs without an entry have no curve.
        varied: the param.* columns that differ between the runs, the seed
            (param.train.seed) excluded: runs equal in all of them are repeats.
        metric: the metric.* column to compare, e.g. "metric.val_accuracy".
        goal: "maximize" or "minimize" (which end of `metric` is better).
        out_dir: folder for the PNGs (created if needed).
        sweep: also draw best-so-far and parameter importance (needs `trial`).
        objectives: [(metric column, goal)] of a multi-objective comparison:
            also draw the runs on the first two and their Pareto front.

    Returns:
        Only the plots actually written. A plot the data cannot support (no
        curves, a single value, ...) is skipped; one that fails to draw is
        skipped with a logged warning, never raised, so odd data costs a plot
        and not the report.

    Raises:
        ValueError: goal, metric or a varied column is not what it should be.
    """
    _check_arguments(runs, varied, metric, goal)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(runs) == 0:
        return []
    frame = _clean_frame(runs, varied, metric)
    names = short_names(varied)
    groups = _Groups(frame, varied, metric, goal, names)

    planned = [("Learning curves", "learning_curves.png",
                lambda path: _plot_learning_curves(frame, curves or {}, groups, path))]
    for column in varied:
        planned.append((f"{_metric_name(metric)} vs {names[column]}", f"metric_vs_{_file_part(column)}.png",
                        lambda path, column=column: _plot_metric_vs_param(groups, column, path)))
    planned.append((f"Heatmap of {_metric_name(metric)}", "heatmap.png",
                    lambda path: _plot_heatmap(groups, path)))
    planned.append(("Parallel coordinates", "parallel_coordinates.png",
                    lambda path: _plot_parallel_coordinates(groups, path)))
    if sweep:
        planned.append(("Best so far", "best_so_far.png",
                        lambda path: _plot_best_so_far(frame, metric, goal, path)))
        planned.append(("Parameter importance", "importance.png",
                        lambda path: _plot_importance(frame, varied, names, metric, path)))
    if len(objectives) >= 2:
        planned.append(("Pareto front", "pareto_front.png",
                        lambda path: _plot_pareto(frame, list(objectives), path)))

    written = []
    for title, filename, draw in planned:
        path = out_dir / filename
        try:
            drawn = draw(path)
        except Exception as exc:  # noqa: BLE001 -- one odd plot must not cost the others
            logger.warning("skipped %s: %s: %s", filename, type(exc).__name__, exc, exc_info=True)
            drawn = False
        if drawn:
            written.append((title, path))
        else:
            path.unlink(missing_ok=True)  # no stale PNG from an earlier call
    return written


def use_log_axis(values) -> bool:
    """True when the values are numbers, all positive, spanning a decade or more
    (learning rates 0.0005 .. 0.008 read better on a log axis; batch sizes
    64 .. 512 do not).

    Missing and infinite values are ignored; strings, booleans or fewer than
    two finite values give False (max/min >= 10 decides).
    """
    x = _as_numeric(values)
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


def _check_arguments(runs, varied, metric, goal) -> None:
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    if not isinstance(runs, pd.DataFrame):
        raise ValueError(f"runs must be a pandas DataFrame, got {type(runs).__name__}")
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} is not a column of the runs table")
    missing = [c for c in varied if c not in runs.columns]
    if missing:
        raise ValueError(f"varied column(s) not in the runs table: {', '.join(missing)}")


def _clean_frame(runs: pd.DataFrame, varied: list[str], metric: str) -> pd.DataFrame:
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


def _unhashable(value) -> bool:
    return isinstance(value, (list, tuple, dict, set, np.ndarray))


def _as_numeric(values) -> np.ndarray | None:
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


def _value_label(value, width: int = 60) -> str:
    """How a param value reads on an axis or in a legend ('-' when missing)."""
    text = format_cell("", None if is_missing(value) else value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _abbreviate(labels: list[str], width: int) -> list[str]:
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
class _Scale:
    """How the values of one parameter are placed along a plot axis.

    numeric: positions are the values themselves (log: drawn on a log axis);
    categorical: positions are 0..k-1 in the order of `categories` (labels),
    missing values being the category '-' at the end.
    """

    numeric: bool
    log: bool
    categories: list[str]

    @classmethod
    def of(cls, values: pd.Series) -> _Scale | None:
        """The scale for these values, None when none of them can be placed."""
        x = _as_numeric(values)
        if x is not None:
            if not np.isfinite(x).any():
                return None
            return cls(numeric=True, log=use_log_axis(x), categories=[])
        distinct = {}
        for value in values:
            distinct.setdefault(_value_label(value, CATEGORY_WIDTH), value)
        order = sorted(distinct.items(), key=lambda item: _category_key(item[1], item[0]))
        return cls(numeric=False, log=False, categories=[label for label, _ in order])

    def positions(self, values: pd.Series) -> np.ndarray:
        """(N,) float positions; NaN for a missing numeric value."""
        if self.numeric:
            x = _as_numeric(values)
            return np.where(np.isfinite(x), x, np.nan)
        index = {label: i for i, label in enumerate(self.categories)}
        return np.array([index.get(_value_label(v, CATEGORY_WIDTH), np.nan) for v in values], dtype=float)


def _category_key(value, label: str):
    """Sort categories: numbers by value, then text, missing last."""
    if is_missing(value):
        return (2, 0.0, label)
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return (0, float(value), label)
    return (1, 0.0, label)


def _wrap(label: str, width: int = 24, lines: int = 5) -> str:
    """Break a long tick label onto lines (layer lists break at their ' | ')."""
    if len(label) <= width:
        return label
    return "\n".join(textwrap.wrap(label, width=width, break_long_words=True, max_lines=lines, placeholder="…"))


def _set_category_ticks(ax, categories: list[str], axis: str = "x") -> None:
    """Tick labels for a categorical axis, shortened, wrapped, tilted and thinned to stay readable."""
    positions = np.arange(len(categories))
    step = max(1, math.ceil(len(categories) / MAX_CATEGORY_TICKS))
    shown = _abbreviate(categories, 110)[::step]
    positions, labels = positions[::step], [_wrap(c) for c in shown]
    if axis == "y":
        ax.set_yticks(positions, labels=labels, fontsize=8)
        return
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    if len(labels) > 4 and longest > 6:
        ax.set_xticks(positions, labels=labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(positions, labels=labels, fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())


def _set_numeric_ticks(ax, values: np.ndarray, log: bool) -> None:
    """Log axis when asked; with few distinct values, one labelled tick per value."""
    if log:
        ax.set_xscale("log")
    distinct = np.unique(values[np.isfinite(values)])
    if 1 <= distinct.size <= 8:
        ax.set_xticks(distinct, labels=[_value_label(float(v)) for v in distinct])
        ax.xaxis.set_minor_locator(NullLocator())
    if distinct.size == 1:  # a single point: pad so it is not at the frame
        v = distinct[0]
        ax.set_xlim(*((v / 3, v * 3) if log or v > 0 else (v - 1, v + 1)))


def _metric_name(metric: str) -> str:
    return metric.removeprefix("metric.")


def _file_part(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", column.removeprefix("param.")).strip("_") or "param"


def _is_fraction(metric: str, values) -> bool:
    """Accuracy-like metric stored as fractions: drawn with a percent axis."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return "accuracy" in metric and x.size > 0 and x.min() >= 0 and x.max() <= 1


def _metric_axis(ax, metric: str, values) -> None:
    """Percent ticks on the y axis for an accuracy stored as fractions."""
    if _is_fraction(metric, values):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def _goal_cmap(goal: str):
    """Viridis with the better end bright, whichever way the metric points."""
    return colormaps["viridis" if goal == "maximize" else "viridis_r"]


# ----------------------------------------------------------------- groups of repeats


class _Groups:
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
        codes = [self._codes(frame[c]) for c in varied]
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
        mean = table["mean"].to_numpy()
        sign = -1.0 if goal == "maximize" else 1.0
        order = np.lexsort((np.arange(len(mean)), np.where(np.isfinite(mean), sign * mean, np.inf)))
        self.ranked = table.index.to_numpy()[order]

    @staticmethod
    def _codes(values: pd.Series) -> list[int]:
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
            self._short[column] = _abbreviate([_value_label(v, 200) for v in self.table[column]], 45)
        return self._short[column]

    @property
    def any_repeats(self) -> bool:
        return bool((self.table["n"] >= 2).any())

    def members(self, group: int) -> np.ndarray:
        """Row positions of the runs in `group`."""
        return np.flatnonzero(self.run_group == group)


# ----------------------------------------------------------------- learning curves


def _curve(df, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epoch, value) of one run's column, finite points only, at most MAX_CURVE_POINTS."""
    if not isinstance(df, pd.DataFrame) or len(df) == 0 or column not in df.columns:
        return None
    epoch = float_column(df, "epoch") if "epoch" in df.columns else np.arange(1.0, len(df) + 1)
    value = float_column(df, column)
    keep = np.isfinite(epoch) & np.isfinite(value)
    epoch, value = epoch[keep], value[keep]
    if epoch.size == 0:
        return None
    if epoch.size > MAX_CURVE_POINTS:
        index = np.unique(np.linspace(0, epoch.size - 1, MAX_CURVE_POINTS).round().astype(int))
        epoch, value = epoch[index], value[index]
    return epoch, value


def _mean_band(pieces: list[tuple[np.ndarray, np.ndarray]]):
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


def _panel_column(curves: dict, ids, kind: str) -> str | None:
    """'val_<kind>' if any run has it, else 'train_<kind>', else None."""
    for column in (f"val_{kind}", f"train_{kind}"):
        for run_id in ids:
            if _curve(curves.get(run_id), column) is not None:
                return column
    return None


def _sample(indices: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most `limit` of `indices`, a fixed random sample in the original order."""
    if indices.size <= limit:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))


def _plot_learning_curves(frame: pd.DataFrame, curves: dict, groups: _Groups, path: Path) -> bool:
    """Validation accuracy and loss per epoch: every group labelled, or the best few over grey."""
    ids = frame["id"].astype(str).to_numpy()
    curves = {str(k): v for k, v in curves.items()}
    with_curve = np.array([run_id in curves for run_id in ids], dtype=bool)
    if not with_curve.any():
        return False
    columns = {kind: _panel_column(curves, ids[with_curve], kind) for kind in ("accuracy", "loss")}
    if not any(columns.values()):
        return False

    table = groups.table
    few = len(table) <= MAX_LABELLED_GROUPS
    shown = groups.ranked if few else groups.ranked[:HIGHLIGHTED_GROUPS]
    colors = colormaps["tab10"].colors
    handles, sampled = [], False

    with saved_figure(path, ncols=2, figsize=(12, 5.2), layout="constrained") as (fig, (ax_acc, ax_loss)):
        for ax, kind in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            column = columns[kind]
            split = "validation" if column and column.startswith("val_") else "training"
            ax.set(title=f"{split.capitalize()} {kind}", xlabel="epoch", ylabel=f"{split} {kind}")
            ax.grid(True, alpha=0.35)
            if column is None:
                ax.text(0.5, 0.5, f"no {kind} recorded", transform=ax.transAxes, ha="center", color="0.4")
                continue
            if not few:  # context: every run (or a sample of them), thin and grey
                background = _sample(np.flatnonzero(with_curve), MAX_BACKGROUND_CURVES)
                sampled |= background.size < with_curve.sum()
                lines = [np.column_stack(c) for c in (_curve(curves[ids[i]], column) for i in background) if c]
                ax.add_collection(LineCollection(lines, colors="0.6", linewidths=0.5, alpha=0.35, zorder=1))
                ax.autoscale_view()
            panel_values, panel_epochs = [], []
            for rank, group in enumerate(shown):
                members = [i for i in groups.members(group) if with_curve[i]]
                sampled |= len(members) > MAX_RUNS_PER_BAND
                pieces = [c for c in (_curve(curves[ids[i]], column) for i in members[:MAX_RUNS_PER_BAND]) if c]
                if not pieces:
                    continue
                epoch, mean, low, high, _ = _mean_band(pieces)
                color = colors[rank % len(colors)]
                line, = ax.plot(epoch, mean, color=color, linewidth=1.8, zorder=3,
                                marker="o" if epoch.size <= 30 else None, markersize=3)
                if np.isfinite(low).any():
                    ax.fill_between(epoch, low, high, color=color, alpha=0.2 if len(shown) <= 3 else 0.1,
                                    linewidth=0, zorder=2)
                panel_values.append(mean)
                panel_epochs.append(epoch)
                if kind == "accuracy" or not columns["accuracy"]:
                    handles.append((line, _curve_label(groups, group, rank, few)))
            if kind == "accuracy" and panel_values:
                _metric_axis(ax, column, np.concatenate(panel_values))
            if kind == "loss" and panel_values:
                _clip_outliers(ax, np.concatenate(panel_values))
            if panel_epochs:
                widen_short_axes(ax, np.concatenate(panel_epochs))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if handles:
            fig.legend([h for h, _ in handles], [label for _, label in handles], loc="outside lower center",
                       ncols=1 if len(handles) > 4 or max(len(lab) for _, lab in handles) > 50 else 2,
                       fontsize=8, frameon=False)
        fig.suptitle(_curves_title(frame, groups, few, sampled), fontsize=12)
    return True


def _curve_label(groups: _Groups, group: int, rank: int, few: bool) -> str:
    row = groups.table.loc[group]
    label = groups.label(group)
    if label == "all runs" and row["runs"] == 1:
        label = str(groups.frame["id"].iloc[groups.members(group)[0]])
    score = format_cell(groups.metric, float(row["mean"])) if np.isfinite(row["mean"]) else "-"
    repeats = f", n={row['n']}" if row["n"] >= 2 else ""
    prefix = "" if few else f"#{rank + 1} "
    return f"{prefix}{label}  ({_metric_name(groups.metric)} {score}{repeats})"


def _curves_title(frame: pd.DataFrame, groups: _Groups, few: bool, sampled: bool) -> str:
    parts = [f"{len(frame)} run{'s' if len(frame) != 1 else ''}"]
    if groups.any_repeats:
        parts.append("mean over seeds, band: 95% CI")
    if not few:
        parts.append(f"grey: all runs{' (a sample)' if sampled else ''}, "
                     f"coloured: best {min(HIGHLIGHTED_GROUPS, len(groups.table))}")
    elif sampled:
        parts.append(f"means over at most {MAX_RUNS_PER_BAND} runs per group")
    return "Learning curves  —  " + ", ".join(parts)


def _clip_outliers(ax, values: np.ndarray) -> None:
    """Keep a diverged run's huge loss from flattening every other curve."""
    values = values[np.isfinite(values)]
    if values.size < 4:
        return
    high = np.percentile(values, 95)
    if values.max() > 3 * high > 0:
        ax.set_ylim(top=1.5 * high)


# ----------------------------------------------------------------- metric vs a param


def _plot_metric_vs_param(groups: _Groups, column: str, path: Path) -> bool:
    """Group means against one param, 95% CI bars; one line per setting of the others if few."""
    table = groups.table
    scale = _Scale.of(table[column])
    if scale is None:
        return False
    x = scale.positions(table[column])
    y = table["mean"].to_numpy()
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return False
    error = np.nan_to_num(table["ci95"].to_numpy(), nan=0.0)
    others = [c for c in groups.varied if c != column]
    series = _series_of(table, others)
    n_series = len(set(series[keep]))
    metric = groups.metric
    best = int(groups.ranked[0])  # table positions are group numbers

    with saved_figure(path, figsize=(8, 5), layout="constrained") as (fig, ax):
        if n_series <= MAX_SERIES:
            colors = colormaps["tab10"].colors
            keys = list(dict.fromkeys(series[keep]))
            firsts = [int(np.flatnonzero(keep & (series == key))[0]) for key in keys]
            legend = _abbreviate([", ".join(_value_label(table[c].iloc[g], 200) for c in others)
                                  for g in firsts], 70)
            for k, key in enumerate(keys):
                at = np.flatnonzero(keep & (series == key))
                at = at[np.argsort(x[at], kind="stable")]
                # Categorical x: spread the series a little so their bars do not overlap.
                shift = 0.0 if scale.numeric or n_series == 1 else (k - (n_series - 1) / 2) * 0.6 / n_series
                label = legend[k] if others else None
                ax.errorbar(x[at] + shift, y[at], yerr=error[at], color=colors[k % len(colors)], marker="o",
                            markersize=5, capsize=3, linewidth=1.4, label=label)
                if best in at:
                    _star(ax, x[best] + shift, y[best])
            if others:
                ax.legend(fontsize=8, title=", ".join(groups.names[c] for c in others), title_fontsize=8)
        else:  # many settings of the other params (random search): points, no lines
            # Categories: spread each column's points sideways so that they do not pile up.
            jitter = 0.0 if scale.numeric else np.random.default_rng(8675309).uniform(-0.25, 0.25, x.size)
            if error[keep].any():
                ax.errorbar((x + jitter)[keep], y[keep], yerr=error[keep], fmt="o", color="tab:blue",
                            markersize=4, alpha=0.5, elinewidth=0.8, capsize=2, label="one configuration")
            else:  # one run each: plain points draw much faster than zero-length bars
                ax.plot((x + jitter)[keep], y[keep], "o", color="tab:blue", markersize=3.5, alpha=0.4,
                        label="one configuration")
            _marginal_means(ax, x[keep], y[keep])
            if keep[best]:
                _star(ax, (x + jitter)[best], y[best])
            ax.legend(fontsize=8)
        if scale.numeric:
            _set_numeric_ticks(ax, x[keep], scale.log)
        else:
            _set_category_ticks(ax, scale.categories)
            ax.set_xlim(-0.6, len(scale.categories) - 0.4)
        _metric_axis(ax, metric, np.r_[y[keep] - error[keep], y[keep] + error[keep]])
        ax.grid(True, alpha=0.35)
        name = groups.names[column]
        ax.set(xlabel=f"{name}{' (log scale)' if scale.log else ''}", ylabel=_metric_name(metric))
        note = "mean over seeds, bars: 95% CI" if groups.any_repeats else "one run per point"
        ax.set_title(f"{_metric_name(metric)} vs {name}\n{note}; star: best ({groups.goal})", fontsize=11)
    return True


def _series_of(table: pd.DataFrame, others: list[str]) -> np.ndarray:
    """(G,) int: which combination of the other params each group has."""
    if not others:
        return np.zeros(len(table), dtype=np.int64)
    keys: dict = {}
    codes = zip(*(_Groups._codes(table[c]) for c in others))
    return np.array([keys.setdefault(k, len(keys)) for k in codes], dtype=np.int64)


def _marginal_means(ax, x: np.ndarray, y: np.ndarray, max_values: int = 20) -> None:
    """Mean and 95% CI of y at each distinct x, when x takes few values (a grid or a category)."""
    distinct = np.unique(x)
    if not 1 <= distinct.size <= max_values or distinct.size == x.size:
        return
    stats = [summarize(y[x == value]) for value in distinct]
    mean = np.array([s["mean"] for s in stats])
    half = np.nan_to_num(np.array([s["ci95"] for s in stats]), nan=0.0)
    ax.errorbar(distinct, mean, yerr=half, fmt="D-", color="black", markersize=6, capsize=5, linewidth=1.5,
                zorder=4, label="mean over the other parameters (95% CI)")


def _star(ax, x: float, y: float) -> None:
    """Mark the best configuration."""
    ax.plot([x], [y], marker="*", markersize=15, color=BEST_COLOR, linestyle="none", zorder=5)


# ----------------------------------------------------------------- heatmap


def _plot_heatmap(groups: _Groups, path: Path) -> bool:
    """Mean metric per cell of a two-param grid, annotated; only when exactly two params vary."""
    if len(groups.varied) != 2:
        return False
    table = groups.table
    col_x, col_y = groups.varied
    cats, index = {}, {}
    for column in (col_x, col_y):
        placed = _grid_categories(table[column])
        if placed is None or not 1 <= len(placed[0]) <= MAX_HEATMAP_VALUES:
            return False
        cats[column], index[column] = placed
    ix, iy = index[col_x], index[col_y]
    mean = table["mean"].to_numpy()
    grid = np.full((len(cats[col_y]), len(cats[col_x])), np.nan)
    cell = pd.DataFrame({"y": iy, "x": ix, "m": mean}).dropna().groupby(["y", "x"])["m"].mean()
    for (r, c), value in cell.items():
        grid[int(r), int(c)] = value
    if not np.isfinite(grid).any():
        return False

    nx, ny = grid.shape[1], grid.shape[0]
    width = min(16, max(5.5, 0.9 * nx + 3.5))
    height = min(12, max(4, 0.55 * ny + 2.5))
    with saved_figure(path, figsize=(width, height), layout="constrained") as (fig, ax):
        cmap = _goal_cmap(groups.goal).with_extremes(bad="0.92")  # empty cells light grey
        finite = grid[np.isfinite(grid)]
        norm = Normalize(vmin=finite.min(), vmax=finite.max() if finite.max() > finite.min() else finite.min() + 1e-12)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label(f"mean {_metric_name(groups.metric)} (brighter is better)")
        _metric_axis(bar.ax, groups.metric, finite)
        fontsize = max(6, min(10, 120 // max(nx, ny)))
        for r in range(ny):
            for c in range(nx):
                value = grid[r, c]
                text = format_cell(groups.metric, float(value)) if np.isfinite(value) else "-"
                shade = norm(value) if np.isfinite(value) else 1.0
                # The dark end of viridis needs white text, whichever way the map runs.
                dark = shade < 0.45 if groups.goal == "maximize" else shade > 0.55
                ax.text(c, r, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if np.isfinite(value) and dark else "black")
        _set_category_ticks(ax, cats[col_x], "x")
        _set_category_ticks(ax, cats[col_y], "y")
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(ny - 0.5, -0.5)
        ax.set(xlabel=groups.names[col_x], ylabel=groups.names[col_y])
        note = ", mean over seeds" if groups.any_repeats else ""
        ax.set_title(f"{_metric_name(groups.metric)} by {groups.names[col_x]} and {groups.names[col_y]}{note}",
                     fontsize=11)
    return True


def _grid_categories(values: pd.Series) -> tuple[list[str], np.ndarray] | None:
    """Rows or columns of a grid: (labels in order, (G,) index of each value).

    Every distinct number gets its own row, in numeric order; missing values
    share a last row labelled '-'. None when nothing can be placed.
    """
    scale = _Scale.of(values)
    if scale is None:
        return None
    if not scale.numeric:
        return scale.categories, scale.positions(values)
    x = scale.positions(values)
    distinct = np.unique(x[np.isfinite(x)])
    labels = [_value_label(float(v)) for v in distinct]
    index = np.searchsorted(distinct, np.nan_to_num(x, nan=np.inf)).astype(float)
    if np.isnan(x).any():
        labels.append("-")  # searchsorted put the missing ones at len(distinct): that row
    return labels, index


# ----------------------------------------------------------------- parallel coordinates


def _plot_parallel_coordinates(groups: _Groups, path: Path) -> bool:
    """One vertical axis per varied param plus the metric; one line per group, coloured by the metric.

    Each axis is scaled to [0, 1]: numbers min-max (in log10 where they span
    decades), categories by their index; missing values sit just below the axis.
    """
    if len(groups.varied) < 3:
        return False
    table = groups.table
    columns, coords, ticks = [], [], []
    for column in groups.varied:
        placed = _unit_positions(table[column])
        if placed is None:
            continue
        columns.append(groups.names[column] + (" (log)" if placed[2] else ""))
        coords.append(placed[0])
        ticks.append(placed[1])
    mean = table["mean"].to_numpy()
    if len(columns) < 2 or not np.isfinite(mean).any():
        return False
    metric_pos, metric_ticks, _ = _unit_positions(pd.Series(mean, dtype=float), metric=groups.metric)
    columns.append(_metric_name(groups.metric))
    coords.append(metric_pos)
    ticks.append(metric_ticks)
    points = np.column_stack(coords)  # (G, P+1)
    x = np.arange(points.shape[1], dtype=float)

    cmap = _goal_cmap(groups.goal)
    finite = mean[np.isfinite(mean)]
    norm = Normalize(vmin=finite.min(), vmax=max(finite.max(), finite.min() + 1e-12))
    # Worst first, so that the best lines end up drawn on top.
    score = np.where(np.isfinite(mean), mean if groups.goal == "maximize" else -mean, -np.inf)
    order = np.argsort(score, kind="stable")
    lines = np.stack([np.broadcast_to(x, points.shape), points], axis=-1)[order]  # (G, P+1, 2)
    colors = cmap(norm(np.nan_to_num(mean[order], nan=finite.min())))
    colors[~np.isfinite(mean[order])] = (0.7, 0.7, 0.7, 1.0)
    many = len(lines) > 300

    with saved_figure(path, figsize=(max(8, 1.9 * len(columns) + 2), 5.5), layout="constrained") as (fig, ax):
        ax.add_collection(LineCollection(lines, colors=colors, linewidths=0.6 if many else 1.4,
                                         alpha=0.45 if many else 0.85))
        for i, axis_ticks in enumerate(ticks):
            ax.axvline(i, color="0.2", linewidth=1)
            for position, label in axis_ticks:
                ax.text(i - 0.03, position, label, ha="right", va="center", fontsize=7,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))
        ax.set_xlim(-0.45, len(columns) - 0.8)
        ax.set_ylim(-0.16, 1.06)
        ax.set_yticks([])
        ax.set_xticks(x, labels=columns, fontsize=9)
        for spine in ("left", "right", "top"):
            ax.spines[spine].set_visible(False)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.85)
        bar.set_label(f"{_metric_name(groups.metric)} (brighter is better)")
        _metric_axis(bar.ax, groups.metric, finite)
        note = " (means over seeds)" if groups.any_repeats else ""
        ax.set_title(f"Parallel coordinates: {len(lines)} configuration{'s' if len(lines) != 1 else ''}{note}",
                     fontsize=11)
    return True


def _unit_positions(values: pd.Series, metric: str | None = None):
    """Positions in [0, 1] for one axis, its tick (position, label) list, and whether log.

    Missing values go to -0.1, labelled '-'. None when nothing can be placed.
    """
    scale = _Scale.of(values)
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
            label = format_cell(metric, float(value)) if metric else _value_label(float(value), 18)
            ticks.append(((mark - low) / span if span > 0 else 0.5, label))
    else:
        k = len(scale.categories)
        pos = raw / (k - 1) if k > 1 else np.full(raw.size, 0.5)
        step = max(1, math.ceil(k / 12))
        labels = _abbreviate(scale.categories, 34)
        ticks = [((i / (k - 1) if k > 1 else 0.5), _wrap(label, 18, 2))
                 for i, label in enumerate(labels) if i % step == 0]
    missing = ~np.isfinite(pos)
    if missing.any():
        pos = np.where(missing, -0.1, pos)
        ticks.append((-0.1, "-"))
    return pos, ticks, scale.log


# ----------------------------------------------------------------- sweeps


def _plot_best_so_far(frame: pd.DataFrame, metric: str, goal: str, path: Path) -> bool:
    """Each trial's metric in trial order, and the best so far (pruned trials shown apart);
    for runs of several sweeps, one best-so-far line per sweep."""
    if "sweep" in frame.columns and frame["sweep"].nunique() > 1:
        return _plot_best_so_far_of_sweeps(frame, metric, goal, path)
    y = frame[metric].to_numpy(dtype=float)
    if not np.isfinite(y).any():
        return False
    trial = (pd.to_numeric(frame["trial"], errors="coerce").to_numpy(dtype=float)
             if "trial" in frame.columns else np.full(len(frame), np.nan))
    if not np.isfinite(trial).all():  # trials without a number go after the numbered ones
        fallback = np.nanmax(trial, initial=-1) + 1 + np.arange(len(frame))
        trial = np.where(np.isfinite(trial), trial, fallback)
    status = frame["status"].astype(str).to_numpy() if "status" in frame.columns else np.full(len(frame), "")
    pruned = status == "pruned"
    order = np.argsort(trial, kind="stable")
    trial, y, pruned = trial[order], y[order], pruned[order]

    counted = np.where(pruned, np.nan, y)
    running = pd.Series(running_best(y, pruned, goal))
    with saved_figure(path, figsize=(9, 5), layout="constrained") as (fig, ax):
        done = ~pruned & np.isfinite(y)
        ax.plot(trial[done], y[done], "o", color="tab:blue", markersize=4, alpha=0.7, label="trial")
        if (pruned & np.isfinite(y)).any():
            ax.plot(trial[pruned], y[pruned], "x", color=PRUNED_COLOR, markersize=5,
                    label="pruned trial (metric when stopped)")
        if running.notna().any():
            ax.step(trial, running.to_numpy(), where="post", color=BEST_COLOR, linewidth=2, label="best so far")
            at = int(np.nanargmax(counted) if goal == "maximize" else np.nanargmin(counted))
            ax.plot([trial[at]], [y[at]], marker="*", markersize=15, color=BEST_COLOR, linestyle="none")
            ax.annotate(f"trial {trial[at]:g}: {format_cell(metric, float(y[at]))}", (trial[at], y[at]),
                        textcoords="offset points", xytext=(6, 8), fontsize=9, color="darkgreen")
        if np.ptp(trial) < 2:
            ax.set_xlim(trial.min() - 1, trial.max() + 1)
        _metric_axis(ax, metric, y)
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=8, loc="best")
        failed = int((~np.isfinite(y)).sum())
        note = f"; {failed} trial{'s' if failed != 1 else ''} without a value not shown" if failed else ""
        ax.set(xlabel="trial", ylabel=_metric_name(metric))
        ax.set_title(f"Best {_metric_name(metric)} so far ({goal}), {len(frame)} trials{note}", fontsize=11)
    return True


def _plot_best_so_far_of_sweeps(frame: pd.DataFrame, metric: str, goal: str, path: Path) -> bool:
    """One step line per sweep; sweeps named alike but for a -seedN suffix share a colour."""
    sweeps = sorted(str(s) for s in pd.unique(frame["sweep"].dropna()))
    families = [re.sub(r"-seed\d+$", "", _sweep_label(s)) for s in sweeps]
    colours = {f: f"C{i % 10}" for i, f in enumerate(dict.fromkeys(families))}
    styles = ["-", "--", ":", "-."]
    drawn = False
    with saved_figure(path, figsize=(9, 5), layout="constrained") as (fig, ax):
        seen: dict[str, int] = {}
        for sweep, family in zip(sweeps, families):
            group = frame[frame["sweep"] == sweep]
            order = np.argsort(pd.to_numeric(group["trial"], errors="coerce").to_numpy(dtype=float), kind="stable")
            y = group[metric].to_numpy(dtype=float)[order]
            pruned = (group["status"].astype(str).to_numpy() == "pruned")[order]
            best = running_best(y, pruned, goal)
            if not np.isfinite(best).any():
                continue
            style = styles[seen.setdefault(family, 0) % len(styles)]
            seen[family] += 1
            ax.step(np.arange(1, len(best) + 1), best, where="post", color=colours[family], linestyle=style,
                    linewidth=1.8, label=_sweep_label(sweep))
            drawn = True
        _metric_axis(ax, metric, frame[metric].to_numpy(dtype=float))
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=8, loc="best")
        ax.set(xlabel="trials", ylabel=f"best {_metric_name(metric)} so far")
        ax.set_title(f"Best {_metric_name(metric)} so far ({goal}), {len(sweeps)} sweeps", fontsize=11)
    return drawn


def _plot_pareto(frame: pd.DataFrame, objectives: list[tuple[str, str]], path: Path) -> bool:
    """The runs on the first two objectives; the Pareto front (over all of them) marked and joined."""
    columns = [c for c, _ in objectives]
    if any(c not in frame.columns for c in columns):
        return False
    values = np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in columns])
    front = pareto_front(values, [g for _, g in objectives])
    if not front.any():
        return False
    (x_col, x_goal), (y_col, y_goal) = objectives[:2]
    x, y = values[:, 0], values[:, 1]
    shown = np.isfinite(x) & np.isfinite(y)
    with saved_figure(path, figsize=(8, 5.5), layout="constrained") as (fig, ax):
        ax.plot(x[shown & ~front], y[shown & ~front], "o", color="tab:blue", alpha=0.45, markersize=5,
                label="dominated run")
        order = np.argsort(x[front], kind="stable")
        fx, fy = x[front][order], y[front][order]
        ax.plot(fx, fy, "o", color=BEST_COLOR, markersize=8, label="Pareto-optimal")
        if len(objectives) == 2:
            ax.step(fx, fy, where="post" if (x_goal == "maximize") == (y_goal == "maximize") else "pre",
                    color=BEST_COLOR, linewidth=1.5, alpha=0.8)
        if use_log_axis(x[shown]):
            ax.set_xscale("log")
        if use_log_axis(y[shown]):
            ax.set_yscale("log")
        if _is_fraction(x_col, x[shown]):
            ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        _metric_axis(ax, y_col, y[shown])
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=8, loc="best")
        ax.set(xlabel=f"{_metric_name(x_col)} ({x_goal})", ylabel=f"{_metric_name(y_col)} ({y_goal})")
        more = f", front over {len(objectives)} metrics" if len(objectives) > 2 else ""
        ax.set_title(f"Pareto front: {int(front.sum())} of {int(shown.sum())} runs{more}", fontsize=11)
    return True


def _sweep_label(sweep_id: str) -> str:
    """A sweep id without its hash: ``mlp-tpe-seed0-cc4f9e8e`` -> ``mlp-tpe-seed0``."""
    return re.sub(r"-[0-9a-f]{8}$", "", sweep_id)


def _plot_importance(frame: pd.DataFrame, varied: list[str], names: dict[str, str], metric: str, path: Path) -> bool:
    """Horizontal bars: share of the metric's variance each param explains on its own."""
    if not varied or frame[metric].notna().sum() < 2:
        return False
    scores = pd.to_numeric(importance(frame, varied, metric), errors="coerce").dropna()
    if scores.empty:
        return False
    scores = scores.sort_values(ascending=False)
    labels = [names.get(c, str(c).removeprefix("param.")) for c in scores.index]
    with saved_figure(path, figsize=(8, max(2.5, 0.45 * len(scores) + 1.6)), layout="constrained") as (fig, ax):
        position = np.arange(len(scores))
        ax.barh(position, scores.to_numpy(), color="tab:blue", alpha=0.8)
        for p, value in zip(position, scores.to_numpy()):
            ax.text(min(value, 0.9) + 0.01, p, f"{value:.2f}", va="center", fontsize=9)
        ax.set_yticks(position, labels=[_wrap(label, 30) for label in labels], fontsize=9)
        ax.invert_yaxis()  # most important on top
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.grid(True, axis="x", alpha=0.35)
        ax.set_xlabel("fraction of variance explained, one parameter at a time")
        counted = int(frame[metric].notna().sum())
        ax.set_title(f"Parameter importance for {_metric_name(metric)} (eta squared, {counted} runs)", fontsize=11)
    return True
