"""Tests for nnexp.charts: one chart description, drawn alike by the PNG and the interactive renderer."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest

from nnexp.charts import matplotlib as png
from nnexp.charts import plotly
from nnexp.charts.run import diagnostic_chart, learning_curves


@pytest.fixture(autouse=True)
def no_figures_left_open():
    yield
    assert plt.get_fignums() == []


def stat_series(stat: str, values_per_layer: list[list[float]]) -> list[dict]:
    return [{"stat": stat, "layer": k, "name": f"{k}.W", "label": f"{k}.W", "epochs": list(range(1, len(v) + 1)),
             "values": v} for k, v in enumerate(values_per_layer)]


def drawn_labels(chart, which: str = "y") -> tuple[list[str], list[str]]:
    """(major, minor) tick labels the PNG renderer shows inside the first panel's range."""
    fig = png.draw(chart)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        axis = ax.yaxis if which == "y" else ax.xaxis
        low, high = sorted(ax.get_ylim() if which == "y" else ax.get_xlim())

        def shown(minor):
            return [t.get_text() for t, v in zip(axis.get_ticklabels(minor=minor), axis.get_ticklocs(minor=minor))
                    if low * (1 - 1e-9) <= v <= high * (1 + 1e-9) and t.get_text()]
        return shown(False), shown(True)
    finally:
        plt.close(fig)


def test_percent_ticks_have_the_decimals_that_tell_small_fractions_apart():
    chart = diagnostic_chart("dead_fraction", stat_series("dead_fraction", [[0.001, 0.002, 0.004, 0.003]]))
    y = plotly.figure(chart)["layout"]["yaxis"]
    decimals = int(y["tickformat"].removeprefix(".").removesuffix("%"))
    assert decimals >= 2 and y["rangemode"] == "tozero"  # ticks at 0.05% steps: never all "0%"
    major, _ = drawn_labels(chart)
    assert len(major) >= 3 and len(set(major)) == len(major) and all(t.endswith("%") for t in major)
    rows = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.9 + 0.01 * e} for e in range(1, 8)]
    accuracy = plotly.figure(learning_curves(rows))["layout"]["yaxis2"]
    assert accuracy["tickformat"] == ".1%"


@pytest.mark.parametrize("values", [[0.05, 0.08, 0.2, 0.6], [3e-4, 0.002, 0.02, 0.3]])
def test_log_axes_label_whole_decades_only_in_both_renderers(values):
    chart = diagnostic_chart("grad_norm", stat_series("grad_norm", [values, [v * 1.5 for v in values]]))
    y = plotly.figure(chart)["layout"]["yaxis"]
    assert y["type"] == "log" and y["dtick"] == 1  # no 2s and 5s between decades
    low, high = y["range"]
    assert low == math.floor(math.log10(min(values))) and high >= math.log10(max(values) * 1.5)
    assert low.is_integer() and high.is_integer() and high - low >= 1
    major, minor = drawn_labels(chart)
    assert len(major) >= 2 and minor == []
    assert all(math.log10(float(t)).is_integer() for t in major), major


def test_the_png_and_the_interactive_chart_draw_the_same_points():
    rows = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 0.5 / e, "val_loss": 1.2 / e,
             "val_accuracy": 0.9 - 0.01 * (e - 4) ** 2} for e in range(1, 9)]
    chart = learning_curves(rows)
    traces = plotly.figure(chart)["data"]
    interactive = sorted((tuple(t["x"]), tuple(t["y"])) for t in traces)
    fig = png.draw(chart)
    try:
        drawn = sorted((tuple(line.get_xdata().tolist()), tuple(line.get_ydata().tolist()))
                       for ax in fig.axes for line in ax.get_lines()
                       if not line.get_label().startswith("warning") and len(line.get_xdata()) and
                       not (len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2))  # not the best-epoch rule
    finally:
        plt.close(fig)
    assert drawn == interactive
    assert len(interactive) == 5  # train and validation in two panels, the best epoch's star
    [star] = [t for t in traces if t.get("marker", {}).get("symbol") == "star"]
    assert star["x"] == [4.0] and star["y"] == [pytest.approx(0.9)]
