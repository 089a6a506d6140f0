"""Plots that compare runs: curves overlaid, the metric against each parameter, sweeps.

`comparison_plots` writes every plot that the selected runs support into one
folder (``nnexp compare --plots``) and returns (title, path) pairs in display
order; ``charts.py`` draws the same as interactive charts for the HTML report
and the dashboard, and ``layout.py`` decides for both what is drawn. Runs that repeat a configuration over seeds are pooled into one group
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
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator, NullLocator, PercentFormatter

from ..figure import saved_figure, widen_short_axes
from .fmt import format_cell
from .layout import (HIGHLIGHTED_GROUPS, MAX_BACKGROUND_CURVES, MAX_HEATMAP_VALUES, MAX_LABELLED_GROUPS,
                     MAX_RUNS_PER_BAND, abbreviate, check_arguments, clean_frame, curve_points, grid_categories,
                     Groups, is_fraction, mean_band, metric_name, panel_column, parallel_axes, param_series,
                     running_best, sample, short_names, trial_order, use_log_axis, value_label)
from .pareto import pareto_front
from .stats import importance, summarize

logger = logging.getLogger(__name__)

MAX_CATEGORY_TICKS = 30
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
    check_arguments(runs, varied, metric, goal)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(runs) == 0:
        return []
    frame = clean_frame(runs, varied, metric)
    names = short_names(varied)
    groups = Groups(frame, varied, metric, goal, names)

    planned = [("Learning curves", "learning_curves.png",
                lambda path: _plot_learning_curves(frame, curves or {}, groups, path))]
    for column in varied:
        planned.append((f"{metric_name(metric)} vs {names[column]}", f"metric_vs_{_file_part(column)}.png",
                        lambda path, column=column: _plot_metric_vs_param(groups, column, path)))
    planned.append((f"Heatmap of {metric_name(metric)}", "heatmap.png",
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


# ----------------------------------------------------------------- values and axes


def _wrap(label: str, width: int = 24, lines: int = 5) -> str:
    """Break a long tick label onto lines (layer lists break at their ' | ')."""
    if len(label) <= width:
        return label
    return "\n".join(textwrap.wrap(label, width=width, break_long_words=True, max_lines=lines, placeholder="…"))


def _set_category_ticks(ax, categories: list[str], axis: str = "x") -> None:
    """Tick labels for a categorical axis, shortened, wrapped, tilted and thinned to stay readable."""
    positions = np.arange(len(categories))
    step = max(1, math.ceil(len(categories) / MAX_CATEGORY_TICKS))
    shown = abbreviate(categories, 110)[::step]
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
        ax.set_xticks(distinct, labels=[value_label(float(v)) for v in distinct])
        ax.xaxis.set_minor_locator(NullLocator())
    if distinct.size == 1:  # a single point: pad so it is not at the frame
        v = distinct[0]
        ax.set_xlim(*((v / 3, v * 3) if log or v > 0 else (v - 1, v + 1)))


def _file_part(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", column.removeprefix("param.")).strip("_") or "param"


def _metric_axis(ax, metric: str, values) -> None:
    """Percent ticks on the y axis for an accuracy stored as fractions."""
    if is_fraction(metric, values):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def _goal_cmap(goal: str):
    """Viridis with the better end bright, whichever way the metric points."""
    return colormaps["viridis" if goal == "maximize" else "viridis_r"]


# ----------------------------------------------------------------- learning curves


def _plot_learning_curves(frame: pd.DataFrame, curves: dict, groups: Groups, path: Path) -> bool:
    """Validation accuracy and loss per epoch: every group labelled, or the best few over grey."""
    ids = frame["id"].astype(str).to_numpy()
    curves = {str(k): v for k, v in curves.items()}
    with_curve = np.array([run_id in curves for run_id in ids], dtype=bool)
    if not with_curve.any():
        return False
    columns = {kind: panel_column(curves, ids[with_curve], kind) for kind in ("accuracy", "loss")}
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
                background = sample(np.flatnonzero(with_curve), MAX_BACKGROUND_CURVES)
                sampled |= background.size < with_curve.sum()
                lines = [np.column_stack(c) for c in (curve_points(curves[ids[i]], column) for i in background) if c]
                ax.add_collection(LineCollection(lines, colors="0.6", linewidths=0.5, alpha=0.35, zorder=1))
                ax.autoscale_view()
            panel_values, panel_epochs = [], []
            for rank, group in enumerate(shown):
                members = [i for i in groups.members(group) if with_curve[i]]
                sampled |= len(members) > MAX_RUNS_PER_BAND
                pieces = [c for c in (curve_points(curves[ids[i]], column) for i in members[:MAX_RUNS_PER_BAND]) if c]
                if not pieces:
                    continue
                epoch, mean, low, high, _ = mean_band(pieces)
                color = colors[rank % len(colors)]
                line, = ax.plot(epoch, mean, color=color, linewidth=1.8, zorder=3,
                                marker="o" if epoch.size <= 30 else None, markersize=3)
                if np.isfinite(low).any():
                    ax.fill_between(epoch, low, high, color=color, alpha=0.2 if len(shown) <= 3 else 0.1,
                                    linewidth=0, zorder=2)
                panel_values.append(mean)
                panel_epochs.append(epoch)
                if kind == "accuracy" or not columns["accuracy"]:
                    handles.append((line, groups.curve_label(group, rank, few)))
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
        fig.suptitle(groups.curves_title(few, sampled), fontsize=12)
    return True


def _clip_outliers(ax, values: np.ndarray) -> None:
    """Keep a diverged run's huge loss from flattening every other curve."""
    values = values[np.isfinite(values)]
    if values.size < 4:
        return
    high = np.percentile(values, 95)
    if values.max() > 3 * high > 0:
        ax.set_ylim(top=1.5 * high)


