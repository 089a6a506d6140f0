"""One run's interactive charts: its learning curves, its other metrics and its per-layer diagnostics,
the run's chart descriptions (``nnexp/charts/run.py``) as plotly.js figures. The run page asks for them
again whenever the run logs a row, and ``uirevision`` keeps a reader's zoom across redraws."""

from __future__ import annotations

from ..charts.plotly import figure
from ..charts.run import MAX_POINTS, diagnostic_chart, learning_curves, other_metrics  # noqa: F401 -- MAX_POINTS: how many points a curve keeps


def run_charts(rows: list[dict], diagnostics: dict) -> list[dict]:
    """The charts of a run: learning curves from its metrics rows ({column: value}
    per row), a chart of its other metrics, then one chart per diagnostic statistic
    (``read_diagnostics``); none for what is missing."""
    charts = []
    for chart_id, title, chart in (("curves", "Learning curves", learning_curves(rows)),
                                   ("curves-other", "Other metrics", other_metrics(rows))):
        if chart is not None:
            charts.append({"id": chart_id, "title": title, "figure": figure(chart), "wide": True})
    for stat in diagnostics.get("stats", []):
        chart = diagnostic_chart(stat, [s for s in diagnostics["series"] if s["stat"] == stat])
        if chart is not None:
            charts.append({"id": f"diagnostics-{stat}", "title": stat, "figure": figure(chart), "wide": False})
    return charts
