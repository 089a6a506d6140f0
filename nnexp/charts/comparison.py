"""The charts that compare runs, described from the data: learning curves grouped over seeds, the metric
against each varied parameter, a heatmap of a two-parameter grid, parallel coordinates, and for a sweep
the best value so far, parameter importance and a Pareto front.

`planned` lists the charts a comparison has, each built only when asked for:
``nnexp compare --plots`` draws them as PNGs (``compare/plots.py``), the HTML
report and the dashboard as plotly.js figures (``compare/charts.py``).
``compare/layout.py`` decides the groups, labels, scales and curves.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ..compare.fmt import format_cell
from ..compare.layout import (HIGHLIGHTED_GROUPS, MAX_BACKGROUND_CURVES, MAX_HEATMAP_VALUES, MAX_LABELLED_GROUPS,
                              MAX_RUNS_PER_BAND, abbreviate, check_arguments, clean_frame, curve_points,
                              grid_categories, Groups, is_fraction, mean_band, metric_name, panel_column,
                              parallel_axes, param_series, running_best, sample, short_names, trial_order,
                              use_log_axis, value_label)
from ..compare.pareto import pareto_front
from ..compare.stats import importance, summarize
from ..tracking.records import CURVE_COLUMNS, read_metric_rows
from ..tracking.run import DamagedRun
from .spec import (BEST_COLOR, GREY, PALETTE, Axis, Band, Bars, Chart, ColorBar, Field, Heatmap, Hover, Line,
                   Note, Panel, Series, viridis)

PRUNED_COLOR = GREY
COLOR_BINS = 16  # parallel coordinates: lines are drawn in this many colours
X, Y, TEXT = Field("x"), Field("y"), Field("text")


def value_format(metric: str, values) -> str:
    """A d3 format for a metric's values: percent for accuracies stored as fractions."""
    return ".2%" if is_fraction(metric, values) else ".4g"


def metric_axis(metric: str, values, title: str | None = None, **extra) -> Axis:
    return Axis(metric_name(metric) if title is None else title, percent=is_fraction(metric, values), **extra)


