"""``nnexp export mlflow | tensorboard | csv | parquet``: runs out to the tools teams use.

The runs are chosen as ``nnexp runs`` chooses them (--sweep, --where, and --tag); each
target's library is imported only by its command (see nnexp/export).
"""

from __future__ import annotations

import json

import click

from ..export import mlflow as to_mlflow
from ..export import tables
from ..export import tensorboard as to_tensorboard
from ..export.runs import chosen_records
from .options import JSON_OPTION, STORE_OPTION


def selection(command):
    """The options that choose the runs, as every listing command has them."""
    for option in reversed((
        click.option("--sweep", "sweep_refs", multiple=True,
                     help="The runs of a sweep (id, id prefix or name); repeat it for several sweeps."),
        click.option("--where", default=None, help="The runs matching a filter (the grammar of 'nnexp compare')."),
        click.option("--tag", "tags", multiple=True, help="The runs with this tag; repeat it for runs with all."),
        STORE_OPTION,
    )):
        command = option(command)
    return command


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def export():
    """Export runs to MLflow, TensorBoard, CSV or Parquet (all runs, or those chosen with
    --sweep, --where and --tag)."""


@export.command("mlflow")
@click.option("--tracking-uri", required=True, metavar="URI",
              help="The MLflow tracking store, e.g. sqlite:///mlflow.db or http://host:5000.")
@click.option("--experiment", default=to_mlflow.EXPERIMENT, show_default=True, help="The MLflow experiment.")
@selection
@JSON_OPTION
def mlflow(tracking_uri, experiment, sweep_refs, where, tags, store, as_json):
    """Write runs into an MLflow tracking store: params, metrics per epoch or step, tags, the
    note, single values, config.yaml and plots; exporting again updates the same MLflow runs.
    Needs nnexp[mlflow]."""
    to_mlflow.check(tracking_uri)  # a usage error before the store is read
    records = chosen_records(store, sweep_refs, where, tags)
    done = to_mlflow.export_runs(records, tracking_uri, experiment)
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    created = sum(d["created"] for d in done)
    click.echo(f"exported {_plural(len(done), 'run')} to MLflow experiment {experiment!r} at {tracking_uri}: "
               f"{created} created, {len(done) - created} updated")


@export.command("tensorboard")
@click.argument("folder", metavar="DIR")
@selection
@JSON_OPTION
def tensorboard(folder, sweep_refs, where, tags, store, as_json):
    """Write one TensorBoard event file per run under DIR/<run id>/: scalars per epoch or step,
    the config as hyper-parameters (the HParams view). Needs nnexp[tensorboard]."""
    to_tensorboard.check(folder)
    records = chosen_records(store, sweep_refs, where, tags)
    written = to_tensorboard.export_runs(records, folder)
    if as_json:
        click.echo(json.dumps([{"id": r["id"], "folder": str(p)} for r, p in zip(records, written)], indent=2))
        return
    click.echo(f"exported {_plural(len(written), 'run')} to {folder} (tensorboard --logdir {folder})")


def _table_command(fmt: str, extra: str):
    @selection
    @JSON_OPTION
    @click.argument("path", metavar="FILE")
    def command(path, sweep_refs, where, tags, store, as_json):
        tables.check(path, fmt)
        records = chosen_records(store, sweep_refs, where, tags)
        runs_path, metrics_path = tables.write_tables(records, path, fmt)
        if as_json:
            click.echo(json.dumps({"runs": str(runs_path), "metrics": str(metrics_path), "count": len(records)}))
            return
        click.echo(f"wrote {_plural(len(records), 'run')} to {runs_path} and their metrics to {metrics_path}")

    command.__doc__ = (f"Write the runs table to FILE (one row per run: the columns of nnexp.load_runs) and the "
                       f"metrics table to FILE with '-metrics' before its suffix (run_id, step, epoch, metric, "
                       f"value: one row per metrics.csv cell), as {fmt.upper()}{extra}.")
    return export.command(fmt)(command)


csv = _table_command("csv", "")
parquet = _table_command("parquet", " (needs nnexp[parquet])")
