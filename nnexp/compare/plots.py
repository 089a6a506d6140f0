"""Plots that compare runs, as PNG files: the comparison's chart descriptions
(``nnexp/charts/comparison.py``) drawn by matplotlib (``nnexp/charts/matplotlib.py``),
for ``nnexp compare --plots``. Runs that repeat a configuration over seeds are pooled
into one group (mean and 95% confidence interval)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..charts.comparison import planned
from ..charts.matplotlib import save_png

logger = logging.getLogger(__name__)


def comparison_plots(runs: pd.DataFrame, curves: Mapping | None, varied: list[str], metric: str, goal: str,
                     out_dir, sweep: bool = False, objectives: list[tuple[str, str]] = ()) -> list[tuple[str, Path]]:
    """Write the comparison plots for a set of runs; return [(title, png path)] in display order.

    Args:
        runs: the pandas view of runs (one row per run; columns id, trial,
            status, path, param.*, metric.*), already filtered and sorted.
        curves: run id -> that run's metrics.csv (a DataFrame, or {column: values});
            runs without an entry have no curve; None: read from the ``path`` column,
            only for the runs the learning curves show.
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
    plan = planned(runs, varied, metric, goal, sweep, curves, objectives)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for _, filename, title, build in plan:
        path = out_dir / filename
        try:
            chart = build()
            if chart is not None:
                save_png(chart, path)
        except Exception as exc:  # noqa: BLE001 -- one odd plot must not cost the others
            logger.warning("skipped %s: %s: %s", filename, type(exc).__name__, exc, exc_info=True)
            chart = None
        if chart is not None:
            written.append((title, path))
        else:
            path.unlink(missing_ok=True)  # no stale PNG from an earlier call
    return written