# ----------------------------------------------------------------- metric vs a param


def _plot_metric_vs_param(groups: Groups, column: str, path: Path) -> bool:
    """Group means against one param, 95% CI bars; one line per setting of the others if few."""
    ps = param_series(groups, column)
    if ps is None:
        return False
    table, scale, x, y, error, keep, others, best = (groups.table, ps.scale, ps.x, ps.y, ps.error, ps.keep,
                                                      ps.others, ps.best)
    metric = groups.metric

    with saved_figure(path, figsize=(8, 5), layout="constrained") as (fig, ax):
        if ps.lines:
            colors = colormaps["tab10"].colors
            legend = abbreviate([", ".join(value_label(table[c].iloc[g], 200) for c in others)
                                 for g in ps.firsts()], 70)
            for k, _, at in ps.line_members():
                shift = ps.shift(k)
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
        ax.set(xlabel=f"{name}{' (log scale)' if scale.log else ''}", ylabel=metric_name(metric))
        note = "mean over seeds, bars: 95% CI" if groups.any_repeats else "one run per point"
        ax.set_title(f"{metric_name(metric)} vs {name}\n{note}; star: best ({groups.goal})", fontsize=11)
    return True


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


def _plot_heatmap(groups: Groups, path: Path) -> bool:
    """Mean metric per cell of a two-param grid, annotated; only when exactly two params vary."""
    if len(groups.varied) != 2:
        return False
    table = groups.table
    col_x, col_y = groups.varied
    cats, index = {}, {}
    for column in (col_x, col_y):
        placed = grid_categories(table[column])
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
        bar.set_label(f"mean {metric_name(groups.metric)} (brighter is better)")
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
        ax.set_title(f"{metric_name(groups.metric)} by {groups.names[col_x]} and {groups.names[col_y]}{note}",
                     fontsize=11)
    return True


# ----------------------------------------------------------------- parallel coordinates


def _plot_parallel_coordinates(groups: Groups, path: Path) -> bool:
    """One vertical axis per varied param plus the metric; one line per group, coloured by the metric.

    Each axis is scaled to [0, 1]: numbers min-max (in log10 where they span
    decades), categories by their index; missing values sit just below the axis.
    """
    axes = parallel_axes(groups)
    if axes is None:
        return False
    columns, points, ticks, mean = axes   # points (G, P+1)
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
                ax.text(i - 0.03, position, _wrap(label, 18, 2), ha="right", va="center", fontsize=7,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))
        ax.set_xlim(-0.45, len(columns) - 0.8)
        ax.set_ylim(-0.16, 1.06)
        ax.set_yticks([])
        ax.set_xticks(x, labels=columns, fontsize=9)
        for spine in ("left", "right", "top"):
            ax.spines[spine].set_visible(False)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.85)
        bar.set_label(f"{metric_name(groups.metric)} (brighter is better)")
        _metric_axis(bar.ax, groups.metric, finite)
        note = " (means over seeds)" if groups.any_repeats else ""
        ax.set_title(f"Parallel coordinates: {len(lines)} configuration{'s' if len(lines) != 1 else ''}{note}",
                     fontsize=11)
    return True


# ----------------------------------------------------------------- sweeps


def _plot_best_so_far(frame: pd.DataFrame, metric: str, goal: str, path: Path) -> bool:
    """Each trial's metric in trial order, and the best so far (pruned trials shown apart);
    for runs of several sweeps, one best-so-far line per sweep."""
    if "sweep" in frame.columns and frame["sweep"].nunique() > 1:
        return _plot_best_so_far_of_sweeps(frame, metric, goal, path)
    if not np.isfinite(frame[metric].to_numpy(dtype=float)).any():
        return False
    trial, y, pruned, _ = trial_order(frame, metric)

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
        ax.set(xlabel="trial", ylabel=metric_name(metric))
        ax.set_title(f"Best {metric_name(metric)} so far ({goal}), {len(frame)} trials{note}", fontsize=11)
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
        ax.set(xlabel="trials", ylabel=f"best {metric_name(metric)} so far")
        ax.set_title(f"Best {metric_name(metric)} so far ({goal}), {len(sweeps)} sweeps", fontsize=11)
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
        if is_fraction(x_col, x[shown]):
            ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        _metric_axis(ax, y_col, y[shown])
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=8, loc="best")
        ax.set(xlabel=f"{metric_name(x_col)} ({x_goal})", ylabel=f"{metric_name(y_col)} ({y_goal})")
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
        ax.set_title(f"Parameter importance for {metric_name(metric)} (eta squared, {counted} runs)", fontsize=11)
    return True
