"""One run's charts, described from its rows: learning curves, its other metrics, per-layer diagnostics.

``metrics.csv``'s rows ({column: value}, one per row) and ``diagnostics.csv``'s
(epoch, layer, name, stat, value) are what every chart here starts from: the
run's PNGs (``tracking/plots.py``) and the dashboard's run page
(``ui/run_charts.py``) draw the same descriptions. Curves are drawn against the
run's steps, else its epochs; a curve of more than MAX_POINTS points is drawn
from the lowest and highest point of each of MAX_POINTS/2 equal stretches of
rows (see :func:`downsample`).
"""

from __future__ import annotations

import math

import numpy as np

from ..tracking.health import RULES
from ..tracking.records import NOT_CURVES
from ..tracking.run import AXES
from .spec import (BEST_COLOR, PALETTE, TRAIN_COLOR, VAL_COLOR, Axis, Chart, Field, Hover, Line, Note, Panel, Series,
                   viridis)

MAX_POINTS = 2000  # points drawn per curve at most: a 100,000-step run's page stays quick
FRACTION_STATS = ("dead_fraction", "saturated_fraction")
# The statistics the trainer records, in the order a page shows them; others follow by name.
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_norm", "update_ratio")
DESCRIPTIONS = {
    "act_mean": "mean activation", "act_std": "activation standard deviation",
    "dead_fraction": "fraction of units that never fire", "saturated_fraction": "fraction of saturated units",
    "grad_norm": "gradient norm", "weight_norm": "weight norm", "update_ratio": "update / weight norm ratio",
}
X = Field("x")


