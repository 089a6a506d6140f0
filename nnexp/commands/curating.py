"""``nnexp tag``, ``note``, ``rm``, ``gc`` and ``du``: keeping a store tidy.

Like the listings, these load neither NumPy nor pandas.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..compare.select import RunQuery, select_runs
from ..errors import ConfigError, NnexpError
from ..text_table import aligned
from ..tracking import RunStore, live_status
from ..tracking.annotations import NOTE, TAGS, RunGone, check_note, check_tag, read_annotations
from ..tracking.garbage import KINDS, collect, find_garbage
from ..tracking.removal import candidates, remove_runs, remove_sweep_folder
from ..tracking.sweeps import find_sweep
from ..tracking.usage import human, store_usage
from .options import JSON_OPTION, STORE_OPTION

SWEEP_OPTION = click.option("--sweep", "sweep_ref", default=None, help="The runs of a sweep (id, id prefix or name).")
WHERE_OPTION = click.option("--where", default=None, help="The runs matching a filter (the grammar of 'nnexp compare').")


def chosen_runs(store: str, refs, sweep_ref, where, what: str) -> tuple[list[dict], dict | None]:
    """The records named by references, a sweep and a filter (all that are given must
    hold); ConfigError if none of the three is given."""
    if not refs and not sweep_ref and not where:
        raise ConfigError(f"{what}: name the runs (RUN..., --sweep or --where)")
    chosen = select_runs(store, RunQuery(runs=tuple(refs), sweeps=(sweep_ref,) if sweep_ref else (), where=where))
    return chosen.records, chosen.sweep


# ------------------------------------------------------------------ tag, note


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("args", metavar="RUN... [+TAG]... [-TAG]...", nargs=-1)
@SWEEP_OPTION
@WHERE_OPTION
@STORE_OPTION
@JSON_OPTION
def tag(args, sweep_ref, where, store, as_json):
    """Add (+TAG) and remove (-TAG) tags of runs; without tags, show theirs.

    Tags are kept in each run's annotations.json (a running run can be tagged),
    listed by 'nnexp runs' and filtered with --where "'best' in tags"."""
    add = [check_tag(a[1:]) for a in args if a.startswith("+")]
    remove = [check_tag(a[1:]) for a in args if a.startswith("-")]
    refs = [a for a in args if not a.startswith(("+", "-"))]
    records, _ = chosen_runs(store, refs, sweep_ref, where, "nnexp tag")
    if not records:
        raise NnexpError(f"no runs in {store} match")
    runs = RunStore(store)
    results, gone = [], []
    for r in records:
        try:
            tags = runs.annotate(r["id"], add, remove)[TAGS] if add or remove else _tags(r)
        except RunGone as exc:
            gone.append(str(exc))
            continue
        results.append({"id": r["id"], "tags": tags})
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for row in results:
            click.echo(f"{row['id']}  {', '.join(row['tags']) or '(no tags)'}")
    _gone(gone)


def _tags(record: dict) -> list[str]:
    return list((record.get("summary") or {}).get(TAGS) or [])


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("text", required=False)
@click.option("--clear", is_flag=True, help="Remove the run's note.")
@STORE_OPTION
@JSON_OPTION
def note(run_ref, text, clear, store, as_json):
    """Set the note of RUN to TEXT (replacing any earlier note); without TEXT, show it.

    The note is kept in the run's annotations.json, shown by 'nnexp show', 'runs'
    and 'compare', and filtered with --where "'lr' in note"."""
    runs = RunStore(store)
    info = runs.find(run_ref)
    if clear and text:
        raise ConfigError("nnexp note: give TEXT or --clear, not both")
    if clear or text is not None:
        value = "" if clear else check_note(text)
        current = runs.annotate(info.id, note=value).get(NOTE)
    else:
        current = read_annotations(info.path, info.id).get(NOTE)
    if as_json:
        click.echo(json.dumps({"id": info.id, "note": current}, indent=2))
    elif clear or text is not None:
        click.echo(f"{info.id}: {'note set' if current else 'no note'}")
    else:
        click.echo(current if current else f"{info.id} has no note")


def _gone(messages: list[str]) -> None:
    for message in messages:
        click.echo(f"warning: {message} meanwhile", err=True)
    if messages:
        sys.exit(1)


# ------------------------------------------------------------------ rm


@click.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@SWEEP_OPTION
@WHERE_OPTION
@click.option("--yes", "-y", is_flag=True, help="Remove without asking.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@STORE_OPTION
@JSON_OPTION
def rm(run_refs, sweep_ref, where, yes, dry_run, store, as_json):
    """Remove runs, after a preview and a confirmation (--yes: without asking).

    A running run, one being resumed and an unfinished trial of a running sweep
    are kept, with the reason. With --sweep (and no other filter), the sweep's
    own folder (sweeps/ID) goes too once none of its runs is left."""
    records, sweep = chosen_runs(store, run_refs, sweep_ref, where, "nnexp rm")
    plan = candidates(store, records)
    doomed = [c for c in plan if c.kept is None]
    total = sum(c.bytes for c in doomed)
    if not as_json:
        _preview(plan, store)
    if not plan:
        raise NnexpError(f"no runs in {store} match")
    if dry_run or not doomed:
        if as_json:
            click.echo(json.dumps({"dry_run": dry_run, "runs": [c.as_dict() for c in plan], "removed": [],
                                   "freed": 0}, indent=2))
        return
    if not yes:
        _confirm(f"remove {len(doomed)} run{'s' if len(doomed) != 1 else ''} ({human(total)})?")
    results = remove_runs(store, [c.id for c in doomed])
    removed = [c for c in doomed if results[c.id] is None]
    kept_now = {c.id: results[c.id] for c in doomed if results[c.id] is not None}
    sweep_note = None
    if sweep is not None and not where and not run_refs:
        left = [r for r in RunStore(store).runs() if r.summary.get("sweep") == sweep["id"]]
        sweep_note = remove_sweep_folder(store, sweep["id"], len(left))
    freed = sum(c.bytes for c in removed)
    if as_json:
        click.echo(json.dumps({"dry_run": False, "runs": [c.as_dict() for c in plan],
                               "removed": [c.id for c in removed], "kept": kept_now, "freed": freed,
                               "sweep_folder": None if sweep is None else (sweep_note or "removed")}, indent=2))
        return
    for run_id, why in kept_now.items():
        click.echo(f"kept {run_id}: {why}", err=True)
    click.echo(f"removed {len(removed)} run{'s' if len(removed) != 1 else ''}, freed {human(freed)}")
    if sweep is not None and not where and not run_refs:
        folder = f"sweeps/{sweep['id']}"
        click.echo(f"kept {folder}: {sweep_note}" if sweep_note else f"removed {folder}")


def _preview(plan, store) -> None:
    rows = [[c.id, c.name or "-", c.status or "-", c.sweep or "-", human(c.bytes),
             "remove" if c.kept is None else f"keep: {c.kept}"] for c in plan]
    if rows:
        click.echo(aligned(["id", "name", "status", "sweep", "size", "action"], rows), err=True)
    doomed = [c for c in plan if c.kept is None]
    click.echo(f"{len(doomed)} of {len(plan)} run{'s' if len(plan) != 1 else ''} to remove, "
               f"{human(sum(c.bytes for c in doomed))} in {store}", err=True)


def _confirm(question: str) -> None:
    try:
        confirmed = click.confirm(question, default=False, err=True)
    except click.exceptions.Abort:  # no terminal to ask (stdin closed)
        click.echo("", err=True)
        confirmed = False
    if not confirmed:
        raise NnexpError("nothing removed (not confirmed; --yes removes without asking)")


# ------------------------------------------------------------------ gc


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@STORE_OPTION
@JSON_OPTION
def gc(dry_run, store, as_json):
    """Remove what no run needs: partial files of killed writers, sweep trials' old
    attempts, checkpoints of finished runs, leftovers of an interrupted rm, folders of
    runs that never started. Never anything of a running or resumable run."""
    if not Path(store).is_dir():
        raise NnexpError(f"no run store {store}")
    items = find_garbage(store)
    freed = 0 if dry_run else collect(store, items)
    found = sum(i.bytes for i in items)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "items": [i.as_dict() for i in items], "found": found,
                               "freed": freed}, indent=2))
        return
    for kind in KINDS:
        of_kind = [i for i in items if i.kind == kind]
        for item in of_kind:
            click.echo(f"{kind:<28}  {human(item.bytes):>10}  {_relative(item.path, store)}")
    if dry_run:
        click.echo(f"would free {human(found)} ({len(items)} item{'s' if len(items) != 1 else ''}) in {store}")
    else:
        click.echo(f"freed {human(freed)} ({len(items)} item{'s' if len(items) != 1 else ''}) in {store}")


def _relative(path: Path, store: str) -> str:
    try:
        return str(Path(path).relative_to(store))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ du


@click.command()
@SWEEP_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show the N largest runs (--json: all).")
@STORE_OPTION
@JSON_OPTION
def du(sweep_ref, limit, store, as_json):
    """Disk use of the store: per sweep and per run, largest first."""
    if not Path(store).is_dir():
        raise NnexpError(f"no run store {store}")
    usage = store_usage(store)
    infos = {i.id: i.summary for i in RunStore(store).runs()}
    sweep = find_sweep(store, sweep_ref) if sweep_ref else None
    runs = []
    for run_id, (size, files) in usage["runs"].items():
        s = infos.get(run_id, {})
        if sweep is None or s.get("sweep") == sweep["id"]:
            runs.append({"id": run_id, "name": s.get("name"), "sweep": s.get("sweep"), "status": live_status(s),
                         "bytes": size, "files": files})
    runs.sort(key=lambda r: (-r["bytes"], r["id"]))
    sweeps = {sweep_id: {"id": sweep_id, "runs": 0, "bytes": size} for sweep_id, (size, _) in usage["sweeps"].items()
              if sweep is None or sweep_id == sweep["id"]}
    for r in runs:
        if r["sweep"]:
            entry = sweeps.setdefault(r["sweep"], {"id": r["sweep"], "runs": 0, "bytes": 0})
            entry["runs"] += 1
            entry["bytes"] += r["bytes"]
    sweep_rows = sorted(sweeps.values(), key=lambda s: (-s["bytes"], s["id"]))
    if sweep is None:
        total = sum(size for size, _ in usage["runs"].values()) + sum(size for size, _ in usage["sweeps"].values()) \
            + usage["index"] + usage["other"]
    else:
        total = sum(s["bytes"] for s in sweep_rows)
    if as_json:
        click.echo(json.dumps({"store": str(store), "total": total, "runs": runs, "sweeps": sweep_rows,
                               "index": usage["index"], "other": usage["other"]}, indent=2))
        return
    click.echo(f"{store}: {human(total)} in {len(runs)} run{'s' if len(runs) != 1 else ''}"
               + (f", index {human(usage['index'])}, other {human(usage['other'])}" if sweep is None else ""))
    if sweep_rows:
        click.echo("\nsweeps (runs and the sweep's folder)")
        click.echo(aligned(["id", "runs", "size"], [[s["id"], str(s["runs"]), human(s["bytes"])] for s in sweep_rows]))
    if runs:
        shown = runs[:limit]
        more = f"; {len(runs) - len(shown)} more, --limit" if len(runs) > len(shown) else ""
        click.echo(f"\nruns (largest first{more})")
        click.echo(aligned(["id", "name", "status", "size", "files"],
                           [[r["id"], r["name"] or "-", r["status"] or "-", human(r["bytes"]), str(r["files"])]
                            for r in shown]))

