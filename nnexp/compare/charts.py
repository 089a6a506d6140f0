"""Interactive comparison charts: plotly.js figures as plain JSON-ready dicts.

`comparison_charts` returns the charts that the selected runs support, each
``{"id", "title", "figure": {"data": [...], "layout": {...}}}``, ready for
``Plotly.newPlot(div, figure.data, figure.layout)``: the learning curves
grouped over seeds with a 95% band, the metric against each varied
parameter, a heatmap of a two-parameter grid, parallel coordinates, and for
a sweep the best value so far and parameter importance. The HTML report of
``nnexp compare --report`` and the dashboard (``nnexp ui``) draw these same
figures; ``layout.py`` decides what they show, as it does for the PNG plots.

The figures are written as JSON by hand (plotly.js's figure format), not
with plotly's Python API: building a dict needs no import, and the
only thing nnexp takes from the ``plotly`` package is its bundled
``plotly.min.js`` (see :func:`plotly_js_path`).

Every text that comes from a run or a sweep (names, parameter names and
values, metric names, tags) goes through :func:`plot_text`, in labels,
legends, titles and hover templates alike: plotly.js reads a few HTML-like
tags in its texts (``<a href>`` makes a link) and ``%{...}`` in its
templates, so ``<``, ``>``, ``&`` and ``%`` are written as entities and
show as themselves.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import math
import re
import textwrap
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import NnexpError
from ..tracking.records import read_metric_rows
from ..tracking.run import CURVE_COLUMNS, DamagedRun
from .fmt import format_cell
from .layout import (HIGHLIGHTED_GROUPS, MAX_BACKGROUND_CURVES, MAX_HEATMAP_VALUES, MAX_LABELLED_GROUPS,
                     MAX_RUNS_PER_BAND, abbreviate, check_arguments, clean_frame, curve_points, grid_categories,
                     Groups, is_fraction, mean_band, metric_name, panel_column, parallel_axes, param_series,
                     running_best, sample, short_names, trial_order, value_label)
from .pareto import pareto_front
from .stats import importance, summarize

logger = logging.getLogger(__name__)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")  # matplotlib's tab10, so that the PNG plots and the charts agree
BEST_COLOR = "#2ca02c"
PRUNED_COLOR = "#8c8c8c"
GREY = "rgba(140,140,140,0.35)"
# viridis at nine evenly spaced points, interpolated linearly in between
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
COLOR_BINS = 16  # parallel coordinates: lines are drawn in this many colours, one trace each
WIDE = ("curves", "parallel")  # charts that need a page's full width


# ----------------------------------------------------------------- shared by every figure


def plotly_js_path() -> Path:
    """The ``plotly.min.js`` bundled with the ``plotly`` Python package (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise NnexpError("the 'plotly' package is missing (it ships plotly.min.js): pip install plotly")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise NnexpError(f"the 'plotly' package has no bundled plotly.min.js at {path}; reinstall plotly")
    return path


def plot_text(value) -> str:
    """Text for a plotly.js label, title or hover template: ``<``, ``>``, ``&`` and ``%``
    as entities, so that they show as written (no markup, no template field)."""
    return html.escape(str(value), quote=False).replace("%", "&#37;")


def finite_list(values) -> list:
    """Floats as a JSON-ready list, None where a value is missing or not finite (a gap in a line)."""
    out = []
    for v in np.asarray(values, dtype=float).tolist():
        out.append(v if math.isfinite(v) else None)
    return out


def base_layout(title: str, subtitle: str = "", height: int = 440, legend: list[str] = (), **extra) -> dict:
    """The look every chart shares; ``extra`` keys are added (and replace defaults).

    ``legend``: the legend's entries, which go below the plot (the chart grows
    by their rows, so that long labels never squeeze the plot).
    """
    rows = legend_rows(legend)
    layout = {
        "title": {"text": plot_text(title), "font": {"size": 15}, "x": 0.01, "xanchor": "left",
                  "subtitle": {"text": plot_text(subtitle), "font": {"size": 12, "color": "#59636e"}}},
        "height": height + 20 * rows, "margin": {"l": 64, "r": 24, "t": 78 if subtitle else 56, "b": 60 + 20 * rows},
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12},
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff", "hovermode": "closest",
        "uirevision": "keep",  # a redraw with new data (a live page) keeps the reader's zoom and hidden series
        "showlegend": bool(rows),
        "legend": {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left",
                   "font": {"size": 11}},
    }
    layout.update(extra)
    return layout