def number(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([number(row.get(name)) for row in rows], dtype=float)


def x_axis(rows: list[dict]) -> tuple[str, np.ndarray]:
    """What a run's curves are drawn against: its steps if it logged any, else its
    epochs, else the row numbers (from 1)."""
    for name in AXES:
        x = column(rows, name)
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


def _label(name: str, kind: str) -> tuple[str, str | None]:
    """The legend name and colour of a column: the trainer's train_* and val_* are
    "train" and "validation" in both panels."""
    if name == f"train_{kind}":
        return "train", TRAIN_COLOR
    if name == f"val_{kind}":
        return "validation", VAL_COLOR
    return name, None


def _curve(x, y, name, color, x_name, column_name, fmt, show) -> Series:
    return Series(x, y, name, color=color, width=2 if len(x) <= 2000 else 1.2,
                  marker="circle" if len(x) <= 60 else None, size=5, legend=show, group=name,
                  hover=Hover((x_name, " ", X, "\n", column_name, " ", Field("y", fmt)), name=name))


def _subtitle(count: int, x_name: str, drawn: int, total: int, last: float | None = None) -> str:
    text = (f"{count:,} row{'s' if count != 1 else ''} up to step {last:g}" if x_name == "step" and last is not None
            else f"{count:,} {x_name}{'s' if count != 1 else ''}")
    if drawn < total:
        text += f"; {drawn:,} of {total:,} points drawn (each curve: the lowest and highest point of each stretch)"
    return text


def is_fraction(values) -> bool:
    """Accuracies stored as fractions (a table of percents is drawn as it is)."""
    values = values[np.isfinite(values)]
    return values.size == 0 or bool(values.min() >= 0 and values.max() <= 1)


def learning_curves(rows: list[dict], title: str = "Learning curves") -> Chart | None:
    """Losses and accuracies against the steps (or epochs), train and validation
    side by side; the best validation-accuracy point marked on both."""
    if not rows:
        return None
    columns = list(dict.fromkeys(k for row in rows[:1] for k in row))
    x_name, x = x_axis(rows)
    parsed: dict[str, np.ndarray] = {}

    def values(name: str) -> np.ndarray:  # each column parsed once: a long run has 100,000 rows
        if name not in parsed:
            parsed[name] = column(rows, name)
        return parsed[name]

    val_acc = values("val_accuracy")
    best = int(np.nanargmax(val_acc)) if np.isfinite(val_acc).any() else None
    panels, seen, drawn, total = [], set(), 0, 0
    kinds = [(kind, _names(columns, "loss" if kind == "loss" else "acc")) for kind in ("loss", "accuracy")]
    kinds = [(kind, names) for kind, names in kinds if names]
    both = len(kinds) == 2
    accuracy_panel = None
    for kind, names in kinds:
        percent = kind == "accuracy" and is_fraction(np.concatenate([values(n) for n in names]))
        fmt = ".2%" if percent else ".4g"
        marks = []
        for k, name in enumerate(names):
            y = values(name)
            if not np.isfinite(y).any():
                continue
            label, color = _label(name, kind)
            px, py = downsample(x, y)
            drawn, total = drawn + len(px), total + int(np.sum(np.isfinite(x) & np.isfinite(y)))
            marks.append(_curve(px, py, label, color or PALETTE[(k + 2) % len(PALETTE)], x_name, name, fmt,
                                label not in seen))
            seen.add(label)
        panel = Panel(Axis(x_name, whole=True), Axis(kind, percent=percent), marks, title=kind.capitalize())
        if best is not None and (kind == "accuracy" or both):
            panel.lines.append(Line(x=float(x[best]), color=BEST_COLOR))
        if kind == "accuracy":
            accuracy_panel = panel
        panels.append(panel)
    if not any(panel.marks for panel in panels):
        return None
    count = int(np.sum(np.isfinite(x))) if x_name != "epoch" else len(rows)
    subtitle = _subtitle(count, x_name, drawn, total, float(np.nanmax(x)) if np.isfinite(x).any() else None)
    train_acc = values("train_accuracy")
    if np.isfinite(train_acc).any() and is_fraction(train_acc):
        subtitle += f"; final train accuracy {train_acc[np.isfinite(train_acc)][-1]:.2%}"
    if best is not None and accuracy_panel is not None:
        percent = accuracy_panel.y.percent
        value = f"{val_acc[best]:.2%}" if percent else f"{val_acc[best]:.4g}"
        accuracy_panel.marks.append(Series(
            [float(x[best])], [float(val_acc[best])], f"best validation accuracy ({x_name} {x[best]:g})",
            color=BEST_COLOR, width=0, marker="star", size=15, on_top=True,
            hover=Hover((f"best: {x_name} ", X, "\nval_accuracy ", Field("y", ".2%" if percent else ".4g")))))
        accuracy_panel.notes.append(Note(float(x[best]), float(val_acc[best]), value, color=BEST_COLOR,
                                         offset=(0, -18), size=11))
        subtitle += f"; best validation accuracy {value} at {x_name} {x[best]:g}"
    return Chart(title, panels, subtitle, size=(11, 4.6) if both else (7, 4.6))


def other_metrics(rows: list[dict]) -> Chart | None:
    """The columns a script logged that are neither losses nor accuracies, one line each."""
    if not rows:
        return None
    columns = [c for c in dict.fromkeys(k for row in rows[:1] for k in row)
               if c not in NOT_CURVES and "loss" not in c and "acc" not in c]
    x_name, x = x_axis(rows)
    marks, drawn, total = [], 0, 0
    for k, name in enumerate(columns):
        y = column(rows, name)
        if not np.isfinite(y).any():
            continue
        px, py = downsample(x, y)
        drawn, total = drawn + len(px), total + int(np.sum(np.isfinite(x) & np.isfinite(y)))
        marks.append(_curve(px, py, name, PALETTE[k % len(PALETTE)], x_name, name, ".4g", True))
    if not marks:
        return None
    count = int(np.sum(np.isfinite(x))) if x_name != "epoch" else len(rows)
    return Chart("Other metrics", [Panel(Axis(x_name, whole=True), Axis("value"), marks)],
                 _subtitle(count, x_name, drawn, total, float(np.nanmax(x))), height=360)


# ----------------------------------------------------------------- diagnostics


def series_label(layer, name: str) -> str:
    """'3.W' for a parameter (its name starts with its layer), '2 relu' for a layer's activations."""
    if layer is None:
        return name
    return name if name.startswith(f"{layer}.") else f"{layer} {name}".strip()


def _stat_rank(stat: str) -> tuple:
    return (STATS.index(stat), "") if stat in STATS else (len(STATS), stat)


def _layer_rank(layer) -> tuple:
    if layer is None:
        return (2, 0, "")
    return (0, layer, "") if isinstance(layer, (int, float)) else (1, 0, str(layer))


def _layer(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None if value is None or value == "" else str(value)


def diagnostic_series(rows: list[dict]) -> list[dict]:
    """diagnostics.csv's rows as series, one per (stat, layer, name), ordered by STATS then layer:
    ``{"stat", "layer", "name", "label", "epochs", "values"}`` (values None where missing)."""
    series: dict[tuple, dict] = {}
    for row in rows:
        epoch, value = number(row.get("epoch")), number(row.get("value"))
        if not math.isfinite(epoch):
            continue
        layer, name, stat = _layer(row.get("layer")), str(row.get("name", "")), str(row.get("stat", ""))
        entry = series.setdefault((stat, layer, name), {"stat": stat, "layer": layer, "name": name,
                                                        "label": series_label(layer, name), "points": {}})
        entry["points"][int(epoch) if epoch.is_integer() else epoch] = value if math.isfinite(value) else None
    ordered = sorted(series.values(), key=lambda s: (_stat_rank(s["stat"]), _layer_rank(s["layer"]), s["name"]))
    out = []
    for entry in ordered:
        points = sorted(entry.pop("points").items())
        out.append(dict(entry, epochs=[e for e, _ in points], values=[v for _, v in points]))
    return out


def diagnostic_panel(stats: tuple, series: list[dict], title: str = "", empty: str = "",
                     warn: float | None = None) -> Panel:
    """The ``stats`` of these series over the epochs, a line per layer (or parameter), earlier layers darker;
    fractions on a percent axis from 0, other statistics on a log axis where they span decades.
    ``warn``: a reference line at a rule's threshold."""
    series = [s for s in series if s["stat"] in stats and any(v is not None for v in s["values"])]
    fractions = all(stat in FRACTION_STATS for stat in stats)
    values = np.array([v for s in series for v in s["values"] if v is not None], dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    log = not fractions and positive.size >= 2 and positive.max() / positive.min() >= 10  # a decade or more
    fmt = ".2%" if fractions else ".4g"
    marks = []
    for k, s in enumerate(series):
        epochs = s["epochs"]
        marks.append(Series(epochs, [math.nan if v is None else v for v in s["values"]], s["label"],
                            color=viridis(0.85 * k / max(len(series) - 1, 1)), width=1.6,
                            dash="dash" if s["stat"] == "saturated_fraction" else "solid",
                            marker="circle" if len(epochs) <= 40 else None, size=4,
                            hover=Hover(("epoch ", X, "\n", s["stat"], " ", Field("y", fmt)), name=s["label"])))
    y_title = title or stats[0]
    panel = Panel(Axis("epoch", whole=True),
                  Axis(f"{y_title}{' (log scale)' if log else ''}", log=log, percent=fractions, zero=fractions),
                  marks, empty="" if marks else empty)
    if warn is not None:
        panel.lines.append(Line(y=warn, color="#d62728", dash="dot", width=1.2,
                                name=f"warning above {warn:.0%}" if fractions else f"warning above {warn:g}"))
    return panel


def diagnostic_chart(stat: str, series: list[dict]) -> Chart | None:
    """One statistic over the epochs, a line per layer (or parameter)."""
    panel = diagnostic_panel((stat,), series)
    if not panel.marks:
        return None
    return Chart(stat, [panel], DESCRIPTIONS.get(stat, ""), height=360)


def diagnostics_overview(rows: list[dict], title: str = "Per-layer diagnostics") -> Chart:
    """Three panels: dead (ReLU) and saturated (sigmoid, tanh) fractions, the weights' gradient norms and
    the weights' update ratios, with the thresholds of the rules (nnexp/tracking/health.py)."""
    series = diagnostic_series(rows)
    weights = [s for s in series if s["name"].endswith(".W")]
    epochs = {e for s in series for e in s["epochs"]}
    units = diagnostic_panel(FRACTION_STATS, series, "fraction of the layer's units",
                             "no ReLU, LeakyReLU,\nsigmoid or tanh layer", RULES["dead_units"].threshold)
    units.title = "Dead (ReLU, solid) / saturated (sigmoid, tanh, dashed)"
    nothing = "no dense or conv weights"
    grads = diagnostic_panel(("grad_norm",), weights, "L2 norm", nothing)
    grads.title = "Gradient norm of the weights"
    updates = diagnostic_panel(("update_ratio",), weights, "|last step's change| / |weights|", nothing,
                               RULES["large_updates"].threshold)
    updates.title = "Update ratio of the weights"
    return Chart(title, [units, grads, updates], f"{len(epochs)} epoch{'s' if len(epochs) != 1 else ''}",
                 size=(15, 5.6))
