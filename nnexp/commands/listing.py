"""``nnexp runs``, ``show`` and ``sweeps``: what the store holds.

The most used commands, on stores of thousands of runs: this module and what
it imports load neither NumPy nor pandas.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..compare.fmt import percent, short_note, summary_text
from ..compare.select import RunQuery, select_runs
from ..text_table import aligned
from ..tracking import RunInfo, RunStore, live_status
from ..tracking.health import diagnose, read_diagnostic_rows
from ..tracking.records import listed
from ..tracking.run import COMPLETED, FAILED, PRUNED
from ..tracking.sweeps import list_sweeps
from .options import JSON_OPTION, STORE_OPTION

RUN_COLUMNS = ("id", "name", "status", "epochs", "val_acc", "test_acc", "params", "train_s", "started")
SWEEP_COLUMNS = ("id", "name", "status", "method", "trials", "done", "failed", "best", "updated")


def cell(col: str, value) -> str:
    """Fractions in [0, 1] named *_acc as percents, other floats with one decimal, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return percent(value) if col.endswith("acc") else f"{value:.1f}"
    if isinstance(value, int) and col == "params":
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict], columns) -> str:
    """A plain aligned text table (see ``cell``), one column at a time (a listing of 10,000 runs)."""
    texts = [[cell(c, r[c] if c in r else None) for r in rows] for c in columns]
    return aligned(list(columns), [list(row) for row in zip(*texts)])


_COMMON = {"val_acc": (float, percent), "test_acc": (float, percent), "params": (int, "{:,}".format),
           "train_s": (float, "{:.1f}".format), "started": (str, str)}


def progress(summary: dict) -> str:
    """The epochs column: epochs done of planned; a script's epochs logged, else its last step."""
    done, planned = summary.get("epochs_completed"), summary.get("epochs_planned")
    if planned is not None:
        return f"{'?' if done is None else done}/{planned}"
    if done is not None:
        return str(done)
    step = summary.get("last_step")
    return "-" if step is None else f"step {step}"


def run_table(infos: list[RunInfo]) -> str:
    """The listing of ``infos`` as text (RUN_COLUMNS, then tags and note where some run
    has them), built column by column: a listing may have 10,000 rows."""
    summaries = [i.summary for i in infos]
    tags = [s.get("tags") for s in summaries]
    tags = [",".join(map(str, t)) if isinstance(t, list) and t else "-" for t in tags]
    notes = [short_note(s.get("note")) or "-" for s in summaries]
    texts = [
        [i.id for i in infos],
        [v if type(v) is str else cell("name", v) for v in (s.get("name") for s in summaries)],
        [v if type(v) is str else cell("status", v) for v in map(live_status, summaries)],
        [progress(s) for s in summaries],
    ]
    for key, column in (("final_val_accuracy", "val_acc"), ("test_accuracy", "test_acc"), ("params", "params"),
                        ("train_seconds", "train_s"), ("started", "started")):
        values = [s.get(key) for s in summaries]
        common = _COMMON[column]  # the usual type, formatted without a call per cell
        texts.append([common[1](v) if type(v) is common[0] else cell(column, v) for v in values])
    columns = list(RUN_COLUMNS)
    for column, values in (("tags", tags), ("note", notes)):
        if any(v != "-" for v in values):
            columns.append(column)
            texts.append(values)
    return aligned(columns, list(zip(*texts)))


@click.command()
@STORE_OPTION
@JSON_OPTION
@click.option("--reindex", is_flag=True, help="Rebuild the store's index from the run folders first.")
@click.option("--sweep", "sweep_ref", default=None, help="Only the runs of this sweep (id, id prefix or name).")
@click.option("--where", default=None, help="Only the runs matching a filter (the grammar of 'nnexp compare').")
@click.option("--tag", "tags", multiple=True, help="Only the runs with this tag (repeat: with all of them).")
@click.option("--status", "statuses", multiple=True,
              help="Only the runs with this status, as listed ('dead' for a killed run; repeat: any of them).")
def runs(store, as_json, reindex, sweep_ref, where, tags, statuses):
    """List the runs in the store, oldest first."""
    if reindex:
        records = RunStore(store).records(reindex=True)
        click.echo(f"indexed {len(records)} run{'s' if len(records) != 1 else ''} in {store}", err=True)
    query = RunQuery(sweeps=(sweep_ref,) if sweep_ref else (), where=where, tags=tags, statuses=statuses)
    if query.narrows:
        records = select_runs(store, query).records
        infos = [RunInfo(Path(r["path"]), r["summary"]) for r in records]
    elif reindex:
        infos = [RunInfo(Path(r["path"]), r["summary"]) for r in records]
    else:
        infos = RunStore(store).runs(brief=not as_json)
    if as_json:
        click.echo(json.dumps([listed(i.id, i.path, i.summary) for i in infos], indent=2))
        return
    if not infos:
        click.echo(f"no runs in {store}" + (" match" if query.narrows else ""))
        return
    click.echo(run_table(infos))


@click.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@JSON_OPTION
def show(run_ref, store, as_json):
    """Show a run's summary, what its diagnostics warn of, and its files (RUN: id, id prefix, name or 'latest')."""
    info = RunStore(store).resolve(run_ref)
    try:
        warnings = diagnose(read_diagnostic_rows(info.path))
    except OSError as exc:
        click.echo(f"warning: run {info.id}: cannot read diagnostics.csv ({exc.strerror or exc})", err=True)
        warnings = []
    if as_json:
        click.echo(json.dumps({**listed(info.id, info.path, info.summary), "warnings": warnings}, indent=2))
        return
    click.echo(f"run     {info.id}\npath    {info.path}")
    for key, value in info.summary.items():
        if key in ("note", "id", "path"):
            continue  # the note last, in full; the run is its folder, whatever the summary says
        click.echo(f"{key:<22}{summary_text(key, value, info.summary)}")
    if info.summary.get("note"):
        click.echo("note\n" + "\n".join(f"  {line}" for line in str(info.summary["note"]).splitlines()))
    if warnings:
        click.echo("diagnostics")
        for warning in warnings:
            click.echo(f"  {warning['message']}")
    click.echo("files")
    for path in sorted(info.path.rglob("*")):
        if path.is_file():
            click.echo(f"  {path.relative_to(info.path)}  ({path.stat().st_size:,} bytes)")


@click.command()
@STORE_OPTION
@JSON_OPTION
def sweeps(store, as_json):
    """List the sweeps recorded in the store."""
    states = list_sweeps(Path(store))
    if as_json:
        click.echo(json.dumps(states, indent=2))
        return
    if not states:
        click.echo(f"no sweeps in {store}")
        return
    rows = []
    for s in states:
        counts, best, metric = s.get("counts") or {}, s.get("best") or {}, str(s.get("metric"))
        rows.append({"id": s.get("id"), "name": s.get("name"), "status": s.get("status"),
                     "method": s.get("method"), "trials": s.get("trials"),
                     "done": counts.get(COMPLETED, 0) + counts.get(PRUNED, 0), "failed": counts.get(FAILED, 0),
                     "best": None if not best else f"{metric} {summary_text(metric, best.get('value'))}",
                     "updated": s.get("updated")})
    click.echo(format_table(rows, SWEEP_COLUMNS))
