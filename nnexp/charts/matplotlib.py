"""Chart descriptions (``spec.py``) drawn with matplotlib and saved as PNG files; the run folder's
image plots (``tracking/plots.py``) save their figures here too.

Figures are drawn with matplotlib's Agg backend (no display needed, safe in
worker processes) and every figure is closed after saving, so making plots for
hundreds of runs in one process does not grow memory. Hover texts are for the
interactive charts only.
"""

from __future__ import annotations

import math
import textwrap
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # must precede the pyplot import; headless and thread-free

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import (FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator,  # noqa: E402
                               PercentFormatter)

from ..compare.layout import abbreviate  # noqa: E402
from .spec import Band, Bars, Chart, ColorBar, Heatmap, Panel, Series, decades, extent, floats  # noqa: E402

DPI = 110
MAX_CATEGORY_TICKS = 30
POINTS = 0.75  # a description's pixels in matplotlib's points
DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}
MARKERS = {"circle": "o", "x": "x", "star": "*", "diamond": "D"}


@contextmanager
def saved_figure(path, **subplots_kwargs):
    """Yield (fig, axes) from plt.subplots; save as PNG to ``path`` and always close.

    The parent folder is created if needed. Closing in ``finally`` keeps pyplot's
    figure registry empty even when drawing fails.
    """
    fig, axes = plt.subplots(**subplots_kwargs)
    with saved(fig, path):
        yield fig, axes


@contextmanager
def saved(fig, path):
    """Yield; then save ``fig`` as PNG to ``path`` (creating its folder), and always close it."""
    try:
        yield
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def message_png(path, text: str, title: str | None = None) -> None:
    """A small PNG with a centred message, for plots with nothing to show."""
    with saved_figure(path, figsize=(5, 2)) as (fig, ax):
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color="0.3")
        if title:
            ax.set_title(title)


def save_png(chart: Chart, path) -> None:
    """Draw a chart description into a PNG file."""
    fig = draw(chart)
    with saved(fig, path):
        pass


def draw(chart: Chart):
    """A chart description as a matplotlib figure (the caller closes it: ``saved``)."""
    count = len(chart.panels)
    size = chart.size or (min(15.0, 5.0 * count + 1), 5.0)
    fig, axes = plt.subplots(ncols=count, squeeze=False, figsize=size, layout="constrained")
    try:
        entries = [draw_panel(fig, ax, panel) for ax, panel in zip(axes[0], chart.panels)]
        legend(fig, axes[0], entries)
        if chart.colors is not None:
            colour_bar(fig, axes[0][-1], chart.colors, ScalarMappable(norm=norm(chart.colors), cmap=cmap(chart.colors)))
        text = f"{chart.title}\n{chart.subtitle}" if chart.subtitle else chart.title
        if count > 1:
            fig.suptitle(text, fontsize=12)
        else:
            axes[0][0].set_title(text, fontsize=11)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def draw_panel(fig, ax, panel: Panel) -> list:
    """Draw one panel; return its legend entries [(handle, label, group, listed)]."""
    entries = []
    ax.set(xlabel=panel.x.title, ylabel=panel.y.title)
    if panel.title:
        ax.set_title(panel.title)
    for mark in panel.marks:
        if isinstance(mark, Band):
            ax.fill_between(floats(mark.x), floats(mark.low), floats(mark.high), color=mark.color, alpha=mark.opacity,
                            linewidth=0, zorder=2)
        elif isinstance(mark, Series):
            handle = draw_series(ax, mark)
            if mark.name:
                entries.append((handle, mark.name, mark.group or mark.name, mark.legend))
        elif isinstance(mark, Heatmap):
            draw_heatmap(fig, ax, mark)
        elif isinstance(mark, Bars):
            draw_bars(ax, mark)
    for line in panel.lines:
        style = dict(color=line.color, linestyle=DASHES[line.dash], linewidth=line.width, zorder=1.5,
                     label=line.name or None)
        handle = ax.axvline(line.x, **style) if line.x is not None else ax.axhline(line.y, **style)
        if line.name:
            entries.append((handle, line.name, line.name, True))
    for note in panel.notes:
        text = wrap(note.text, 18, 2) if note.boxed else note.text
        ax.annotate(text, (note.x, note.y), textcoords="offset points", xytext=tuple(o * POINTS for o in note.offset),
                    ha=note.align, va="center", fontsize=note.size * 0.8, color=note.color,
                    zorder=6,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7) if note.boxed else None)
    if panel.empty and not panel.marks:
        ax.text(0.5, 0.5, panel.empty, transform=ax.transAxes, ha="center", va="center", color="0.4")
    set_axis(ax, "x", panel)
    set_axis(ax, "y", panel)
    if panel.x.grid or panel.y.grid:
        ax.grid(True, alpha=0.35, axis="both" if panel.x.grid and panel.y.grid else "x" if panel.x.grid else "y")
    if panel.y.hidden:
        for spine in ("left", "right", "top"):
            ax.spines[spine].set_visible(False)
    return entries


