"""Interactive comparison charts: the comparison's chart descriptions (``nnexp/charts/comparison.py``)
as plotly.js figures (``nnexp/charts/plotly.py``), for the HTML report of ``nnexp compare --report``
and the dashboard (``nnexp ui``)."""

from __future__ import annotations

import logging
from typing import Mapping

import pandas as pd

from ..charts.comparison import planned
from ..charts.plotly import figure, plotly_js_path  # noqa: F401 -- plotly_js_path: for the pages that draw them

logger = logging.getLogger(__name__)

WIDE = ("curves", "parallel")  # charts that need a page's full width


def comparison_charts(runs: pd.DataFrame, varied: list[str], metric: str, goal: str, sweep: bool = False,
                      curves: Mapping | None = None, objectives: list[tuple[str, str]] = ()) -> list[dict]:
    """The interactive charts for a set of runs, in display order: each
    ``{"id", "title", "figure": {"data", "layout"}, "wide"}`` (see ``charts.comparison.planned``
    for the arguments; ``curves`` None: read from the runs' folders, only for the runs a chart shows).

    A chart the data cannot support is left out; one that fails to build is
    left out with a logged warning, so odd data costs a chart, not the page.
    """
    charts = []
    for chart_id, _, title, build in planned(runs, varied, metric, goal, sweep, curves, objectives):
        try:
            chart = build()
            fig = None if chart is None else figure(chart)
        except Exception as exc:  # noqa: BLE001 -- one odd chart must not cost the others
            logger.warning("skipped chart %s: %s: %s", chart_id, type(exc).__name__, exc, exc_info=True)
            fig = None
        if fig is not None:
            charts.append({"id": chart_id, "title": title, "figure": fig, "wide": chart_id in WIDE})
    return charts
