"""``nnexp compare``: choose runs, find what differs, aggregate over seeds, render.

The table shows only the parameters that differ between the selected runs
(what they share is noise on screen), then the metrics. Runs that differ only
in their seed are one group: the mean, standard deviation, n and the 95%
confidence interval of the mean (Student t) say whether a difference between
two groups is larger than the seed-to-seed spread.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pandas as pd

from ..errors import ConfigError, NnexpError
from ..text_table import aligned, markdown
from ..values import is_missing, plain
from .fmt import format_cell
from .stats import group_summary

SEED = "param.train.seed"
CURVE_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
DEFAULT_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "train_seconds")
AGGREGATES = ("final", "best", "mean")


@dataclass
class Comparison:
    runs: pd.DataFrame  # the selected runs (records_frame), sorted by the metric
    varied: list[str]  # param.* columns that differ, the seed excepted
    metric: str  # the metric.* column sorted on
    goal: str  # maximize | minimize
    table: pd.DataFrame  # what is shown: short column names, raw values
    grouped: bool


def metric_column(name: str, agg: str = "final") -> str:
    """``val_accuracy`` with ``best`` -> ``metric.best_val_accuracy``; other
    metrics (test_accuracy, train_seconds, ...) have one value per run."""
    name = name.removeprefix("metric.")
    if name in CURVE_METRICS and agg != "final":
        return f"metric.{agg}_{name}"
    return f"metric.{name}"


def default_goal(metric: str) -> str:
    return "minimize" if ("loss" in metric or "seconds" in metric) else "maximize"


def varied_params(runs: pd.DataFrame) -> list[str]:
    """The param columns with at least two different values.

    A key that only some runs have (``optimizer.beta1`` exists for Adam, not
    for SGD) is not a difference of its own: the key that caused it
    (``optimizer.name``) already shows.
    """
    def differs(column):
        present = runs[column][~runs[column].map(is_missing)]
        return present.map(_key).nunique() > 1

    varied = [c for c in runs.columns if c.startswith("param.") and c != SEED and differs(c)]
    if any(c.startswith("param.model.layers.") for c in varied):  # the layers text only repeats them
        varied = [c for c in varied if c != "param.model.layers"]
    return varied


def compare(runs: pd.DataFrame, sort: str = "val_accuracy", agg: str = "final", metrics=None,
            group: bool | None = None, goal: str | None = None, limit: int | None = None) -> Comparison:
    """Build the comparison of the runs of a ``records_frame``.

    ``group`` None groups when some parameter setting was run with several
    seeds; ``goal`` None infers it from the metric's name (losses and times
    are minimised).
    """
    if agg not in AGGREGATES:
        raise ConfigError(f"--agg is {agg!r}; choose one of {', '.join(AGGREGATES)}")
    shown = [metric_column(m, agg) for m in (metrics or DEFAULT_METRICS)]
    sort_col = _sort_column(runs, sort, agg)
    if sort_col.startswith("metric.") and sort_col not in shown:
        shown.insert(0, sort_col)
    shown = [m for m in shown if m in runs.columns]
    goal = goal or default_goal(sort_col)
    varied = varied_params(runs)
    if group is None:
        group = bool(len(runs)) and _has_repeats(runs, varied)
    if group:
        table = _grouped_table(runs, varied, shown, sort_col)
    else:
        table = runs[["id", "status"] + varied + shown].copy()
    table = _sort(table, sort_col if sort_col in table.columns else _short(sort_col), goal)
    runs = _sort(runs, sort_col, goal)
    if limit is not None:
        table = table.head(limit)
    table.columns = [_short(c) for c in table.columns]
    return Comparison(runs.reset_index(drop=True), varied, sort_col, goal, table.reset_index(drop=True), group)


def _sort_column(runs: pd.DataFrame, sort: str, agg: str) -> str:
    for candidate in (metric_column(sort, agg), sort, f"param.{sort}"):
        if candidate in runs.columns:
            return candidate
    if runs.empty:
        return metric_column(sort, agg)
    known = sorted(_short(c) for c in runs.columns if c.startswith(("metric.", "param.")))
    raise ConfigError(f"--sort: no metric or parameter {sort!r} in the selected runs "
                      f"(metrics: {', '.join(k for k in known if not k.startswith('param.'))[:300]})")


def _has_repeats(runs: pd.DataFrame, varied: list[str]) -> bool:
    keys = [tuple(_key(v) for v in row) for row in runs[varied].itertuples(index=False)]
    return len(set(keys)) < len(keys)


def _grouped_table(runs: pd.DataFrame, varied: list[str], shown: list[str], primary: str) -> pd.DataFrame:
    summary = group_summary(runs, varied, shown)
    columns = list(varied) + ["runs"]
    for m in shown:
        columns += [m, f"{m} std", f"{m} ci95", f"{m} n"] if m == primary else [m]
    return summary[[c for c in columns if c in summary.columns]].copy()


def _sort(frame: pd.DataFrame, column: str, goal: str) -> pd.DataFrame:
    if column not in frame.columns or frame.empty:
        return frame
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.notna().any():
        order = values.sort_values(ascending=(goal == "minimize"), na_position="last", kind="stable").index
    else:
        order = frame[column].astype(str).sort_values(kind="stable").index
    return frame.loc[order]


def _short(column: str) -> str:
    for prefix in ("param.", "metric."):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def _key(value) -> str:
    """A hashable, comparable stand-in for a cell (lists, NaN and None included)."""
    return "null" if is_missing(value) else json.dumps(value, default=str, sort_keys=True)


# ----------------------------------------------------------------- render --


def render(table: pd.DataFrame, fmt: str = "text") -> str:
    """The table as aligned text, CSV, Markdown or JSON (raw values in CSV/JSON)."""
    if fmt == "csv":
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        return buf.getvalue().rstrip("\n")
    if fmt == "json":
        rows = [{k: (None if is_missing(v) else plain(v)) for k, v in row.items()}
                for row in table.to_dict(orient="records")]
        return json.dumps(rows, indent=2, default=str)
    cells = [[format_cell(c, plain(v)) for c, v in zip(table.columns, row)] for row in table.itertuples(index=False)]
    header = [_header(str(c)) for c in table.columns]
    if fmt == "markdown":
        return markdown(header, cells)
    if fmt != "text":
        raise NnexpError(f"unknown table format {fmt!r}")
    return aligned(header, cells)


def _header(column: str) -> str:
    """``val_accuracy ci95`` -> ``±ci95``: on screen the statistic sits next to its metric."""
    for suffix, short in ((" std", "±std"), (" ci95", "±ci95"), (" n", "n")):
        if column.endswith(suffix):
            return short
    return column