def file_part(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", column.removeprefix("param.")).strip("_") or "param"


# ----------------------------------------------------------------- the plan


def planned(runs: pd.DataFrame, varied: list[str], metric: str, goal: str, sweep: bool = False,
            curves: Mapping | None = None, objectives=()) -> list[tuple[str, str, str, Callable[[], Chart | None]]]:
    """[(chart id, PNG file name, title, build)] in display order; ``build()`` describes the chart, or
    gives None when the data cannot support it.

    Args:
        runs: the pandas view of runs (one row per run; id, trial, status, path,
            param.*, metric.*), already filtered and sorted.
        varied: the param.* columns that differ, the seed excepted: runs equal in
            all of them are repeats.
        metric: the metric.* column compared; goal: "maximize" or "minimize".
        sweep: also the best value so far and parameter importance.
        curves: run id -> metrics.csv (a DataFrame, or {column: values}); None:
            read from the ``path`` column, only for the runs a chart shows.
        objectives: [(metric column, goal)] of a multi-objective sweep: also the
            runs on the first two and their Pareto front.

    Raises:
        ValueError: goal, metric or a varied column is not what it should be.
    """
    check_arguments(runs, varied, metric, goal)
    if len(runs) == 0:
        return []
    frame = clean_frame(runs, varied, metric)
    names = short_names(varied)
    groups = Groups(frame, varied, metric, goal, names)
    plan = [("curves", "learning_curves.png", "Learning curves", lambda: learning_curves(frame, curves, groups))]
    for column in varied:
        plan.append((f"metric-vs-{column.removeprefix('param.')}", f"metric_vs_{file_part(column)}.png",
                     f"{metric_name(metric)} vs {names[column]}", lambda column=column: metric_vs_param(groups, column)))
    plan.append(("heatmap", "heatmap.png", f"Heatmap of {metric_name(metric)}", lambda: heatmap(groups)))
    plan.append(("parallel", "parallel_coordinates.png", "Parallel coordinates", lambda: parallel_coordinates(groups)))
    if sweep:
        plan.append(("best-so-far", "best_so_far.png", "Best so far", lambda: best_so_far(frame, metric, goal)))
        plan.append(("importance", "importance.png", "Parameter importance",
                     lambda: parameter_importance(frame, varied, names, metric)))
    if len(objectives) >= 2:
        plan.append(("pareto", "pareto_front.png", "Pareto front", lambda: pareto(frame, list(objectives))))
    return plan


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


# ----------------------------------------------------------------- learning curves


def learning_curves(frame: pd.DataFrame, curves: Mapping | None, groups: Groups) -> Chart | None:
    """Validation accuracy and loss per epoch: every group labelled, or the best few over grey runs."""
    ids = frame["id"].astype(str).to_numpy()
    few = len(groups.table) <= MAX_LABELLED_GROUPS
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

    panels, sampled, any_series = [], False, False
    for panel_index, kind in enumerate(("accuracy", "loss")):
        column = columns[kind]
        split = "validation" if column and column.startswith("val_") else "training"
        if column is None:
            panels.append(Panel(Axis("epoch", whole=True), Axis(f"no {kind} recorded"), empty=f"no {kind} recorded"))
            continue
        legend = panel_index == 0 or not columns["accuracy"]
        marks = []
        if not few:  # context: every run (or a sample of them), thin and grey
            rows = [i for i in background if with_curve[i]]
            sampled |= len(rows) < int(with_curve.sum())
            xs, ys = [], []
            for i in rows:
                points = curve_points(curves[ids[i]], column)
                if points:
                    xs += [points[0], [math.nan]]
                    ys += [points[1], [math.nan]]
            if xs:
                marks.append(Series(np.concatenate(xs), np.concatenate(ys), "every run", color=GREY, width=0.7,
                                    opacity=0.35, legend=legend, group="every run"))
        values = []
        for rank, group in enumerate(shown):
            members = [i for i in groups.members(group) if with_curve[i]]
            sampled |= len(members) > MAX_RUNS_PER_BAND
            pieces = [c for c in (curve_points(curves[ids[i]], column) for i in members[:MAX_RUNS_PER_BAND]) if c]
            if not pieces:
                continue
            epoch, mean, low, high, _ = mean_band(pieces)
            color = PALETTE[rank % len(PALETTE)]
            key = f"group {group}"
            if np.isfinite(low).any():
                marks.append(Band(epoch, low, high, color, 0.2 if len(shown) <= 3 else 0.12, group=key))
            marks.append(Series(epoch, mean, groups.curve_label(group, rank, few), color=color, width=2,
                                marker="circle" if epoch.size <= 30 else None, size=5, legend=legend, group=key,
                                hover=Hover(("epoch ", X, "\n", column, " ", Field("y", value_format(column, mean))),
                                            name=None)))
            values.append(mean)
        merged = np.concatenate(values) if values else np.array([])
        y_axis = metric_axis(column, merged, f"{split} {kind}")
        finite = merged[np.isfinite(merged)]
        if kind == "loss" and finite.size >= 4 and finite.max() > 3 * np.percentile(finite, 95) > 0:  # a diverged run
            y_axis.range = (float(finite.min()) * 0.95, 1.5 * float(np.percentile(finite, 95)))
        any_series |= bool(marks)
        panels.append(Panel(Axis("epoch", whole=True), y_axis, marks, title=f"{split.capitalize()} {kind}"))
    if not any_series:
        return None
    title, _, subtitle = groups.curves_title(few, sampled).partition("  —  ")
    return Chart(title, panels, subtitle, size=(12, 5.2))


# ----------------------------------------------------------------- metric vs a param


def group_hovers(groups: Groups, positions) -> list[str]:
    texts = groups.hover_texts()
    return [texts[int(g)] for g in positions]


def star(x: float, y: float, name: str = "best", hover: Hover | None = None) -> Series:
    return Series([float(x)], [float(y)], name, color=BEST_COLOR, width=0, marker="star", size=16, hover=hover,
                  on_top=True)


def metric_vs_param(groups: Groups, column: str) -> Chart | None:
    """Group means against one param with 95% CI bars; one line per setting of the others if few."""
    ps = param_series(groups, column)
    if ps is None:
        return None
    table, scale, x, y, error, keep, others, best = (groups.table, ps.scale, ps.x, ps.y, ps.error, ps.keep,
                                                      ps.others, ps.best)
    metric = groups.metric
    marks, stars = [], []
    text_hover = Hover((TEXT,))
    if ps.lines:
        legend = abbreviate([", ".join(f"{groups.names[c]}={value_label(table[c].iloc[g], 200)}" for c in others)
                             for g in ps.firsts()], 70)
        for k, _, at in ps.line_members():
            shift = ps.shift(k)
            marks.append(Series(x[at] + shift, y[at], legend[k] if others else metric_name(metric),
                                color=PALETTE[k % len(PALETTE)], width=1.6, marker="circle", size=7, error=error[at],
                                texts=group_hovers(groups, at), hover=text_hover, legend=bool(others)))
            if best in at:
                stars.append(star(x[best] + shift, y[best]))
    else:  # many settings of the other params (random search): points, no lines
        # Categories: spread each column's points sideways so that they do not pile up.
        jitter = np.zeros(x.size) if scale.numeric else np.random.default_rng(8675309).uniform(-0.25, 0.25, x.size)
        at = np.flatnonzero(keep)
        marks.append(Series((x + jitter)[at], y[at], "one configuration", width=0, marker="circle", size=6,
                            opacity=0.55, error=error[at] if error[at].any() else None,
                            texts=group_hovers(groups, at), hover=text_hover))
        marginal = marginal_means(x[keep], y[keep], metric)
        if marginal:
            marks.append(marginal)
        if keep[best]:
            stars.append(star((x + jitter)[best], y[best]))
    name = groups.names[column]
    x_axis = Axis(f"{name}{' (log scale)' if scale.log else ''}", log=scale.log)
    if scale.numeric:
        distinct = np.unique(x[keep])
        if 1 <= distinct.size <= 8:
            x_axis.ticks = [(float(v), value_label(float(v))) for v in distinct]
        if distinct.size == 1:  # a single point: pad so it is not at the frame
            v = float(distinct[0])
            x_axis.range = (v / 3, v * 3) if scale.log or v > 0 else (v - 1, v + 1)
    else:
        x_axis.categories = list(scale.categories)
        x_axis.range = (-0.6, len(scale.categories) - 0.4)
    note = "mean over seeds, bars: 95% CI" if groups.any_repeats else "one run per point"
    panel = Panel(x_axis, metric_axis(metric, np.r_[y[keep] - error[keep], y[keep] + error[keep]]), marks + stars)
    return Chart(f"{metric_name(metric)} vs {name}", [panel], f"{note}; star: best ({groups.goal})",
                 size=(8, 5))


def marginal_means(x: np.ndarray, y: np.ndarray, metric: str, max_values: int = 20) -> Series | None:
    """Mean and 95% CI of y at each distinct x, when x takes few values (a grid or a category)."""
    distinct = np.unique(x)
    if not 1 <= distinct.size <= max_values or distinct.size == x.size:
        return None
    stats = [summarize(y[x == value]) for value in distinct]
    mean = np.array([s["mean"] for s in stats])
    half = np.nan_to_num(np.array([s["ci95"] for s in stats]), nan=0.0)
    return Series(distinct, mean, "mean over the other parameters (95% CI)", color="#111111", width=1.8,
                  marker="diamond", size=8, error=half,
                  hover=Hover((X, ": mean ", Field("y", value_format(metric, mean)))))


# ----------------------------------------------------------------- heatmap


def heatmap(groups: Groups) -> Chart | None:
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
    finite = grid[np.isfinite(grid)]
    colors = ColorBar(float(finite.min()), float(max(finite.max(), finite.min() + 1e-12)),
                      f"mean {metric_name(metric)} (brighter is better)", is_fraction(metric, finite),
                      reverse=groups.goal == "minimize")
    texts = [[format_cell(metric, float(v)) if np.isfinite(v) else "-" for v in row] for row in grid]
    name_x, name_y = groups.names[col_x], groups.names[col_y]
    nx, ny = grid.shape[1], grid.shape[0]
    note = "mean over seeds; " if groups.any_repeats else ""
    panel = Panel(Axis(name_x, categories=cats[col_x], range=(-0.5, nx - 0.5), grid=False),
                  Axis(name_y, categories=cats[col_y], range=(-0.5, ny - 0.5), reverse=True, grid=False),
                  [Heatmap(grid, texts, metric_name(metric), colors)])
    return Chart(f"{metric_name(metric)} by {name_x} and {name_y}", [panel], f"{note}brighter is better",
                 height=max(360, 44 * ny + 180),
                 size=(min(16, max(5.5, 0.9 * nx + 3.5)), min(12, max(4, 0.55 * ny + 2.5))))


# ----------------------------------------------------------------- parallel coordinates


def parallel_coordinates(groups: Groups) -> Chart | None:
    """One vertical axis per varied param plus the metric; one line per group, coloured by the metric.

    Each axis is scaled to [0, 1]: numbers min-max (in log10 where they span
    decades), categories by their index; missing values sit just below the axis.
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
    texts = group_hovers(groups, range(len(points)))
    bins = np.minimum(np.floor(np.nan_to_num(better) * COLOR_BINS), COLOR_BINS - 1).astype(int)
    width = points.shape[1]
    marks = []
    for b in (COLOR_BINS, *range(COLOR_BINS)):  # groups without a metric first (grey), the best last, on top
        at = np.flatnonzero(~np.isfinite(mean)) if b == COLOR_BINS else np.flatnonzero(np.isfinite(mean) & (bins == b))
        if at.size == 0:
            continue
        xs = np.tile(np.r_[np.arange(width, dtype=float), math.nan], at.size)
        ys = np.column_stack([points[at], np.full(at.size, math.nan)]).ravel()
        hover = [t for g in at for t in [texts[g]] * width + [""]]
        marks.append(Series(xs, ys, color="#b3b3b3" if b == COLOR_BINS else viridis((b + 0.5) / COLOR_BINS),
                            width=0.7 if many else 1.6, marker="circle", size=3 if many else 5,
                            opacity=0.5 if many else 0.9, texts=hover, hover=Hover((TEXT,)), legend=False))
    notes = [Note(i, position, label, align="right", offset=(-4, 0), size=9, boxed=True)
             for i, axis_ticks in enumerate(ticks) for position, label in axis_ticks]
    panel = Panel(Axis(categories=list(columns), range=(-0.5, len(columns) - 0.75), grid=False),
                  Axis(range=(-0.16, 1.08), grid=False, hidden=True), marks,
                  lines=[Line(x=i, color="#333333", dash="solid") for i in range(len(columns))], notes=notes)
    note = ", means over seeds" if groups.any_repeats else ""
    colors = ColorBar(low, high, f"{metric_name(metric)} (brighter is better)", is_fraction(metric, finite),
                      reverse=groups.goal == "minimize")
    return Chart("Parallel coordinates", [panel],
                 f"{len(points)} configuration{'s' if len(points) != 1 else ''}{note}; brighter is better",
                 colors=colors, height=480, size=(max(8, 1.9 * len(columns) + 2), 5.5))


# ----------------------------------------------------------------- sweeps


def sweep_label(sweep_id: str) -> str:
    """A sweep id without its hash: ``mlp-tpe-seed0-cc4f9e8e`` -> ``mlp-tpe-seed0``."""
    return re.sub(r"-[0-9a-f]{8}$", "", sweep_id)


def best_so_far(frame: pd.DataFrame, metric: str, goal: str) -> Chart | None:
    """Each trial's metric in trial order, and the best so far (pruned trials shown apart);
    for the runs of several sweeps, one best-so-far line per sweep."""
    if not np.isfinite(frame[metric].to_numpy(dtype=float)).any():
        return None
    if "sweep" in frame.columns and frame["sweep"].nunique() > 1:
        return best_so_far_of_sweeps(frame, metric, goal)
    trial, y, pruned, order = trial_order(frame, metric)
    ids = frame["id"].astype(str).to_numpy()[order]
    running = running_best(y, pruned, goal)
    fmt = value_format(metric, y)
    name = metric_name(metric)
    done = ~pruned & np.isfinite(y)
    marks = [Series(trial[done], y[done], "trial", width=0, marker="circle", size=7, opacity=0.75,
                    texts=list(ids[done]), hover=Hover(("trial ", X, "\n", name, " ", Field("y", fmt), "\n", TEXT)))]
    notes = []
    if (pruned & np.isfinite(y)).any():
        shown = pruned & np.isfinite(y)
        marks.append(Series(trial[shown], y[shown], "pruned trial (metric when stopped)", color=PRUNED_COLOR,
                            width=0, marker="x", size=7, texts=list(ids[shown]),
                            hover=Hover(("trial ", X, " (pruned)\n", name, " ", Field("y", fmt), "\n", TEXT))))
    if np.isfinite(running).any():
        marks.append(Series(trial, running, "best so far", color=BEST_COLOR, width=2.5, step="post",
                            hover=Hover(("after trial ", X, ": best ", name, " ", Field("y", fmt)))))
        counted = np.where(pruned, np.nan, y)
        at = int(np.nanargmax(counted) if goal == "maximize" else np.nanargmin(counted))
        marks.append(star(trial[at], y[at], f"best: trial {trial[at]:g}",
                          Hover(("best: trial ", X, "\n", name, " ", Field("y", fmt)))))
        notes.append(Note(float(trial[at]), float(y[at]), f"trial {trial[at]:g}: {format_cell(metric, float(y[at]))}",
                          color="#1b5e20", align="left", offset=(8, 10), size=9))
    failed = int((~np.isfinite(y)).sum())
    note = f"; {failed} trial{'s' if failed != 1 else ''} without a value not shown" if failed else ""
    x_axis = Axis("trial", whole=True)
    if np.ptp(trial) < 2:
        x_axis.range = (float(trial.min()) - 1, float(trial.max()) + 1)
    return Chart(f"Best {name} so far ({goal})", [Panel(x_axis, metric_axis(metric, y), marks, notes=notes)],
                 f"{len(frame)} trials{note}", size=(9, 5))


def best_so_far_of_sweeps(frame: pd.DataFrame, metric: str, goal: str) -> Chart | None:
    """One step line per sweep: the best value among its first n trials (pruned ones not counted);
    sweeps named alike but for a -seedN suffix share a colour."""
    name, marks = metric_name(metric), []
    values = frame[metric].to_numpy(dtype=float)
    fmt = value_format(metric, values)
    sweeps = sorted(str(s) for s in pd.unique(frame["sweep"].dropna()))
    families = [re.sub(r"-seed\d+$", "", sweep_label(s)) for s in sweeps]
    colors = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(dict.fromkeys(families))}
    seen: dict[str, int] = {}
    for sweep, family in zip(sweeps, families):
        _, y, pruned, _ = trial_order(frame[frame["sweep"] == sweep], metric)
        best = running_best(y, pruned, goal)
        if not np.isfinite(best).any():
            continue
        dash = ("solid", "dash", "dot", "dashdot")[seen.setdefault(family, 0) % 4]
        seen[family] += 1
        label = sweep_label(sweep)
        marks.append(Series(np.arange(1.0, len(best) + 1), best, label, color=colors[family], dash=dash, step="post",
                            hover=Hover((label, "\nafter ", X, " trials: best ", name, " ", Field("y", fmt)))))
    if not marks:
        return None
    return Chart(f"Best {name} so far ({goal})",
                 [Panel(Axis("trials", whole=True), metric_axis(metric, values, f"best {name} so far"), marks)],
                 f"{len(marks)} sweeps", size=(9, 5))


def pareto(frame: pd.DataFrame, objectives: list[tuple[str, str]]) -> Chart | None:
    """The runs on the first two objectives, the Pareto-optimal ones (over all of them) marked and joined."""
    columns = [c for c, _ in objectives]
    if any(c not in frame.columns for c in columns):
        return None
    values = np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in columns])
    front = pareto_front(values, [g for _, g in objectives])
    if not front.any():
        return None
    (x_col, x_goal), (y_col, y_goal) = objectives[:2]
    x, y = values[:, 0], values[:, 1]
    ids = frame["id"].astype(str).to_numpy()
    shown = np.isfinite(x) & np.isfinite(y)
    hover = Hover((TEXT, "\n", metric_name(x_col), " ", Field("x", value_format(x_col, x)),
                   "\n", metric_name(y_col), " ", Field("y", value_format(y_col, y))))
    marks = []
    rest = shown & ~front
    if rest.any():
        marks.append(Series(x[rest], y[rest], "dominated run", width=0, marker="circle", size=7, opacity=0.5,
                            texts=list(ids[rest]), hover=hover))
    order = np.argsort(x[front], kind="stable")
    marks.append(Series(x[front][order], y[front][order], "Pareto-optimal", color=BEST_COLOR,
                        width=1.5 if len(objectives) == 2 else 0, marker="circle", size=10,
                        step="post" if (x_goal == "maximize") == (y_goal == "maximize") else "pre",
                        texts=list(ids[front][order]), hover=hover))
    more = f", front over {len(objectives)} metrics" if len(objectives) > 2 else ""
    panel = Panel(metric_axis(x_col, x[shown], f"{metric_name(x_col)} ({x_goal})", log=use_log_axis(x[shown])),
                  metric_axis(y_col, y[shown], f"{metric_name(y_col)} ({y_goal})", log=use_log_axis(y[shown])), marks)
    return Chart("Pareto front", [panel], f"{int(front.sum())} of {int(shown.sum())} runs{more}", size=(8, 5.5))


def parameter_importance(frame: pd.DataFrame, varied: list[str], names: dict[str, str], metric: str) -> Chart | None:
    """Horizontal bars: the share of the metric's variance each param explains on its own."""
    if not varied or frame[metric].notna().sum() < 2:
        return None
    scores = pd.to_numeric(importance(frame, varied, metric), errors="coerce").dropna()
    if scores.empty:
        return None
    scores = scores.sort_values(ascending=False)
    labels = [names.get(c, str(c).removeprefix("param.")) for c in scores.index]
    counted = int(frame[metric].notna().sum())
    bars = Bars(scores.to_numpy(dtype=float), [f"{v:.2f}" for v in scores],
                hover=Hover((Field("y"), ": ", Field("x", ".1%"), " of the variance")))
    panel = Panel(Axis("fraction of variance explained, one parameter at a time", percent=True, range=(0, 1.08)),
                  Axis(categories=labels, reverse=True, grid=False), [bars])
    return Chart(f"Parameter importance for {metric_name(metric)}", [panel],
                 f"eta squared over {counted} runs: the share of the variance each parameter explains alone",
                 height=max(280, 40 * len(labels) + 160), size=(8, max(2.5, 0.45 * len(labels) + 1.6)))
