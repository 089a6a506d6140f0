"""What ``nnexp compare`` does, step by step: select, compare, print, plot, report."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from ..errors import NnexpError
from ..values import is_missing
from .fmt import format_cell
from .pareto import mark_front, sweep_objectives
from .significance import ALPHA, PAIRED
from .select import RunQuery, select_runs
from .table import DEFAULT_METRICS, REFERENCE, Comparison, compare, render, render_table


def run_compare(store, run_refs, sweep_ref, where, sort, agg, metrics, group, ascending, limit, fmt,
                plots_dir, report_path, argv, baseline=None, best_so_far=False) -> None:
    sweep_refs = (sweep_ref,) if isinstance(sweep_ref, str) else tuple(r for r in sweep_ref or () if r)
    chosen = select_runs(store, RunQuery(runs=tuple(run_refs), sweeps=sweep_refs, where=where))
    records, sweep = chosen.records, chosen.sweep
    if not records:
        what = " and ".join(filter(None, [
            f"runs {', '.join(run_refs)}" if run_refs else "",
            f"sweep {', '.join(sweep_refs)}" if sweep_refs else "",
            f"--where {where!r}" if where else ""])) or "the store"
        raise NnexpError(f"no runs to compare: nothing in {store} matches {what}")
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    result = comparison(records, sweep, sort=sort, agg=agg, metrics=wanted, group=group, ascending=ascending,
                        limit=limit, baseline=baseline)
    if best_so_far:
        _print_best_so_far(result, fmt)
    else:
        click.echo(render(result, fmt))
        if fmt == "text":
            how = ("grouped over seeds: mean, std, 95% CI of the mean, n" if result.grouped else "one row per run")
            click.echo(f"{len(result.records)} runs, {len(result.table_rows)} rows ({how}); sorted by "
                       f"{result.metric} ({result.goal})", err=True)
            if result.reference is not None:
                click.echo(tests_note(result), err=True)
    if plots_dir:
        _plots(result, sweep, Path(plots_dir))
    if report_path:
        _report(result, sweep, report_path, store, where, argv)


def comparison(records: list[dict], sweep: dict | None = None, sort: str | None = None, agg: str = "final",
               metrics: list[str] | None = None, group: bool | None = None, ascending: bool | None = None,
               limit: int | None = None, baseline: str | None = None) -> Comparison:
    """What ``nnexp compare`` shows for these records (and the sweep's state, when
    they are a sweep's): the dashboard's compare and sweep pages call this too,
    so that both show the same table, tests and Pareto front.

    ``sort`` defaults to the sweep's metric, else val_accuracy; ``ascending``
    None: best first (the sweep's goal for its metric, else from the name). A
    multi-objective sweep's metrics are shown and its Pareto front marked
    (``objectives`` on the result).
    """
    goal = None if ascending is None else ("minimize" if ascending else "maximize")
    default_sort = (sweep or {}).get("metric") or "val_accuracy"
    if goal is None and sweep and (sort or default_sort) == sweep.get("metric"):
        goal = sweep.get("goal")
    objectives = sweep_objectives(sweep)
    if objectives and metrics is None:
        metrics = list(DEFAULT_METRICS) + [c.removeprefix("metric.") for c, _ in objectives
                                           if c.removeprefix("metric.") not in DEFAULT_METRICS]
    result = compare(records, sort=sort, agg=agg, metrics=metrics, group=group, goal=goal, limit=limit,
                     baseline=baseline, default_sort=default_sort)
    result.objectives = objectives
    if objectives:
        mark_front(result, objectives)
    return result


def _print_best_so_far(result: Comparison, fmt: str) -> None:
    from .best_so_far import best_so_far_table  # pandas: only for this table

    table = best_so_far_table(result.runs, result.metric, result.goal)
    if table.empty:
        raise NnexpError("--best-so-far needs the runs of a sweep (--sweep): these runs belong to none")
    click.echo(render_table(list(table.columns), table.to_dict("records"), fmt))
    if fmt == "text":
        click.echo(f"best {result.metric.removeprefix('metric.')} ({result.goal}) among each sweep's first n "
                   "trials, pruned trials not counted", err=True)


def _plots(result: Comparison, sweep, plots_dir: Path) -> None:
    from .plots import comparison_plots  # matplotlib (heavy): only for --plots

    try:
        plots_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnexpError(f"cannot create the plots directory {plots_dir}: {exc.strerror or exc}") from None
    plots = comparison_plots(result.runs, None, result.varied, result.metric, result.goal, plots_dir,
                             sweep=sweep is not None, objectives=result.objectives)
    missing = "" if result.runs[result.metric].notna().any() else \
        f" (no run has {result.metric.removeprefix('metric.')} yet: its plots are left out)"
    click.echo(f"{len(plots)} plots in {plots_dir}{missing}", err=True)


def _report(result: Comparison, sweep, report_path, store, where, argv) -> None:
    from .charts import comparison_charts  # pandas: only for --report
    from .report import write_report

    charts = comparison_charts(result.runs, result.varied, result.metric, result.goal, sweep=sweep is not None,
                               objectives=result.objectives)
    title = f"nnexp: sweep {sweep['name']}" if sweep else f"nnexp: {len(result.records)} runs compared"
    notes = [f"command: nnexp {' '.join(shlex.quote(a) for a in argv[1:])}", f"store: {store}",
             f"{len(result.records)} runs; sorted by {result.metric} ({result.goal})"]
    if result.reference is not None:
        notes.append(tests_note(result))
    if where:
        notes.append(f"filter: {where}")
    if sweep:
        notes.append(f"sweep {sweep['id']}: {sweep.get('method')}, {sweep.get('trials')} trials, "
                     f"status {sweep.get('status')}")
    write_report(report_path, title, result.table, charts, notes)
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


def test_lines(result: Comparison) -> list[str]:
    """The tests against the reference in words, one line each: the reference, then
    each other row with its test, difference, p-values and verdict (at ALPHA, Holm)."""
    lines = []
    if result.reference is not None:
        m = result.metric.removeprefix("metric.")
        ref = result.reference
        lines.append(f"reference: {_setting(result, ref)} ({ref.get('runs')} runs, {m} {format_cell(m, ref.get(m))})")
        for row, test in zip(result.table_rows, result.tests):
            if row.get("test") == REFERENCE:
                continue
            if test is None:
                lines.append(f"{_setting(result, row)}: not tested (each group needs two runs or more)")
                continue
            how = "paired t-test over the seeds both ran" if test["test"] == PAIRED else "Welch's t-test"
            diff = format_cell(f"{m} diff", test["diff"])
            ci = f"95% CI {format_cell(f'{m} diff', test['low'])} to {format_cell(f'{m} diff', test['high'])}"
            if is_missing(test["p"]):
                verdict = "no p-value (the differences do not vary)"
            else:
                verdict = (f"p = {test['p']:.3g}, Holm {test['p_holm']:.3g}: "
                           + (f"a difference at the {ALPHA:.0%} level" if test["p_holm"] < ALPHA
                              else f"no clear difference at the {ALPHA:.0%} level"))
            lines.append(f"{_setting(result, row)}: {how}, {m} {diff} ({ci}), {verdict}")
    if result.objectives:
        lines.append("Pareto front (column pareto) of " + ", ".join(
            f"{c.removeprefix('metric.')} ({goal})" for c, goal in result.objectives))
    return lines


def _setting(result: Comparison, row: dict) -> str:
    """A table row's values of what differs, e.g. ``lr=0.01``; 'row 1' when nothing differs."""
    names = result.columns[:len(result.varied)]
    return ", ".join(f"{k}={format_cell(k, row.get(k))}" for k in names) or "row 1"

