"""Chart descriptions (``spec.py``) drawn as plotly.js figures: plain JSON-ready dicts.

``figure(chart)`` gives ``{"data": [...], "layout": {...}}``, ready for
``Plotly.newPlot(div, figure.data, figure.layout)``; the HTML report of
``nnexp compare --report`` and the dashboard (``nnexp ui``) draw these. The
figures are written by hand in plotly.js's figure format, not with plotly's
Python API: building a dict needs no import, and the only thing nnexp takes
from the ``plotly`` package is its bundled ``plotly.min.js`` (see
:func:`plotly_js_path`).

Every text of a description goes through :func:`plot_text`: plotly.js reads a
few HTML-like tags in its texts (``<a href>`` makes a link) and ``%{...}`` in
its templates, so ``<``, ``>``, ``&`` and ``%`` are written as entities and show
as themselves; a hover's own fields are the only templates a figure holds.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import math
import textwrap
from pathlib import Path

import numpy as np

from ..compare.layout import abbreviate
from ..errors import NnexpError
from .spec import Band, Bars, Chart, ColorBar, Field, Heatmap, Hover, Panel, Series, decades, extent, percent_decimals

DASHES = {"solid": "solid", "dash": "dash", "dot": "dot", "dashdot": "dashdot"}
SYMBOLS = {"circle": "circle", "x": "x", "star": "star", "diamond": "diamond"}
CATEGORY_WIDTH = 40  # characters of a category's tick label


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
    as entities, so that they show as written (no markup, no template field); lines break at "\\n"."""
    return _escaped(str(value))


@functools.lru_cache(maxsize=4096)  # a page's charts repeat the same names and hover texts
def _escaped(text: str) -> str:
    return html.escape(text, quote=False).replace("%", "&#37;").replace("\n", "<br>")


def finite_list(values) -> list:
    """Floats as a JSON-ready list, None where a value is missing or not finite (a gap in a line)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    out = values.astype(object)
    out[~finite] = None
    return out.tolist()


def rgba(color: str, alpha: float) -> str:
    return f"rgba({int(color[1:3], 16)},{int(color[3:5], 16)},{int(color[5:7], 16)},{alpha})"


def template(hover: Hover) -> str:
    """A hover template: the texts escaped, the fields as plotly.js fields."""
    out = []
    for part in hover.parts:
        if isinstance(part, Field):
            out.append(f"%{{{part.name}{':' + part.format if part.format else ''}}}")
        else:
            out.append(plot_text(part))
    if hover.name is not None:
        out.append(f"<extra>{plot_text(hover.name)}</extra>")
    return "".join(out)


def legend_rows(labels) -> int:
    """Rows a horizontal legend of these labels takes: long labels one a row, short ones several."""
    labels = [str(label) for label in labels]
    if not labels:
        return 0
    longest = max(len(label) for label in labels)
    per_row = 1 if longest > 45 else 3 if longest > 15 else 5
    return math.ceil(len(labels) / per_row)


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


def percent_format(low: float, high: float) -> str:
    return f".{percent_decimals(low, high)}%"


def axis_layout(axis, values: tuple[float, float] | None, bars: list[str] | None = None) -> dict:
    """A plotly.js axis from a description's Axis; ``values``: the extent of what is drawn on it."""
    spec = {"title": {"text": plot_text(axis.title)}, "gridcolor": "#e5e7eb", "zeroline": False, "showline": True,
            "linecolor": "#9aa1a9", "automargin": True}
    if not axis.grid:
        spec["showgrid"] = False
    if axis.hidden:
        spec.update(showticklabels=False, showline=False)
    if axis.log:
        spec["type"] = "log"
        around = decades(values) if values and not axis.ticks else None
        if around:  # one label a decade, never the 2s and 5s between them
            spec.update(dtick=1, range=[math.log10(around[0]), math.log10(around[1])])
    if axis.percent:
        low, high = values if values else (0.0, 1.0)
        spec["tickformat"] = percent_format(min(low, 0.0) if axis.zero else low, high)
    if axis.zero:
        spec["rangemode"] = "tozero"
    if axis.ticks:
        spec.update(tickvals=[v for v, _ in axis.ticks], ticktext=[plot_text(t) for _, t in axis.ticks])
    if axis.categories is not None and bars is None:
        labels = abbreviate(axis.categories, CATEGORY_WIDTH)
        spec.update(tickvals=list(range(len(labels))), ticktext=[plot_text(label) for label in labels])
    if axis.range and not (axis.log and axis.ticks is None and values):
        spec["range"] = [math.log10(v) for v in axis.range] if axis.log else list(axis.range)
    if axis.whole and values and values[1] - values[0] <= 15:  # whole epochs: one tick each, no 1.5
        spec["dtick"] = 1
    if axis.reverse:
        spec["autorange"] = "reversed"
        spec.pop("range", None)
    return spec