def draw_series(ax, mark: Series):
    x, y = floats(mark.x), floats(mark.y)
    zorder = 5 if mark.on_top else 3
    style = dict(color=mark.color, alpha=mark.opacity, zorder=zorder)
    linestyle = DASHES[mark.dash] if mark.width > 0 else "none"
    marker = MARKERS.get(mark.marker) if mark.marker else None
    size = mark.size * POINTS * (1.25 if mark.marker == "star" else 1.0)
    if mark.error is not None:
        container = ax.errorbar(x, y, yerr=floats(mark.error), linestyle=linestyle, linewidth=mark.width,
                                marker=marker, markersize=size, capsize=3, elinewidth=0.8, **style)
        return container
    if mark.step and mark.width > 0:
        line, = ax.step(x, y, where=mark.step, linestyle=linestyle, linewidth=mark.width, **style)
        if marker:
            ax.plot(x, y, linestyle="none", marker=marker, markersize=size, **style)
        return line
    gaps = np.flatnonzero(np.isnan(x))
    if gaps.size > 1 and mark.width > 0 and marker is None:  # many curves: one collection draws them fast
        segments = [np.column_stack([x[a:b], y[a:b]]) for a, b in zip(np.r_[0, gaps + 1], np.r_[gaps, x.size])
                    if b - a > 0]
        lines = LineCollection(segments, colors=mark.color, linewidths=mark.width, alpha=mark.opacity, zorder=zorder,
                               linestyles=linestyle)
        ax.add_collection(lines)
        ax.autoscale_view()
        return lines
    line, = ax.plot(x, y, linestyle=linestyle, linewidth=mark.width, marker=marker, markersize=size, **style)
    return line


def cmap(colors: ColorBar):
    return colormaps["viridis_r" if colors.reverse else "viridis"]


def norm(colors: ColorBar) -> Normalize:
    return Normalize(vmin=colors.low, vmax=colors.high if colors.high > colors.low else colors.low + 1e-12)


