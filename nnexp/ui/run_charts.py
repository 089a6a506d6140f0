"""One run's interactive charts: its learning curves and its per-layer diagnostics.

Figures in plotly.js's JSON format, drawn with the comparison charts' look
(``nnexp/compare/charts.py``): the run page asks for them again whenever the
run logs an epoch, and ``uirevision`` keeps a reader's zoom across redraws.
"""

from __future__ import annotations

import math

import numpy as np

from ..compare.charts import PALETTE, axis, base_layout, figure, finite_list, plot_text
from ..compare.layout import use_log_axis
from .diagnostics import DESCRIPTIONS

TRAIN_COLOR, VAL_COLOR, BEST_COLOR = "#1f77b4", "#ff7f0e", "#2ca02c"
FRACTION_STATS = ("dead_fraction", "saturated_fraction")


def run_charts(rows: list[dict], diagnostics: dict) -> list[dict]:
    """The charts of a run: learning curves from its metrics rows ({column: value}
    per epoch), then one chart per diagnostic statistic; none for what is missing."""
    charts = []
    curves = learning_curves(rows)
    if curves is not None:
        charts.append({"id": "curves", "title": "Learning curves", "figure": curves, "wide": True})
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


def learning_curves(rows: list[dict]) -> dict | None:
    """Loss and accuracy per epoch, train and validation side by side; the best
    validation-accuracy epoch marked on both."""
    if not rows:
        return None
    epoch = _column(rows, "epoch")
    if not np.isfinite(epoch).any():
        epoch = np.arange(1.0, len(rows) + 1)
    val_acc = _column(rows, "val_accuracy")
    best = int(np.nanargmax(val_acc)) if np.isfinite(val_acc).any() else None
    data, shapes = [], []
    for panel, kind in enumerate(("loss", "accuracy")):
        xaxis, yaxis = ("x", "y") if panel == 0 else ("x2", "y2")
        fmt = ".2%" if kind == "accuracy" else ".4g"
        for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            y = _column(rows, f"{split}_{kind}")
            if not np.isfinite(y).any():
                continue
            name = "train" if split == "train" else "validation"
            data.append({"type": "scatter", "mode": "lines+markers" if len(rows) <= 60 else "lines",
                         "x": finite_list(epoch), "y": finite_list(y), "xaxis": xaxis, "yaxis": yaxis,
                         "name": name, "legendgroup": name, "showlegend": panel == 0,
                         "line": {"color": color, "width": 2}, "marker": {"size": 5},
                         "hovertemplate": f"epoch %{{x}}<br>{split}_{kind} %{{y:{fmt}}}<extra>{name}</extra>"})
        if best is not None:
            shapes.append({"type": "line", "xref": xaxis, "yref": f"{yaxis} domain", "x0": float(epoch[best]),
                           "x1": float(epoch[best]), "y0": 0, "y1": 1,
                           "line": {"color": BEST_COLOR, "width": 1, "dash": "dash"}})
    if not data:
        return None
    subtitle = f"{len(rows)} epoch{'s' if len(rows) != 1 else ''}"
    if best is not None:
        data.append({"type": "scatter", "mode": "markers", "x": [float(epoch[best])], "y": [float(val_acc[best])],
                     "xaxis": "x2", "yaxis": "y2", "name": f"best validation accuracy (epoch {epoch[best]:g})",
                     "marker": {"symbol": "star", "size": 15, "color": BEST_COLOR},
                     "hovertemplate": "best: epoch %{x}<br>val_accuracy %{y:.2%}<extra></extra>"})
        subtitle += f"; best validation accuracy {val_acc[best]:.2%} at epoch {epoch[best]:g}"
    whole = epoch[np.isfinite(epoch)]
    ticks = {"dtick": 1} if whole.size and whole.max() - whole.min() <= 15 else {}
    layout = base_layout("Learning curves", subtitle, legend=[t["name"] for t in data if t.get("showlegend", True)],
                         shapes=shapes,
                         xaxis=axis("epoch", domain=[0, 0.46], anchor="y", **ticks),
                         yaxis=axis("loss", anchor="x"),
                         xaxis2=axis("epoch", domain=[0.54, 1], anchor="y2", **ticks),
                         yaxis2=axis("accuracy", anchor="x2", tickformat=".1%"))
    return figure(data, layout)


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
        y_axis["type"] = "log"
    if stat in FRACTION_STATS:
        y_axis.update(tickformat=".0%", rangemode="tozero")
    epochs = [e for s in series for e in s["epochs"]]
    ticks = {"dtick": 1} if epochs and max(epochs) - min(epochs) <= 15 else {}
    layout = base_layout(stat, DESCRIPTIONS.get(stat, ""), height=360, legend=[t["name"] for t in data],
                         xaxis=axis("epoch", **ticks), yaxis=y_axis)
    return figure(data, layout)
