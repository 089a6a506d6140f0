"""What a chart shows, in no plotting library's terms: panels of axes and marks, a legend, titles.

A chart is described once, from the data (``comparison.py`` for runs compared,
``run.py`` for one run), and then drawn by a renderer: ``matplotlib.py`` writes
the PNG files, ``plotly.py`` makes the plotly.js figures of the dashboard and the
HTML report. A description holds plain numbers and plain text (never markup):
each renderer shortens, wraps and escapes texts as its medium needs.

Sizes are in screen pixels (a marker's diameter, a line's width); ``height`` is
the interactive chart's, ``size`` the PNG's in inches.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")  # matplotlib's tab10
BEST_COLOR = "#2ca02c"
TRAIN_COLOR, VAL_COLOR = PALETTE[0], PALETTE[1]
GREY = "#8c8c8c"
# viridis at nine evenly spaced points, interpolated linearly in between
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")


@dataclass(frozen=True)
class Field:
    """A value in a hover text: the point's "x", "y" or "text", in a d3 number format (".2%")."""

    name: str
    format: str = ""


@dataclass
class Hover:
    """What hovering a point shows: plain text and Fields, "\\n" breaking lines; ``name``: the side box
    (None: the series' name, "": none)."""

    parts: tuple
    name: str | None = ""


@dataclass
class Axis:
    """One axis. ``categories``: positions 0..n-1 carry these labels; ``ticks``: (value, label) pairs
    instead of automatic ticks; ``percent``: fractions shown as percents; ``log``: decade ticks only;
    ``whole``: whole-number ticks (epochs, trials); ``zero``: the range includes 0."""

    title: str = ""
    log: bool = False
    percent: bool = False
    categories: list[str] | None = None
    ticks: list[tuple[float, str]] | None = None
    range: tuple[float, float] | None = None
    whole: bool = False
    zero: bool = False
    reverse: bool = False
    grid: bool = True
    hidden: bool = False


@dataclass
class Series:
    """Points (``marker``), a line (``width`` > 0) or both; NaN in x or y breaks the line.

    ``step``: "post" holds each value until the next x, "pre" from the previous one; ``error``: 95%
    half-widths drawn as bars; ``texts``: one per point, for the hover's Field("text"); ``group``:
    series that show and hide together, under one legend entry.
    """

    x: Sequence[float]
    y: Sequence[float]
    name: str = ""
    color: str = PALETTE[0]
    width: float = 2.0
    dash: str = "solid"  # solid, dash, dot, dashdot
    marker: str | None = None  # circle, x, star, diamond
    size: float = 6.0
    opacity: float = 1.0
    step: str | None = None
    error: Sequence[float] | None = None
    texts: Sequence[str] | None = None
    hover: Hover | None = None
    legend: bool = True
    group: str | None = None
    on_top: bool = False


@dataclass
class Band:
    """The area between two curves over the same x (a 95% interval)."""

    x: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]
    color: str
    opacity: float = 0.2
    group: str | None = None


@dataclass
class Bars:
    """Horizontal bars, one per category of the y axis, a text beside each."""

    values: Sequence[float]
    texts: Sequence[str]
    color: str = PALETTE[0]
    opacity: float = 0.85
    hover: Hover | None = None


@dataclass
class Heatmap:
    """A grid of values (rows: the y axis's categories, columns: the x axis's), each cell's text written in it;
    the hover names the cell by the two axes' titles and ``value_name``."""

    z: np.ndarray
    texts: list[list[str]]
    value_name: str
    colors: ColorBar


@dataclass
class ColorBar:
    """A colour scale from ``low`` to ``high`` (viridis; ``reverse``: the bright end at ``low``)."""

    low: float
    high: float
    title: str
    percent: bool = False
    reverse: bool = False


@dataclass
class Line:
    """A reference line across the panel: vertical at ``x`` or horizontal at ``y``."""

    x: float | None = None
    y: float | None = None
    color: str = GREY
    dash: str = "dash"
    width: float = 1.0
    name: str = ""


@dataclass
class Note:
    """A text at a point of the panel (data coordinates); ``align``: which side of the text is at the point;
    ``offset``: shifted by these pixels (right, up); ``boxed``: on a white background."""

    x: float
    y: float
    text: str
    color: str = "#333333"
    align: str = "center"
    offset: tuple[float, float] = (0.0, 0.0)
    size: float = 10.0
    boxed: bool = False


Mark = Union[Series, Band, Bars, Heatmap]


@dataclass
class Panel:
    """One plot area: its axes, what is drawn in it, and a message where there is nothing to draw."""

    x: Axis
    y: Axis
    marks: list = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    title: str = ""
    empty: str = ""


@dataclass
class Chart:
    """Panels side by side, one title and subtitle, one legend (the series' names); ``colors``: a colour
    bar for marks coloured by value."""

    title: str
    panels: list[Panel]
    subtitle: str = ""
    colors: ColorBar | None = None
    height: int = 440
    size: tuple[float, float] | None = None


def floats(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


@functools.lru_cache(maxsize=256)
def viridis(fraction: float) -> str:
    """The viridis colour at ``fraction`` in [0, 1], as #rrggbb."""
    f = min(1.0, max(0.0, float(fraction))) * (len(VIRIDIS) - 1)
    i = min(int(f), len(VIRIDIS) - 2)
    t = f - i
    low, high = VIRIDIS[i], VIRIDIS[i + 1]
    rgb = [round(int(low[k:k + 2], 16) * (1 - t) + int(high[k:k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def decades(values) -> tuple[float, float] | None:
    """The powers of ten around the positive finite values, so that a log axis shows two decade labels at least."""
    x = floats(values)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return None
    low, high = math.floor(math.log10(x.min())), math.ceil(math.log10(x.max()))
    return 10.0 ** low, 10.0 ** max(high, low + 1)


def percent_decimals(low: float, high: float) -> int:
    """Decimals that percent ticks between two fractions need to differ (one more than the span's
    magnitude), one at least."""
    span = abs(high - low) * 100
    if not math.isfinite(span) or span <= 0:
        return 1
    return max(1, min(4, math.ceil(-math.log10(span)) + 1))


def extent(panel: Panel, axis: str) -> tuple[float, float] | None:
    """The lowest and highest finite value the panel's marks put on its "x" or "y" axis (on a log axis, the
    lowest and highest above 0)."""
    parts = []
    for mark in panel.marks:
        if isinstance(mark, Series):
            values = floats(mark.x if axis == "x" else mark.y)
            parts.append(values)
            if axis == "y" and mark.error is not None:
                error = np.nan_to_num(floats(mark.error))
                parts += [values - error, values + error]
        elif isinstance(mark, Band) and axis == "y":
            parts += [floats(mark.low), floats(mark.high)]
        elif isinstance(mark, Bars) and axis == "x":
            parts.append(floats(mark.values))
    values = np.concatenate(parts) if parts else np.array([])
    values = values[np.isfinite(values) & ((values > 0) if getattr(panel, axis).log else True)]
    return (float(values.min()), float(values.max())) if values.size else None
