"""``nnexp compare`` (runs side by side, over seeds, as a table, plots and a report) and
``nnexp diff`` (two runs, key by key)."""

from __future__ import annotations

import json
import sys

import click

from ..compare.cli import run_compare
from ..compare.diff import curve_table, diff_records, plot_curves
from ..compare.fmt import format_cell
from ..compare.select import RunQuery, select_runs
from ..errors import ConfigError
from ..text_table import aligned
from ..tracking import RunStore
from .options import JSON_OPTION, STORE_OPTION


@click.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--sweep", "sweep_refs", multiple=True,
              help="The runs of a sweep (its id, id prefix or name); repeat it for several sweeps.")
@click.option("--where", default=None,
              help="Filter, e.g. \"optimizer.name == 'adam' and val_accuracy > 0.97\".")
@click.option("--sort", default=None, help="Metric (or parameter) to sort and plot by [default: the sweep's "
              "metric, else val_accuracy; runs that lack it, such as runs before their first epoch, keep their "
              "order].")
@click.option("--agg", type=click.Choice(["final", "best", "mean"]), default="final", show_default=True,
              help="Per-epoch metrics as the last epoch's value, the best epoch's or the mean over epochs.")
@click.option("--metrics", default=None, help="Comma-separated metrics to show "
              "[default: val_accuracy,val_loss,test_accuracy,train_seconds].")
@click.option("--group/--no-group", default=None, help="Aggregate runs that differ only in their seed "
              "[default: when there are such runs].")
@click.option("--baseline", default=None, metavar="GROUP",
              help="Test every group against this one instead of the best: its row number in the table "
                   "or key=value[,key=value...] of the parameters that differ (e.g. lr=0.001).")
@click.option("--asc/--desc", "ascending", default=None, help="Sort order [default: best first].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the first N rows.")
@click.option("--best-so-far", "best_so_far", is_flag=True,
              help="Instead of the table: each sweep's best metric after every 5 trials (searches side by side).")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print a Markdown table.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Save comparison plots (PNG) in this directory.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report (table and plots).")
@STORE_OPTION
@JSON_OPTION
def compare(run_refs, sweep_refs, where, sort, agg, metrics, group, baseline, ascending, limit, best_so_far, fmt,
            plots_dir, report_path, store, as_json):
    """Compare runs: what differs, the metrics, and over seeds mean, std, n and 95% CI, with each
    group tested against the best (difference, its CI, p-value, Holm, effect size, seeds needed)."""
    run_compare(store=store, run_refs=run_refs, sweep_ref=sweep_refs, where=where, sort=sort, agg=agg,
                metrics=metrics, group=group, ascending=ascending, limit=limit,
                fmt="json" if as_json else (fmt or "text"), plots_dir=plots_dir, report_path=report_path,
                argv=sys.argv, baseline=baseline, best_so_far=best_so_far)


@click.command()
@click.argument("run_a", metavar="RUN")
@click.argument("run_b", metavar="RUN")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw both runs' curves overlaid into this PNG file.")
@STORE_OPTION
@JSON_OPTION
def diff(run_a, run_b, plot_path, store, as_json):
    """How two runs differ: the config keys that differ, the metrics side by side (b - a),
    and the curves, epoch by epoch (--plot: overlaid in a PNG)."""
    runs = RunStore(store)
    listing = runs.runs()
    a, b = runs.find(run_a, listing), runs.find(run_b, listing)
    if a.id == b.id:
        raise ConfigError(f"nnexp diff: {run_a!r} and {run_b!r} are the same run ({a.id})")
    records = {r["id"]: r for r in select_runs(store, RunQuery(runs=(a.id, b.id))).records}
    result = diff_records(records[a.id], records[b.id])
    if plot_path:
        plot_curves(result, plot_path, ("a", "b"))
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"a  {a.id}\nb  {b.id}")
    for row in result["run"]:
        click.echo(f"{row['field']:<17} a: {_text(row['field'], row['a'])}   b: {_text(row['field'], row['b'])}")
    n = len(result["params"])
    click.echo(f"\nconfig: {n} key{'s' if n != 1 else ''} differ, {result['equal_params']} equal")
    if result["params"]:
        click.echo(aligned(["key", "a", "b"], [[p["key"], _text(p["key"], p["a"]), _text(p["key"], p["b"])]
                                               for p in result["params"]]))
    click.echo("\nmetrics")
    click.echo(aligned(["metric", "a", "b", "b - a"],
                       [[m["name"], _text(m["name"], m["a"]), _text(m["name"], m["b"]),
                         format_cell(f"{m['name']} diff", m["diff"])] for m in result["metrics"]]))
    header, rows = curve_table(result)
    if rows:
        click.echo("\ncurves")
        click.echo(aligned(header, [[_text("epoch", r[0])] + [_text(h, v) for h, v in zip(header[1:], r[1:])]
                                    for r in rows]))
    if plot_path:
        click.echo(f"\ncurves overlaid: {plot_path}", err=True)


def _text(column: str, value) -> str:
    if column == "epoch" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return format_cell(column, value)