def colour_bar(fig, ax, colors: ColorBar, mappable) -> None:
    bar = fig.colorbar(mappable, ax=ax, shrink=0.85)
    bar.set_label(colors.title)
    if colors.percent:
        bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def draw_heatmap(fig, ax, mark: Heatmap) -> None:
    """The grid, each cell's text in it: white on the dark end of viridis, whichever way the map runs."""
    scale, colors = norm(mark.colors), cmap(mark.colors).with_extremes(bad="0.92")  # empty cells light grey
    image = ax.imshow(np.ma.masked_invalid(mark.z), cmap=colors, norm=scale, aspect="auto")
    colour_bar(fig, ax, mark.colors, image)
    ny, nx = mark.z.shape
    fontsize = max(6, min(10, 120 // max(nx, ny)))
    for r in range(ny):
        for c in range(nx):
            value = mark.z[r, c]
            shade = scale(value) if np.isfinite(value) else 1.0
            dark = shade > 0.55 if mark.colors.reverse else shade < 0.45
            ax.text(c, r, mark.texts[r][c], ha="center", va="center", fontsize=fontsize,
                    color="white" if np.isfinite(value) and dark else "black")


def draw_bars(ax, mark: Bars) -> None:
    values = floats(mark.values)
    position = np.arange(len(values))
    ax.barh(position, values, color=mark.color, alpha=mark.opacity)
    for p, value, text in zip(position, values, mark.texts):
        ax.text(min(value, 0.9) + 0.01, p, text, va="center", fontsize=9)


def wrap(label: str, width: int = 24, lines: int = 5) -> str:
    """Break a long label onto lines (layer lists break at their ' | ')."""
    if len(label) <= width:
        return label
    return "\n".join(textwrap.wrap(label, width=width, break_long_words=True, max_lines=lines, placeholder="…"))


def set_axis(ax, which: str, panel: Panel) -> None:
    """Scale, ticks, range and format of one axis."""
    axis = panel.x if which == "x" else panel.y
    target = ax.xaxis if which == "x" else ax.yaxis
    values = extent(panel, which)
    if axis.hidden:
        target.set_ticks([])
    if axis.log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log", nonpositive="mask")
        if axis.ticks is None:
            around = decades(values) if values else None
            if around:
                (ax.set_xlim if which == "x" else ax.set_ylim)(*around)
            target.set_major_locator(LogLocator(base=10))  # decade labels only, never the 2s and 5s between
            target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))  # 0.01 rather than 10^-2
            target.set_minor_formatter(NullFormatter())
    if axis.categories is not None:
        set_category_ticks(ax, axis.categories, which, bars=any(isinstance(m, Bars) for m in panel.marks))
    if axis.ticks:
        target.set_ticks([v for v, _ in axis.ticks], labels=[t for _, t in axis.ticks])
        target.set_minor_locator(NullLocator())
    if axis.whole and not axis.log:
        target.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
    if axis.percent:
        target.set_major_formatter(PercentFormatter(xmax=1.0))
    limits = ax.set_xlim if which == "x" else ax.set_ylim
    if axis.range and not (axis.log and axis.ticks is None and values):
        limits(*axis.range)
    elif axis.whole and values and values[1] - values[0] < 2:  # a run of one or two epochs: not a zoomed-in speck
        limits(values[0] - 1, values[1] + 1)
    if which == "y" and short_x(panel) and not axis.range and not axis.log and axis.categories is None:
        low, high = ax.get_ylim()  # its values: at least 10% of their level, not ticks like 0.995..1.005
        min_span = 0.1 * max(abs(low), abs(high), 1e-3)
        if high - low < min_span:
            middle = (low + high) / 2
            ax.set_ylim(middle - min_span / 2, middle + min_span / 2)
    if axis.zero and not axis.log:
        low, high = ax.get_ylim() if which == "y" else ax.get_xlim()
        limits(min(low, 0.0), max(high, 0.0))
    if axis.reverse:
        (ax.invert_xaxis if which == "x" else ax.invert_yaxis)()


def short_x(panel: Panel) -> bool:
    """Whether the panel's x axis counts one or two epochs (or trials) only."""
    values = extent(panel, "x")
    return bool(panel.x.whole and values and values[1] - values[0] < 2)


def set_category_ticks(ax, categories: list[str], which: str, bars: bool = False) -> None:
    """Tick labels for a categorical axis, shortened, wrapped, tilted and thinned to stay readable."""
    positions = np.arange(len(categories))
    step = max(1, math.ceil(len(categories) / MAX_CATEGORY_TICKS))
    shown = abbreviate(categories, 110)[::step]
    positions, labels = positions[::step], [wrap(c, 30 if bars else 24) for c in shown]
    if which == "y":
        ax.set_yticks(positions, labels=labels, fontsize=9 if bars else 8)
        return
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    if len(labels) > 4 and longest > 6:
        ax.set_xticks(positions, labels=labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(positions, labels=labels, fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())


def legend(fig, axes, entries: list[list]) -> None:
    """One legend below the panels when they all draw a series in common (or one panel names any), the union
    of their entries; else one below each panel. ``entries``: (handle, label, group, listed) of each panel."""
    named = [e for e in entries if e]
    if not named:
        return
    if set.intersection(*({group for _, _, group, _ in e} for e in named)):
        handles = list({group: (h, label) for e in named for h, label, group, listed in e if listed}.values())
        if not handles:
            return
        longest = max(len(label) for _, label in handles)
        fig.legend([h for h, _ in handles], [label for _, label in handles], loc="outside lower center",
                   ncols=1 if longest > 50 else 2 if len(handles) > 4 or longest > 25 else len(handles),
                   fontsize=8, frameon=False)
        return
    for ax, panel_entries in zip(axes, entries):
        handles = [(h, label) for h, label, _, listed in panel_entries if listed]
        if handles:  # below the panel: a deep network's lines fill it
            ax.legend([h for h, _ in handles], [label for _, label in handles], loc="upper center",
                      bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=3, frameon=False, columnspacing=1.0,
                      handlelength=1.6)