def colorbar(colors: ColorBar) -> dict:
    return {"title": {"text": plot_text(colors.title)},
            "tickformat": percent_format(colors.low, colors.high) if colors.percent else ""}


def series_trace(mark: Series, axes: dict) -> dict:
    mode = "+".join(m for m, on in (("lines", mark.width > 0), ("markers", mark.marker is not None)) if on)
    trace = {"type": "scatter", "mode": mode or "lines", "x": finite_list(mark.x), "y": finite_list(mark.y), **axes}
    if mark.name:
        trace["name"] = plot_text(mark.name)
    trace["showlegend"] = bool(mark.name) and mark.legend
    if mark.group:
        trace["legendgroup"] = mark.group
    if mark.width > 0:
        trace["line"] = {"color": mark.color, "width": mark.width}
        if mark.dash != "solid":
            trace["line"]["dash"] = DASHES[mark.dash]
        if mark.step:
            trace["line"]["shape"] = "hv" if mark.step == "post" else "vh"
    if mark.marker:
        trace["marker"] = {"symbol": SYMBOLS[mark.marker], "size": mark.size, "color": mark.color}
        if mark.marker == "star":
            trace["marker"]["line"] = {"color": "#1b5e20", "width": 1}
    if mark.opacity < 1:
        trace["opacity"] = mark.opacity
    if mark.error is not None:
        trace["error_y"] = {"type": "data", "array": finite_list(mark.error), "visible": True, "width": 4}
    if mark.texts is not None:
        trace["text"] = [plot_text(t) for t in mark.texts]
    if mark.hover is None:
        trace["hoverinfo"] = "skip"
    else:
        trace["hovertemplate"] = template(mark.hover)
    return trace


def band_traces(mark: Band, axes: dict) -> list[dict]:
    edge = {"type": "scatter", "mode": "lines", "x": finite_list(mark.x), **axes,
            "line": {"width": 0, "color": mark.color}, "hoverinfo": "skip", "showlegend": False}
    if mark.group:
        edge["legendgroup"] = mark.group
    return [dict(edge, y=finite_list(mark.low)),
            dict(edge, y=finite_list(mark.high), fill="tonexty", fillcolor=rgba(mark.color, mark.opacity))]


def heatmap_trace(mark: Heatmap, panel: Panel) -> dict:
    labels_x = [plot_text(label) for label in abbreviate(panel.x.categories, CATEGORY_WIDTH)]
    labels_y = [plot_text(label) for label in abbreviate(panel.y.categories, CATEGORY_WIDTH)]
    return {"type": "heatmap", "z": [finite_list(row) for row in mark.z], "x": list(range(len(labels_x))),
            "y": list(range(len(labels_y))), "text": mark.texts, "texttemplate": "%{text}",
            "customdata": [[[labels_x[c], labels_y[r]] for c in range(len(labels_x))] for r in range(len(labels_y))],
            "colorscale": "Viridis", "reversescale": mark.colors.reverse, "hoverongaps": False,
            "colorbar": colorbar(mark.colors),
            "hovertemplate": (f"{plot_text(panel.x.title)}=%{{customdata[0]}}<br>{plot_text(panel.y.title)}"
                              f"=%{{customdata[1]}}<br>{plot_text(mark.value_name)} %{{text}}<extra></extra>")}


