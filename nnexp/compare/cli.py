"""What ``nnexp compare`` does, step by step: select, compare, print, plot, report."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pandas as pd

from ..errors import NnexpError
from ..tracking.run import METRICS
from .charts import comparison_charts
from .frame import records_frame
from .report import write_report
from .select import select_records
from .table import Comparison, compare, render


def run_compare(store, run_refs, sweep_ref, where, sort, agg, metrics, group, ascending, limit, fmt,
                plots_dir, report_path, argv) -> None:
    records, sweep = select_records(store, run_refs, sweep_ref, where)
    if not records:
        what = " and ".join(filter(None, [
            f"runs {', '.join(run_refs)}" if run_refs else "", f"sweep {sweep_ref}" if sweep_ref else "",
            f"--where {where!r}" if where else ""])) or "the store"
        raise NnexpError(f"no runs to compare: nothing in {store} matches {what}")
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    result = comparison(records, sweep, sort=sort, agg=agg, metrics=wanted, group=group, ascending=ascending,
                        limit=limit)
    click.echo(render(result.table, fmt))
    if fmt == "text":
        how = ("grouped over seeds: mean, std, 95% CI of the mean, n" if result.grouped else "one row per run")
        click.echo(f"{len(result.runs)} runs, {len(result.table)} rows ({how}); sorted by {result.metric} "
                   f"({result.goal})", err=True)
    if plots_dir:
        _plots(result, sweep, Path(plots_dir))
    if report_path:
        _report(result, sweep, report_path, store, where, argv)


def comparison(records: list[dict], sweep: dict | None = None, sort: str | None = None, agg: str = "final",
               metrics: list[str] | None = None, group: bool | None = None, ascending: bool | None = None,
               limit: int | None = None) -> Comparison:
    """What ``nnexp compare`` shows for these records (and the sweep's state, when
    they are a sweep's): the dashboard's compare and sweep pages call this too,
    so that both show the same table and statistics.

    ``sort`` defaults to the sweep's metric, else val_accuracy; ``ascending``
    None: best first (the sweep's goal for its metric, else from the name).
    """
    goal = None if ascending is None else ("minimize" if ascending else "maximize")
    sort = sort or (sweep or {}).get("metric") or "val_accuracy"
    if goal is None and sweep and sort == sweep.get("metric"):
        goal = sweep.get("goal")
    return compare(records_frame(records), sort=sort, agg=agg, metrics=metrics, group=group, goal=goal,
                   limit=limit)


def _plots(result: Comparison, sweep, plots_dir: Path) -> None:
    from .plots import comparison_plots  # matplotlib (heavy): only for --plots

    try:
        plots_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnexpError(f"cannot create the plots directory {plots_dir}: {exc.strerror or exc}") from None
    plots = comparison_plots(result.runs, _curves(result.runs), result.varied, result.metric, result.goal, plots_dir,
                             sweep=sweep is not None)
    click.echo(f"{len(plots)} plots in {plots_dir}", err=True)


def _report(result: Comparison, sweep, report_path, store, where, argv) -> None:
    charts = comparison_charts(result.runs, result.varied, result.metric, result.goal, sweep=sweep is not None)
    title = f"nnexp: sweep {sweep['name']}" if sweep else f"nnexp: {len(result.runs)} runs compared"
    notes = [f"command: nnexp {' '.join(shlex.quote(a) for a in argv[1:])}", f"store: {store}",
             f"{len(result.runs)} runs; sorted by {result.metric} ({result.goal})"]
    if where:
        notes.append(f"filter: {where}")
    if sweep:
        notes.append(f"sweep {sweep['id']}: {sweep.get('method')}, {sweep.get('trials')} trials, "
                     f"status {sweep.get('status')}")
    write_report(report_path, title, result.table, charts, notes)
    click.echo(f"report: {report_path}", err=True)


def _curves(runs, limit: int = 2000) -> dict:
    """metrics.csv of each run (the first ``limit`` in the comparison's order)."""
    curves = {}
    for run_id, path in zip(runs["id"][:limit], runs["path"][:limit]):
        try:
            curves[run_id] = pd.read_csv(Path(path) / METRICS)
        except (OSError, ValueError, pd.errors.ParserError):
            continue
    return curves
