"""``nnexp compare``: runs side by side, over seeds, as a table, plots and a report."""

from __future__ import annotations

import sys

import click

from ..compare.cli import run_compare
from .options import JSON_OPTION, STORE_OPTION


@click.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--sweep", "sweep_ref", default=None, help="The runs of one sweep (its id, id prefix or name).")
@click.option("--where", default=None,
              help="Filter, e.g. \"optimizer.name == 'adam' and val_accuracy > 0.97\".")
@click.option("--sort", default=None, help="Metric (or parameter) to sort and plot by [default: the sweep's "
              "metric, else val_accuracy].")
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
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print a Markdown table.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Save comparison plots (PNG) in this directory.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report (table and plots).")
@STORE_OPTION
@JSON_OPTION
def compare(run_refs, sweep_ref, where, sort, agg, metrics, group, baseline, ascending, limit, fmt, plots_dir,
            report_path, store, as_json):
    """Compare runs: what differs, the metrics, and over seeds mean, std, n and 95% CI, with each
    group tested against the best (difference, its CI, p-value, Holm, effect size, seeds needed)."""
    run_compare(store=store, run_refs=run_refs, sweep_ref=sweep_ref, where=where, sort=sort, agg=agg,
                metrics=metrics, group=group, ascending=ascending, limit=limit,
                fmt="json" if as_json else (fmt or "text"), plots_dir=plots_dir, report_path=report_path,
                argv=sys.argv, baseline=baseline)
