"""What ``nnexp compare`` does, step by step: select, compare, print, plot, report."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import click

from ..errors import NnexpError
from ..tracking.run import METRICS
from .select import select_records
from .table import REFERENCE, Comparison, compare, render


def run_compare(store, run_refs, sweep_ref, where, sort, agg, metrics, group, ascending, limit, fmt,
                plots_dir, report_path, argv, baseline=None) -> None:
    records, sweep = select_records(store, run_refs, sweep_ref, where)
    if not records:
        what = " and ".join(filter(None, [
            f"runs {', '.join(run_refs)}" if run_refs else "", f"sweep {sweep_ref}" if sweep_ref else "",
            f"--where {where!r}" if where else ""])) or "the store"
        raise NnexpError(f"no runs to compare: nothing in {store} matches {what}")
    goal = None if ascending is None else ("minimize" if ascending else "maximize")
    sort = sort or (sweep or {}).get("metric") or "val_accuracy"
    if goal is None and sweep and sort == sweep.get("metric"):
        goal = sweep.get("goal")
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    result = compare(records, sort=sort, agg=agg, metrics=wanted, group=group, goal=goal, limit=limit,
                     baseline=baseline)
    click.echo(render(result, fmt))
    if fmt == "text":
        how = ("grouped over seeds: mean, std, 95% CI of the mean, n" if result.grouped else "one row per run")
        click.echo(f"{len(result.records)} runs, {len(result.table_rows)} rows ({how}); sorted by {result.metric} "
                   f"({result.goal})", err=True)
        if result.reference is not None:
            click.echo(tests_note(result), err=True)
    if plots_dir or report_path:
        _plots_and_report(result, sweep, Path(plots_dir) if plots_dir else None, report_path, store, where, argv)


def _plots_and_report(result, sweep, plots_dir, report_path, store, where, argv) -> None:
    from .plots import comparison_plots  # matplotlib and pandas (heavy): only for --plots and --report
    from .report import write_report

    curves = _curves(result.runs)
    with tempfile.TemporaryDirectory(prefix="nnexp-compare-") as tmp:
        out = plots_dir or Path(tmp)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NnexpError(f"cannot create the plots directory {out}: {exc.strerror or exc}") from None
        plots = comparison_plots(result.runs, curves, result.varied, result.metric, result.goal, out,
                                 sweep=sweep is not None)
        if plots_dir:
            click.echo(f"{len(plots)} plots in {plots_dir}", err=True)
        if report_path:
            title = f"nnexp: sweep {sweep['name']}" if sweep else f"nnexp: {len(result.runs)} runs compared"
            notes = [f"command: nnexp {' '.join(shlex.quote(a) for a in argv[1:])}", f"store: {store}",
                     f"{len(result.records)} runs; sorted by {result.metric} ({result.goal})"]
            if result.reference is not None:
                notes.append(tests_note(result))
            if where:
                notes.append(f"filter: {where}")
            if sweep:
                notes.append(f"sweep {sweep['id']}: {sweep.get('method')}, {sweep.get('trials')} trials, "
                             f"status {sweep.get('status')}")
            write_report(report_path, title, result.table, plots, notes)
            click.echo(f"report: {report_path}", err=True)


def tests_note(result: Comparison) -> str:
    """What the test columns compare, in one line."""
    ref = result.reference
    shown = ", ".join(f"{k}={v}" for k, v in ref.items() if k != "runs" and k in result.columns[:len(result.varied)])
    tested = result.tested
    if not tested:
        return (f"tests against the reference ({shown or 'row 1'}): none, each needs two runs or more in both "
                "groups (--baseline names another reference)")
    return (f"diff, 95% CI, p: each group minus the reference ({shown or 'row 1'}; test '{REFERENCE}'), "
            f"Welch's t-test or paired by seed (test column); p (Holm): adjusted over the "
            f"{tested} group{'s' if tested != 1 else ''} tested; effect: Hedges' g (welch) or d_z (paired); "
            f"seeds@80%: seeds per group for 80% power at alpha 0.05")


def _curves(runs, limit: int = 2000) -> dict:
    """metrics.csv of each run (the first ``limit`` in the comparison's order)."""
    import pandas as pd  # with matplotlib, only for --plots and --report

    curves = {}
    for run_id, path in zip(runs["id"][:limit], runs["path"][:limit]):
        try:
            curves[run_id] = pd.read_csv(Path(path) / METRICS)
        except (OSError, ValueError, pd.errors.ParserError):
            continue
    return curves