def legend_rows(labels) -> int:
    """Rows a horizontal legend of these labels takes: long labels one a row, short ones several."""
    labels = [str(label) for label in labels]
    if not labels:
        return 0
    per_row = 1 if max(len(label) for label in labels) > 45 else 3 if max(len(label) for label in labels) > 15 else 5
    return math.ceil(len(labels) / per_row)


def axis(title: str = "", **extra) -> dict:
    """An axis with a light grid; ``extra`` keys are added."""
    spec = {"title": {"text": plot_text(title)}, "gridcolor": "#e5e7eb", "zeroline": False, "showline": True,
            "linecolor": "#9aa1a9", "automargin": True}
    spec.update(extra)
    return spec


def value_format(metric: str, values) -> str:
    """A d3 format for a metric's values: percent for accuracies stored as fractions."""
    return ".2%" if is_fraction(metric, values) else ".4g"


def metric_axis(metric: str, values, title: str | None = None, **extra) -> dict:
    spec = axis(metric_name(metric) if title is None else title, **extra)
    if is_fraction(metric, values):
        spec["tickformat"] = ".1%"
    return spec


def viridis(fraction: float) -> str:
    """The viridis colour at ``fraction`` in [0, 1], as #rrggbb."""
    f = min(1.0, max(0.0, float(fraction))) * (len(VIRIDIS) - 1)
    i = min(int(f), len(VIRIDIS) - 2)
    t = f - i
    low, high = VIRIDIS[i], VIRIDIS[i + 1]
    rgb = [round(int(low[k:k + 2], 16) * (1 - t) + int(high[k:k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def rgba(color: str, alpha: float) -> str:
    return f"rgba({int(color[1:3], 16)},{int(color[3:5], 16)},{int(color[5:7], 16)},{alpha})"


def figure(data: list, layout: dict) -> dict:
    return {"data": data, "layout": layout}


# ----------------------------------------------------------------- curves from run folders


def read_curves(paths: Mapping[str, str]) -> dict[str, dict[str, list[float]]]:
    """{run id: {column: values}} from the metrics.csv of each run folder in ``paths``
    (run id -> folder); a run without a readable file is left out."""
    curves = {}
    for run_id, path in paths.items():
        try:
            rows = read_metric_rows(path, run_id, columns=("epoch",) + CURVE_COLUMNS)
        except DamagedRun:
            continue
        if rows:
            columns = {c for row in rows for c in row}
            curves[run_id] = {c: [row.get(c, math.nan) for row in rows] for c in columns}
    return curves


# ----------------------------------------------------------------- entry point


def comparison_charts(runs: pd.DataFrame, varied: list[str], metric: str, goal: str, sweep: bool = False,
                      curves: Mapping | None = None, objectives: list[tuple[str, str]] = ()) -> list[dict]:
    """The interactive charts for a set of runs, in display order.

    Args:
        runs: the pandas view of runs (``records_frame``; id, trial, status,
            path, param.*, metric.*), already filtered and sorted.
        varied: the param.* columns that differ, the seed excepted.
        metric: the metric.* column compared; goal: "maximize" or "minimize".
        sweep: also the best value so far and parameter importance.
        curves: run id -> metrics.csv (a DataFrame, or {column: values}); None:
            read from the ``path`` column, only for the runs a chart shows.
        objectives: [(metric column, goal)] of a multi-objective sweep: also the
            runs on the first two and their Pareto front.

    A chart the data cannot support is left out; one that fails to build is
    left out with a logged warning, so odd data costs a chart, not the page.
    """
    check_arguments(runs, varied, metric, goal)
    if len(runs) == 0:
        return []
    frame = clean_frame(runs, varied, metric)
    names = short_names(varied)
    groups = Groups(frame, varied, metric, goal, names)
    planned: list[tuple[str, str, Callable[[], dict | None]]] = [
        ("curves", "Learning curves", lambda: _learning_curves(frame, curves, groups))]
    for column in varied:
        planned.append((f"metric-vs-{column.removeprefix('param.')}", f"{metric_name(metric)} vs {names[column]}",
                        lambda column=column: _metric_vs_param(groups, column)))
    planned.append(("heatmap", f"Heatmap of {metric_name(metric)}", lambda: _heatmap(groups)))
    planned.append(("parallel", "Parallel coordinates", lambda: _parallel_coordinates(groups)))
    if sweep:
        planned.append(("best-so-far", "Best so far", lambda: _best_so_far(frame, metric, goal)))
        planned.append(("importance", "Parameter importance",
                        lambda: _importance(frame, varied, names, metric)))
    if len(objectives) >= 2:
        planned.append(("pareto", "Pareto front", lambda: _pareto(runs, list(objectives))))
    charts = []
    for chart_id, title, build in planned:
        try:
            fig = build()
        except Exception as exc:  # noqa: BLE001 -- one odd chart must not cost the others
            logger.warning("skipped chart %s: %s: %s", chart_id, type(exc).__name__, exc, exc_info=True)
            fig = None
        if fig is not None:
            charts.append({"id": chart_id, "title": title, "figure": fig, "wide": chart_id in WIDE})
    return charts


# ----------------------------------------------------------------- learning curves


def _learning_curves(frame: pd.DataFrame, curves: Mapping | None, groups: Groups) -> dict | None:
    """Validation accuracy and loss per epoch: every group labelled, or the best few over grey runs."""
    ids = frame["id"].astype(str).to_numpy()
    table = groups.table
    few = len(table) <= MAX_LABELLED_GROUPS
    shown = list(groups.ranked if few else groups.ranked[:HIGHLIGHTED_GROUPS])
    background = np.array([], dtype=np.int64) if few else sample(np.arange(len(frame)), MAX_BACKGROUND_CURVES)
    if curves is None:
        wanted = set(background.tolist())
        for group in shown:
            wanted.update(groups.members(group)[:MAX_RUNS_PER_BAND].tolist())
        paths = frame["path"] if "path" in frame.columns else pd.Series([None] * len(frame))
        curves = read_curves({ids[i]: paths.iloc[i] for i in sorted(wanted) if isinstance(paths.iloc[i], str)})
    curves = {str(k): v for k, v in curves.items()}
    with_curve = np.array([run_id in curves for run_id in ids], dtype=bool)
    if not with_curve.any():
        return None
    columns = {kind: panel_column(curves, ids[with_curve], kind) for kind in ("accuracy", "loss")}
    if not any(columns.values()):
        return None

    data: list[dict] = []
    layout_axes: dict = {}
    sampled = False
    for panel, kind in enumerate(("accuracy", "loss")):
        xaxis, yaxis = ("x", "y") if panel == 0 else ("x2", "y2")
        column = columns[kind]
        split = "validation" if column and column.startswith("val_") else "training"
        domain = [0.0, 0.46] if panel == 0 else [0.54, 1.0]
        layout_axes[f"xaxis{'' if panel == 0 else '2'}"] = axis("epoch", domain=domain, anchor=yaxis)
        if column is None:
            layout_axes[f"yaxis{'' if panel == 0 else '2'}"] = axis(f"no {kind} recorded", anchor=xaxis)
            continue
        if not few:
            rows = [i for i in background if with_curve[i]]
            sampled |= len(rows) < int(with_curve.sum())
            xs, ys = [], []
            for i in rows:
                points = curve_points(curves[ids[i]], column)
                if points:
                    xs += points[0].tolist() + [None]
                    ys += finite_list(points[1]) + [None]
            if xs:
                data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "xaxis": xaxis, "yaxis": yaxis,
                             "line": {"color": GREY, "width": 0.7}, "hoverinfo": "skip", "name": "every run",
                             "legendgroup": "every run", "showlegend": panel == 0})
        values = []
        for rank, group in enumerate(shown):
            members = [i for i in groups.members(group) if with_curve[i]]
            sampled |= len(members) > MAX_RUNS_PER_BAND
            pieces = [c for c in (curve_points(curves[ids[i]], column) for i in members[:MAX_RUNS_PER_BAND]) if c]
            if not pieces:
                continue
            epoch, mean, low, high, _ = mean_band(pieces)
            color = PALETTE[rank % len(PALETTE)]
            label = plot_text(groups.curve_label(group, rank, few))
            key = f"group {group}"
            if np.isfinite(low).any():
                band = {"type": "scatter", "mode": "lines", "x": epoch.tolist(), "xaxis": xaxis, "yaxis": yaxis,
                        "line": {"width": 0, "color": color}, "hoverinfo": "skip", "showlegend": False,
                        "legendgroup": key}
                data.append(dict(band, y=finite_list(low)))
                data.append(dict(band, y=finite_list(high), fill="tonexty",
                                 fillcolor=rgba(color, 0.2 if len(shown) <= 3 else 0.12)))
            fmt = value_format(column, mean)
            data.append({"type": "scatter", "mode": "lines+markers" if epoch.size <= 30 else "lines",
                         "x": epoch.tolist(), "y": finite_list(mean), "xaxis": xaxis, "yaxis": yaxis,
                         "name": label, "legendgroup": key, "showlegend": panel == 0,
                         "line": {"color": color, "width": 2}, "marker": {"size": 5},
                         "hovertemplate": f"epoch %{{x}}<br>{plot_text(column)} %{{y:{fmt}}}"})
            values.append(mean)
        merged = np.concatenate(values) if values else np.array([])
        y_axis = metric_axis(column, merged, f"{split} {kind}", anchor=xaxis)
        if kind == "loss":
            finite = merged[np.isfinite(merged)]
            if finite.size >= 4 and finite.max() > 3 * np.percentile(finite, 95) > 0:  # a diverged run
                y_axis["range"] = [float(finite.min()) * 0.95, 1.5 * float(np.percentile(finite, 95))]
        layout_axes[f"yaxis{'' if panel == 0 else '2'}"] = y_axis
    if not data:
        return None
    epochs = [x for t in data for x in t["x"] if x is not None]
    if epochs and max(epochs) - min(epochs) <= 15:  # whole epochs: one tick each, no 1.5
        for name in ("xaxis", "xaxis2"):
            layout_axes[name]["dtick"] = 1
    title, _, subtitle = groups.curves_title(few, sampled).partition("  —  ")
    layout = base_layout(title, subtitle, legend=[t["name"] for t in data if t.get("showlegend")], **layout_axes)
    return figure(data, layout)


# ----------------------------------------------------------------- metric vs a param


def _hover(groups: Groups, group: int) -> str:
    """A group's hover text (escaped): its parameters, the metric's mean, CI and n, and the run if one."""
    row = groups.table.loc[group]
    score = format_cell(groups.metric, float(row["mean"])) if np.isfinite(row["mean"]) else "-"
    ci = ""
    if np.isfinite(row["ci95"]):
        ci = f" ± {format_cell(groups.metric + ' ci95', float(row['ci95']))}"
    lines = [groups.label(group), f"{metric_name(groups.metric)} {score}{ci} (n={int(row['n'])})"]
    if row["runs"] == 1:
        lines.append(f"run {groups.frame['id'].iloc[groups.members(group)[0]]}")
    return "<br>".join(plot_text(line) for line in lines)


def _hover_texts(groups: Groups, positions) -> list[str]:
    return [_hover(groups, int(g)) for g in positions]


def _metric_vs_param(groups: Groups, column: str) -> dict | None:
    """Group means against one param with 95% CI bars; one line per setting of the others if few."""
    ps = param_series(groups, column)
    if ps is None:
        return None
    table, scale, x, y, error, keep, others, best = (groups.table, ps.scale, ps.x, ps.y, ps.error, ps.keep,
                                                      ps.others, ps.best)
    metric = groups.metric
    data, stars = [], []
    if ps.lines:
        legend = abbreviate([", ".join(f"{groups.names[c]}={value_label(table[c].iloc[g], 200)}" for c in others)
                             for g in ps.firsts()], 70)
        for k, _, at in ps.line_members():
            shift = ps.shift(k)
            data.append({"type": "scatter", "mode": "lines+markers", "x": finite_list(x[at] + shift),
                         "y": finite_list(y[at]), "name": plot_text(legend[k] if others else metric_name(metric)),
                         "showlegend": bool(others), "line": {"color": PALETTE[k % len(PALETTE)], "width": 1.6},
                         "marker": {"size": 7},
                         "error_y": {"type": "data", "array": finite_list(error[at]), "visible": True, "width": 4},
                         "text": _hover_texts(groups, at), "hovertemplate": "%{text}<extra></extra>"})
            if best in at:
                stars.append(_star(x[best] + shift, y[best]))
    else:  # many settings of the other params (random search): points, no lines
        jitter = np.zeros(x.size) if scale.numeric else np.random.default_rng(8675309).uniform(-0.25, 0.25, x.size)
        at = np.flatnonzero(keep)
        data.append({"type": "scatter", "mode": "markers", "x": finite_list((x + jitter)[at]),
                     "y": finite_list(y[at]), "name": "one configuration",
                     "marker": {"size": 6, "color": PALETTE[0], "opacity": 0.55},
                     "error_y": {"type": "data", "array": finite_list(error[at]), "visible": bool(error[at].any()),
                                 "width": 2, "thickness": 1},
                     "text": _hover_texts(groups, at), "hovertemplate": "%{text}<extra></extra>"})
        marginal = _marginal_means(x[keep], y[keep], metric)
        if marginal:
            data.append(marginal)
        if keep[best]:
            stars.append(_star((x + jitter)[best], y[best]))
    data += stars
    name = groups.names[column]
    x_axis = axis(f"{name}{' (log scale)' if scale.log else ''}")
    if scale.numeric:
        if scale.log:
            x_axis["type"] = "log"
        distinct = np.unique(x[keep])
        if 1 <= distinct.size <= 8:
            x_axis.update(tickvals=distinct.tolist(), ticktext=[plot_text(value_label(float(v))) for v in distinct])
    else:
        labels = abbreviate(scale.categories, 40)
        x_axis.update(tickvals=list(range(len(labels))), ticktext=[plot_text(label) for label in labels],
                      range=[-0.6, len(labels) - 0.4])
    note = "mean over seeds, bars: 95% CI" if groups.any_repeats else "one run per point"
    shown = [t["name"] for t in data if t.get("showlegend", True)]
    layout = base_layout(f"{metric_name(metric)} vs {name}", f"{note}; star: best ({groups.goal})", legend=shown,
                         xaxis=x_axis, yaxis=metric_axis(metric, np.r_[y[keep] - error[keep], y[keep] + error[keep]]))
    return figure(data, layout)


def _marginal_means(x: np.ndarray, y: np.ndarray, metric: str, max_values: int = 20) -> dict | None:
    """Mean and 95% CI of y at each distinct x, when x takes few values (a grid or a category)."""
    distinct = np.unique(x)
    if not 1 <= distinct.size <= max_values or distinct.size == x.size:
        return None
    stats = [summarize(y[x == value]) for value in distinct]
    mean = np.array([s["mean"] for s in stats])
    half = np.nan_to_num(np.array([s["ci95"] for s in stats]), nan=0.0)
    fmt = value_format(metric, mean)
    return {"type": "scatter", "mode": "lines+markers", "x": distinct.tolist(), "y": finite_list(mean),
            "name": "mean over the other parameters (95% CI)", "line": {"color": "#111111", "width": 1.8},
            "marker": {"symbol": "diamond", "size": 8, "color": "#111111"},
            "error_y": {"type": "data", "array": finite_list(half), "visible": True, "width": 5},
            "hovertemplate": f"%{{x}}: mean %{{y:{fmt}}}<extra></extra>"}


def _star(x: float, y: float) -> dict:
    return {"type": "scatter", "mode": "markers", "x": [float(x)], "y": [float(y)], "name": "best",
            "marker": {"symbol": "star", "size": 16, "color": BEST_COLOR, "line": {"color": "#1b5e20", "width": 1}},
            "hoverinfo": "skip"}


# ----------------------------------------------------------------- heatmap


def _heatmap(groups: Groups) -> dict | None:
    """Mean metric per cell of a two-param grid, annotated; only when exactly two params vary."""
    if len(groups.varied) != 2:
        return None
    table = groups.table
    col_x, col_y = groups.varied
    cats, index = {}, {}
    for column in (col_x, col_y):
        placed = grid_categories(table[column])
        if placed is None or not 1 <= len(placed[0]) <= MAX_HEATMAP_VALUES:
            return None
        cats[column], index[column] = placed
    grid = np.full((len(cats[col_y]), len(cats[col_x])), np.nan)
    cell = (pd.DataFrame({"y": index[col_y], "x": index[col_x], "m": table["mean"].to_numpy()}).dropna()
            .groupby(["y", "x"])["m"].mean())
    for (r, c), value in cell.items():
        grid[int(r), int(c)] = value
    if not np.isfinite(grid).any():
        return None
    metric = groups.metric
    text = [[format_cell(metric, float(v)) if np.isfinite(v) else "-" for v in row] for row in grid]
    name_x, name_y = groups.names[col_x], groups.names[col_y]
    labels_x = [plot_text(label) for label in abbreviate(cats[col_x], 40)]
    labels_y = [plot_text(label) for label in abbreviate(cats[col_y], 40)]
    trace = {"type": "heatmap", "z": [finite_list(row) for row in grid], "x": list(range(len(labels_x))),
             "y": list(range(len(labels_y))), "text": text, "texttemplate": "%{text}", "customdata":
             [[[labels_x[c], labels_y[r]] for c in range(len(labels_x))] for r in range(len(labels_y))],
             "colorscale": "Viridis", "reversescale": groups.goal == "minimize", "hoverongaps": False,
             "colorbar": {"title": {"text": f"mean {plot_text(metric_name(metric))}"},
                          "tickformat": ".1%" if is_fraction(metric, grid) else ""},
             "hovertemplate": (f"{plot_text(name_x)}=%{{customdata[0]}}<br>{plot_text(name_y)}=%{{customdata[1]}}"
                               f"<br>{plot_text(metric_name(metric))} %{{text}}<extra></extra>")}
    note = "mean over seeds; " if groups.any_repeats else ""
    layout = base_layout(f"{metric_name(metric)} by {name_x} and {name_y}", f"{note}brighter is better",
                         height=max(360, 44 * len(labels_y) + 180),
                         xaxis=axis(name_x, tickvals=list(range(len(labels_x))), ticktext=labels_x, showgrid=False),
                         yaxis=axis(name_y, tickvals=list(range(len(labels_y))), ticktext=labels_y, showgrid=False,
                                    autorange="reversed"))
    return figure([trace], layout)


# ----------------------------------------------------------------- parallel coordinates


def _parallel_coordinates(groups: Groups) -> dict | None:
    """One vertical axis per varied param plus the metric; one line per group, coloured by the metric.

    Drawn as ordinary lines (SVG), not plotly's WebGL ``parcoords``, so that
    the chart needs no graphics acceleration; hovering a point names its group.
    """
    axes = parallel_axes(groups)
    if axes is None:
        return None
    columns, points, ticks, mean = axes   # points (G, P+1)
    metric = groups.metric
    finite = mean[np.isfinite(mean)]
    low, high = float(finite.min()), float(max(finite.max(), finite.min() + 1e-12))
    better = (mean - low) / (high - low) if groups.goal == "maximize" else (high - mean) / (high - low)
    many = len(points) > 300
    texts = _hover_texts(groups, range(len(points)))
    data = []
    bins = np.minimum(np.floor(np.nan_to_num(better) * COLOR_BINS), COLOR_BINS - 1).astype(int)
    for b in range(COLOR_BINS + 1):  # bin COLOR_BINS: groups without a metric, grey
        if b < COLOR_BINS:
            at = np.flatnonzero(np.isfinite(mean) & (bins == b))
            color = viridis((b + 0.5) / COLOR_BINS)
        else:
            at = np.flatnonzero(~np.isfinite(mean))
            color = "#b3b3b3"
        if at.size == 0:
            continue
        xs, ys, hover = [], [], []
        for g in at:
            xs += list(range(points.shape[1])) + [None]
            ys += finite_list(points[g]) + [None]
            hover += [texts[g]] * points.shape[1] + [""]
        data.append({"type": "scatter", "mode": "lines+markers", "x": xs, "y": ys, "text": hover,
                     "hovertemplate": "%{text}<extra></extra>", "showlegend": False,
                     "line": {"color": color, "width": 0.7 if many else 1.6},
                     "marker": {"size": 3 if many else 5, "color": color}, "opacity": 0.5 if many else 0.9})
    data.append({"type": "scatter", "mode": "markers", "x": [0, 0], "y": [-5, -5], "hoverinfo": "skip",
                 "showlegend": False, "marker": {
                     "color": [low, high], "colorscale": "Viridis", "reversescale": groups.goal == "minimize",
                     "showscale": True, "size": 0.1,
                     "colorbar": {"title": {"text": f"{plot_text(metric_name(metric))} (brighter is better)"},
                                  "tickformat": ".1%" if is_fraction(metric, finite) else ""}}})
    shapes = [{"type": "line", "xref": "x", "yref": "y", "x0": i, "x1": i, "y0": -0.12, "y1": 1.04,
               "line": {"color": "#333333", "width": 1}} for i in range(len(columns))]
    annotations = [{"x": i, "y": position, "xref": "x", "yref": "y", "text": _wrapped(label), "showarrow": False,
                    "xanchor": "right", "xshift": -4, "font": {"size": 10}, "bgcolor": "rgba(255,255,255,0.75)"}
                   for i, axis_ticks in enumerate(ticks) for position, label in axis_ticks]
    note = ", means over seeds" if groups.any_repeats else ""
    layout = base_layout("Parallel coordinates",
                         f"{len(points)} configuration{'s' if len(points) != 1 else ''}{note}; brighter is better",
                         height=480, shapes=shapes, annotations=annotations,
                         xaxis=axis("", tickvals=list(range(len(columns))),
                                    ticktext=[plot_text(c) for c in columns], range=[-0.5, len(columns) - 0.75],
                                    showgrid=False, showline=False, zeroline=False),
                         yaxis=axis("", range=[-0.16, 1.08], showticklabels=False, showgrid=False, showline=False))
    return figure(data, layout)


def _wrapped(label: str, width: int = 18, lines: int = 2) -> str:
    """A tick label broken onto at most ``lines`` lines of ``width`` characters (escaped)."""
    parts = textwrap.wrap(label, width=width, break_long_words=True, max_lines=lines, placeholder="…") or [label]
    return "<br>".join(plot_text(part) for part in parts)


# ----------------------------------------------------------------- sweeps


def _best_so_far(frame: pd.DataFrame, metric: str, goal: str) -> dict | None:
    """Each trial's metric in trial order, and the best so far (pruned trials shown apart);
    for the runs of several sweeps, one best-so-far line per sweep."""
    if not np.isfinite(frame[metric].to_numpy(dtype=float)).any():
        return None
    if "sweep" in frame.columns and frame["sweep"].nunique() > 1:
        return _best_so_far_of_sweeps(frame, metric, goal)
    trial, y, pruned, order = trial_order(frame, metric)
    ids = frame["id"].astype(str).to_numpy()[order]
    running = running_best(y, pruned, goal)
    fmt = value_format(metric, y)
    name = metric_name(metric)
    label = plot_text(name)  # in the hover templates; titles are escaped where they are laid out
    done = ~pruned & np.isfinite(y)
    data = [{"type": "scatter", "mode": "markers", "x": trial[done].tolist(), "y": finite_list(y[done]),
             "name": "trial", "marker": {"color": PALETTE[0], "size": 7, "opacity": 0.75},
             "text": [plot_text(i) for i in ids[done]],
             "hovertemplate": f"trial %{{x}}<br>{label} %{{y:{fmt}}}<br>%{{text}}<extra></extra>"}]
    if (pruned & np.isfinite(y)).any():
        shown = pruned & np.isfinite(y)
        data.append({"type": "scatter", "mode": "markers", "x": trial[shown].tolist(), "y": finite_list(y[shown]),
                     "name": "pruned trial (metric when stopped)",
                     "marker": {"symbol": "x", "color": PRUNED_COLOR, "size": 7},
                     "text": [plot_text(i) for i in ids[shown]],
                     "hovertemplate": f"trial %{{x}} (pruned)<br>{label} %{{y:{fmt}}}<br>%{{text}}<extra></extra>"})
    if np.isfinite(running).any():
        data.append({"type": "scatter", "mode": "lines", "x": trial.tolist(), "y": finite_list(running),
                     "name": "best so far", "line": {"shape": "hv", "color": BEST_COLOR, "width": 2.5},
                     "hovertemplate": f"after trial %{{x}}: best {label} %{{y:{fmt}}}<extra></extra>"})
        counted = np.where(pruned, np.nan, y)
        at = int(np.nanargmax(counted) if goal == "maximize" else np.nanargmin(counted))
        star = _star(trial[at], y[at])
        star.update(name=f"best: trial {trial[at]:g}", hoverinfo=None,
                    hovertemplate=f"best: trial %{{x}}<br>{label} %{{y:{fmt}}}<extra></extra>")
        data.append(star)
    failed = int((~np.isfinite(y)).sum())
    note = f"; {failed} trial{'s' if failed != 1 else ''} without a value not shown" if failed else ""
    x_axis = axis("trial")
    if np.ptp(trial) < 2:
        x_axis["range"] = [float(trial.min()) - 1, float(trial.max()) + 1]
    layout = base_layout(f"Best {name} so far ({goal})", f"{len(frame)} trials{note}",
                         legend=[t["name"] for t in data], xaxis=x_axis, yaxis=metric_axis(metric, y))
    return figure(data, layout)


def _best_so_far_of_sweeps(frame: pd.DataFrame, metric: str, goal: str) -> dict | None:
    """One step line per sweep: the best value among its first n trials (pruned ones not counted)."""
    name, data = metric_name(metric), []
    fmt = value_format(metric, frame[metric].to_numpy(dtype=float))
    for k, sweep in enumerate(sorted(str(s) for s in pd.unique(frame["sweep"].dropna()))):
        group = frame[frame["sweep"] == sweep]
        _, y, pruned, _ = trial_order(group, metric)
        best = running_best(y, pruned, goal)
        if not np.isfinite(best).any():
            continue
        label = re.sub(r"-[0-9a-f]{8}$", "", sweep)   # the sweep's name: its id without the hash
        data.append({"type": "scatter", "mode": "lines", "x": list(range(1, len(best) + 1)), "y": finite_list(best),
                     "name": plot_text(label), "line": {"shape": "hv", "color": PALETTE[k % len(PALETTE)], "width": 2},
                     "hovertemplate": f"{plot_text(label)}<br>after %{{x}} trials: best {plot_text(name)} "
                                      f"%{{y:{fmt}}}<extra></extra>"})
    if not data:
        return None
    layout = base_layout(f"Best {name} so far ({goal})", f"{len(data)} sweeps", legend=[t["name"] for t in data],
                         xaxis=axis("trials"), yaxis=metric_axis(metric, frame[metric].to_numpy(dtype=float)))
    return figure(data, layout)


def _pareto(runs: pd.DataFrame, objectives: list[tuple[str, str]]) -> dict | None:
    """The runs on the first two objectives, the Pareto-optimal ones (over all of them) marked and joined."""
    columns = [c for c, _ in objectives]
    if any(c not in runs.columns for c in columns):
        return None
    values = np.column_stack([pd.to_numeric(runs[c], errors="coerce").to_numpy(dtype=float) for c in columns])
    front = pareto_front(values, [g for _, g in objectives])
    if not front.any():
        return None
    (x_col, x_goal), (y_col, y_goal) = objectives[:2]
    x, y = values[:, 0], values[:, 1]
    ids = runs["id"].astype(str).to_numpy()
    shown = np.isfinite(x) & np.isfinite(y)
    hover = (f"%{{text}}<br>{plot_text(metric_name(x_col))} %{{x:{value_format(x_col, x)}}}"
             f"<br>{plot_text(metric_name(y_col))} %{{y:{value_format(y_col, y)}}}<extra></extra>")
    data = []
    rest = shown & ~front
    if rest.any():
        data.append({"type": "scatter", "mode": "markers", "x": finite_list(x[rest]), "y": finite_list(y[rest]),
                     "name": "dominated run", "text": [plot_text(i) for i in ids[rest]], "hovertemplate": hover,
                     "marker": {"color": PALETTE[0], "size": 7, "opacity": 0.5}})
    order = np.argsort(x[front], kind="stable")
    data.append({"type": "scatter", "mode": "lines+markers" if len(objectives) == 2 else "markers",
                 "x": finite_list(x[front][order]), "y": finite_list(y[front][order]), "name": "Pareto-optimal",
                 "text": [plot_text(i) for i in ids[front][order]], "hovertemplate": hover,
                 "line": {"shape": "hv" if (x_goal == "maximize") == (y_goal == "maximize") else "vh",
                          "color": BEST_COLOR, "width": 1.5},
                 "marker": {"color": BEST_COLOR, "size": 10}})
    more = f", front over {len(objectives)} metrics" if len(objectives) > 2 else ""
    layout = base_layout("Pareto front", f"{int(front.sum())} of {int(shown.sum())} runs{more}",
                         legend=[t["name"] for t in data],
                         xaxis=metric_axis(x_col, x[shown], title=f"{metric_name(x_col)} ({x_goal})"),
                         yaxis=metric_axis(y_col, y[shown], title=f"{metric_name(y_col)} ({y_goal})"))
    return figure(data, layout)


def _importance(frame: pd.DataFrame, varied: list[str], names: dict[str, str], metric: str) -> dict | None:
    """Horizontal bars: the share of the metric's variance each param explains on its own."""
    if not varied or frame[metric].notna().sum() < 2:
        return None
    scores = pd.to_numeric(importance(frame, varied, metric), errors="coerce").dropna()
    if scores.empty:
        return None
    scores = scores.sort_values(ascending=False)
    labels = [plot_text(names.get(c, str(c).removeprefix("param."))) for c in scores.index]
    counted = int(frame[metric].notna().sum())
    trace = {"type": "bar", "orientation": "h", "x": finite_list(scores.to_numpy()), "y": labels,
             "marker": {"color": PALETTE[0], "opacity": 0.85}, "text": [f"{v:.2f}" for v in scores],
             "textposition": "outside", "hovertemplate": "%{y}: %{x:.1%} of the variance<extra></extra>"}
    layout = base_layout(f"Parameter importance for {metric_name(metric)}",
                         f"eta squared over {counted} runs: the share of the variance each parameter explains alone",
                         height=max(280, 40 * len(labels) + 160),
                         xaxis=axis("fraction of variance explained, one parameter at a time", range=[0, 1.08],
                                    tickformat=".0%"),
                         yaxis=axis("", autorange="reversed"))
    return figure([trace], layout)
