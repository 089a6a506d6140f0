"""One run's interactive charts: its learning curves and its per-layer diagnostics.

Figures in plotly.js's JSON format, drawn with the comparison charts' look
(``nnexp/compare/charts.py``): the run page asks for them again whenever the
run logs a row, and ``uirevision`` keeps a reader's zoom across redraws.
Curves are drawn against the run's steps, else its epochs; a curve of more
than MAX_POINTS points is drawn from the lowest and highest point of each of
MAX_POINTS/2 equal stretches of rows (see :func:`downsample`).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..compare.charts import PALETTE, axis, base_layout, figure, finite_list, plot_text
from ..compare.layout import use_log_axis
from ..tracking.run import AXES, NOT_CURVES
from .diagnostics import DESCRIPTIONS

TRAIN_COLOR, VAL_COLOR, BEST_COLOR = "#1f77b4", "#ff7f0e", "#2ca02c"
FRACTION_STATS = ("dead_fraction", "saturated_fraction")
MAX_POINTS = 2000  # points drawn per curve at most: a 100,000-step run's page stays quick


def run_charts(rows: list[dict], diagnostics: dict) -> list[dict]:
    """The charts of a run: learning curves from its metrics rows ({column: value}
    per row), a chart of its other metrics, then one chart per diagnostic statistic;
    none for what is missing."""
    charts = []
    curves = learning_curves(rows)
    if curves is not None:
        charts.append({"id": "curves", "title": "Learning curves", "figure": curves, "wide": True})
    others = other_metrics(rows)
    if others is not None:
        charts.append({"id": "curves-other", "title": "Other metrics", "figure": others, "wide": True})
    for stat in diagnostics.get("stats", []):
        fig = diagnostic_chart(stat, [s for s in diagnostics["series"] if s["stat"] == stat])
        if fig is not None:
            charts.append({"id": f"diagnostics-{stat}", "title": stat, "figure": fig, "wide": False})
    return charts


def _column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([_float(row.get(name)) for row in rows], dtype=float)


def _float(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def x_axis(rows: list[dict]) -> tuple[str, np.ndarray]:
    """What a run's curves are drawn against: its steps if it logged any, else its
    epochs, else the row numbers (from 1)."""
    for name in AXES:
        x = _column(rows, name)
        if np.isfinite(x).any():
            return name, x
    return "epoch", np.arange(1.0, len(rows) + 1)


def downsample(x: np.ndarray, y: np.ndarray, points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The finite points of a curve, at most about ``points`` of them: beyond that,
    the lowest and the highest point of each of points/2 equal runs of rows, so
    that a spike or a dip stays visible."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) <= points:
        return x, y
    buckets = points // 2
    bucket = np.arange(len(x)) * buckets // len(x)
    order = np.lexsort((y, bucket))  # by bucket, then by value
    starts = np.searchsorted(bucket[order], np.arange(buckets))
    ends = np.r_[starts[1:], len(order)] - 1
    chosen = np.unique(np.r_[order[starts], order[ends]])
    return x[chosen], y[chosen]


def _names(columns, kind: str) -> list[str]:
    return [c for c in columns if c not in NOT_CURVES and kind in c]


def _label(column: str, kind: str) -> tuple[str, str | None]:
    """The legend name and colour of a column: the trainer's train_* and val_* are
    "train" and "validation" in both panels."""
    if column == f"train_{kind}":
        return "train", TRAIN_COLOR
    if column == f"val_{kind}":
        return "validation", VAL_COLOR
    return column, None


def _trace(x, y, name, color, xaxis, yaxis, x_name, column, fmt, show) -> dict:
    return {"type": "scatter", "mode": "lines+markers" if len(x) <= 60 else "lines",
            "x": finite_list(x), "y": finite_list(y), "xaxis": xaxis, "yaxis": yaxis,
            "name": plot_text(name), "legendgroup": name, "showlegend": show,
            "line": {"color": color, "width": 2 if len(x) <= 2000 else 1.2}, "marker": {"size": 5},
            "hovertemplate": f"{x_name} %{{x}}<br>{plot_text(column)} %{{y:{fmt}}}<extra>{plot_text(name)}</extra>"}


def _subtitle(count: int, x_name: str, drawn: int, total: int, last: float | None = None) -> str:
    text = (f"{count:,} row{'s' if count != 1 else ''} up to step {last:g}" if x_name == "step" and last is not None
            else f"{count:,} {x_name}{'s' if count != 1 else ''}")
    if drawn < total:
        text += f"; {drawn:,} of {total:,} points drawn (each curve: the lowest and highest point of each stretch)"
    return text


def learning_curves(rows: list[dict]) -> dict | None:
    """Losses and accuracies against the steps (or epochs), train and validation
    side by side; the best validation-accuracy point marked on both."""
    if not rows:
        return None
    columns = list(dict.fromkeys(k for row in rows[:1] for k in row))
    x_name, x = x_axis(rows)
    val_acc = _column(rows, "val_accuracy")
    best = int(np.nanargmax(val_acc)) if np.isfinite(val_acc).any() else None
    data, shapes, seen, drawn, total = [], [], set(), 0, 0
    panels = [(kind, _names(columns, "loss" if kind == "loss" else "acc")) for kind in ("loss", "accuracy")]
    panels = [(kind, names) for kind, names in panels if names]
    both = len(panels) == 2
    for panel, (kind, names) in enumerate(panels):
        xaxis, yaxis = ("x", "y") if panel == 0 else ("x2", "y2")
        fmt = ".2%" if kind == "accuracy" else ".4g"
        for k, column in enumerate(names):
            y = _column(rows, column)
            if not np.isfinite(y).any():
                continue
            name, color = _label(column, kind)
            px, py = downsample(x, y)
            drawn, total = drawn + len(px), total + int(np.sum(np.isfinite(x) & np.isfinite(y)))
            data.append(_trace(px, py, name, color or PALETTE[(k + 2) % len(PALETTE)], xaxis, yaxis, x_name, column,
                               fmt, name not in seen))
            seen.add(name)
        if best is not None and (kind == "accuracy" or both):
            shapes.append({"type": "line", "xref": xaxis, "yref": f"{yaxis} domain", "x0": float(x[best]),
                           "x1": float(x[best]), "y0": 0, "y1": 1,
                           "line": {"color": BEST_COLOR, "width": 1, "dash": "dash"}})
    if not data:
        return None
    count = int(np.sum(np.isfinite(x))) if x_name != "epoch" else len(rows)
    subtitle = _subtitle(count, x_name, drawn, total, float(np.nanmax(x)) if np.isfinite(x).any() else None)
    acc_axes = ("x2", "y2") if both else ("x", "y")
    if best is not None and any(kind == "accuracy" for kind, _ in panels):
        data.append({"type": "scatter", "mode": "markers", "x": [float(x[best])], "y": [float(val_acc[best])],
                     "xaxis": acc_axes[0], "yaxis": acc_axes[1],
                     "name": f"best validation accuracy ({x_name} {x[best]:g})",
                     "marker": {"symbol": "star", "size": 15, "color": BEST_COLOR},
                     "hovertemplate": f"best: {x_name} %{{x}}<br>val_accuracy %{{y:.2%}}<extra></extra>"})
        subtitle += f"; best validation accuracy {val_acc[best]:.2%} at {x_name} {x[best]:g}"
    whole = x[np.isfinite(x)]
    ticks = {"dtick": 1} if whole.size and whole.max() - whole.min() <= 15 else {}
    legend = [t["name"] for t in data if t.get("showlegend", True)]
    if both:
        layout = base_layout("Learning curves", subtitle, legend=legend, shapes=shapes,
                             xaxis=axis(x_name, domain=[0, 0.46], anchor="y", **ticks),
                             yaxis=axis("loss", anchor="x"),
                             xaxis2=axis(x_name, domain=[0.54, 1], anchor="y2", **ticks),
                             yaxis2=axis("accuracy", anchor="x2", tickformat=".1%"))
    else:
        kind = panels[0][0]
        layout = base_layout("Learning curves", subtitle, legend=legend, shapes=shapes,
                             xaxis=axis(x_name, **ticks),
                             yaxis=axis(kind, **({"tickformat": ".1%"} if kind == "accuracy" else {})))
    return figure(data, layout)


def other_metrics(rows: list[dict]) -> dict | None:
    """The columns a script logged that are neither losses nor accuracies, one line each."""
    if not rows:
        return None
    columns = [c for c in dict.fromkeys(k for row in rows[:1] for k in row)
               if c not in NOT_CURVES and "loss" not in c and "acc" not in c]
    x_name, x = x_axis(rows)
    data, drawn, total = [], 0, 0
    for k, column in enumerate(columns):
        y = _column(rows, column)
        if not np.isfinite(y).any():
            continue
        px, py = downsample(x, y)
        drawn, total = drawn + len(px), total + int(np.sum(np.isfinite(x) & np.isfinite(y)))
        data.append(_trace(px, py, column, PALETTE[k % len(PALETTE)], "x", "y", x_name, column, ".4g", True))
    if not data:
        return None
    count = int(np.sum(np.isfinite(x))) if x_name != "epoch" else len(rows)
    return figure(data, base_layout("Other metrics", _subtitle(count, x_name, drawn, total, float(np.nanmax(x))), height=360,
                                    legend=[t["name"] for t in data], xaxis=axis(x_name), yaxis=axis("value")))


def log_ticks(values: np.ndarray, most: int = 8) -> dict:
    """Labelled ticks of a log axis over these values: the powers of ten (every
    second, third, ... when more than ``most`` lie among the values), else 1, 2
    and 5 times them; never the digits between decades that plotly labels by
    default, which overlap. Ticks a decade beyond the values are included for the
    axis's margins: plotly draws only those in its range."""
    x = values[np.isfinite(values) & (values > 0)]
    if x.size < 2:
        return {}
    low, high = float(x.min()), float(x.max())
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    inside = sum(low * (1 - 1e-9) <= 10.0 ** k <= high * (1 + 1e-9) for k in range(first, last + 1))
    if inside >= 2:
        step = math.ceil(inside / most)
        ticks = [10.0 ** k for k in range(first - step, last + step + 1) if k % step == 0]
    else:
        ticks = [m * 10.0 ** k for k in range(first - 1, last + 1) for m in (1, 2, 5)]
    return {"tickvals": ticks, "ticktext": [re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{t:g}") for t in ticks]}


def diagnostic_chart(stat: str, series: list[dict]) -> dict | None:
    """One statistic over the epochs, a line per layer (or parameter)."""
    series = [s for s in series if any(v is not None for v in s["values"])]
    if not series:
        return None
    values = np.array([v for s in series for v in s["values"] if v is not None], dtype=float)
    log = stat not in FRACTION_STATS and use_log_axis(values)
    fmt = ".2%" if stat in FRACTION_STATS else ".4g"
    data = []
    for k, s in enumerate(series):
        label = plot_text(s["label"])
        data.append({"type": "scatter", "mode": "lines+markers" if len(s["epochs"]) <= 40 else "lines",
                     "x": s["epochs"], "y": s["values"], "name": label,
                     "line": {"color": PALETTE[k % len(PALETTE)], "width": 1.6}, "marker": {"size": 4},
                     "hovertemplate": f"epoch %{{x}}<br>{plot_text(stat)} %{{y:{fmt}}}<extra>{label}</extra>"})
    y_axis = axis(f"{stat}{' (log scale)' if log else ''}")
    if log:
        y_axis.update(type="log", **log_ticks(values))
    if stat in FRACTION_STATS:  # "~%": as many decimals as the ticks need (0.5%, 1%, 1.5%), no trailing zeros
        y_axis.update(tickformat="~%", rangemode="tozero")
    epochs = [e for s in series for e in s["epochs"]]
    ticks = {"dtick": 1} if epochs and max(epochs) - min(epochs) <= 15 else {}
    layout = base_layout(stat, DESCRIPTIONS.get(stat, ""), height=360, legend=[t["name"] for t in data],
                         xaxis=axis("epoch", **ticks), yaxis=y_axis)
    return figure(data, layout)