def bars_trace(mark: Bars, panel: Panel) -> dict:
    trace = {"type": "bar", "orientation": "h", "x": finite_list(mark.values),
             "y": [plot_text(c) for c in panel.y.categories], "marker": {"color": mark.color, "opacity": mark.opacity},
             "text": [plot_text(t) for t in mark.texts], "textposition": "outside"}
    trace.update({"hoverinfo": "skip"} if mark.hover is None else {"hovertemplate": template(mark.hover)})
    return trace


def wrapped(label: str, width: int = 18, lines: int = 2) -> str:
    """A label broken onto at most ``lines`` lines of ``width`` characters (escaped)."""
    parts = textwrap.wrap(label, width=width, break_long_words=True, max_lines=lines, placeholder="…") or [label]
    return "<br>".join(plot_text(part) for part in parts)


def figure(chart: Chart) -> dict:
    """The plotly.js figure {"data", "layout"} of a chart description."""
    data, shapes, annotations, layout_axes = [], [], [], {}
    count = len(chart.panels)
    gap = 0.08
    span = (1 - gap * (count - 1)) / count
    for k, panel in enumerate(chart.panels):
        suffix = "" if k == 0 else str(k + 1)
        xref, yref = f"x{suffix}", f"y{suffix}"
        axes = {} if k == 0 else {"xaxis": xref, "yaxis": yref}
        for mark in sorted(panel.marks, key=lambda m: isinstance(m, Series) and m.on_top):
            if isinstance(mark, Series):
                data.append(series_trace(mark, axes))
            elif isinstance(mark, Band):
                data += band_traces(mark, axes)
            elif isinstance(mark, Heatmap):
                data.append(heatmap_trace(mark, panel))
            elif isinstance(mark, Bars):
                data.append(bars_trace(mark, panel))
        bars = panel.y.categories if any(isinstance(m, Bars) for m in panel.marks) else None
        x_axis = axis_layout(panel.x, extent(panel, "x"))
        y_axis = axis_layout(panel.y, extent(panel, "y"), bars)
        if count > 1:
            x_axis.update(domain=[k * (span + gap), k * (span + gap) + span], anchor=yref)
            y_axis["anchor"] = xref
        if panel.empty and not panel.marks:
            y_axis["title"] = {"text": plot_text(panel.empty)}
        layout_axes[f"xaxis{suffix}"], layout_axes[f"yaxis{suffix}"] = x_axis, y_axis
        for line in panel.lines:
            position = {"xref": xref, "yref": f"{yref} domain", "x0": line.x, "x1": line.x, "y0": 0, "y1": 1} \
                if line.x is not None else {"xref": f"{xref} domain", "yref": yref, "x0": 0, "x1": 1,
                                            "y0": line.y, "y1": line.y}
            style = {"color": line.color, "width": line.width}
            if line.dash != "solid":
                style["dash"] = DASHES[line.dash]
            shapes.append({"type": "line", **position, "line": style})
        for note in panel.notes:
            text = wrapped(note.text) if note.boxed else plot_text(note.text)
            annotations.append({"x": note.x, "y": note.y, "xref": xref, "yref": yref, "showarrow": False,
                                "text": text,
                                "xanchor": note.align, "xshift": note.offset[0], "yshift": note.offset[1],
                                "font": {"size": note.size, "color": note.color},
                                **({"bgcolor": "rgba(255,255,255,0.75)"} if note.boxed else {})})
    if chart.colors is not None:
        colors = chart.colors
        data.append({"type": "scatter", "mode": "markers", "x": [0, 0], "y": [-5, -5], "hoverinfo": "skip",
                     "showlegend": False, "marker": {
                         "color": [colors.low, colors.high], "colorscale": "Viridis", "reversescale": colors.reverse,
                         "showscale": True, "size": 0.1, "colorbar": colorbar(colors)}})
    legend = [t["name"] for t in data if t.get("showlegend")]
    extra = {}
    if shapes:
        extra["shapes"] = shapes
    if annotations:
        extra["annotations"] = annotations
    return {"data": data, "layout": base_layout(chart.title, chart.subtitle, chart.height, legend=legend,
                                                **layout_axes, **extra)}
