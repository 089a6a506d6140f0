"""The ``nnexp`` command line: run, gradcheck, resume, runs, show, evaluate, predict, ensemble, data, sweep, compare."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from .errors import NnexpError

STORE_OPTION = click.option(
    "--store", default=lambda: os.environ.get("NNEXP_STORE", "runs"), show_default="runs or $NNEXP_STORE",
    help="Run store directory.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nnexp")
def cli():
    """Train a from-scratch NumPy network on MNIST and track every run on disk."""


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
def run(config, overrides, quiet):
    """Train the network CONFIG describes; OVERRIDES are key=value, e.g. optimizer.lr=0.01."""
    from .config import load_config
    from .train import train

    cfg = load_config(config, overrides)
    log = (lambda *a, **k: None) if quiet else _log
    finished = train(cfg, log=log, progress=not quiet)
    _print_finished(finished)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--samples", type=click.IntRange(min=1), default=20, show_default=True,
              help="Entries checked per array (input or parameter) of each layer.")
@click.option("--batch", type=click.IntRange(min=2), default=4, show_default=True,
              help="Random images in the batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights, images and choices.")
@JSON_OPTION
def gradcheck(config, overrides, samples, batch, seed, as_json):
    """Check the gradients of CONFIG's network against finite differences, layer by layer.

    The network is built in float64 and run on random images; for every layer,
    dL/d(its input) and dL/d(each parameter) from backprop are compared with
    central differences.  Exit status 1 if an error is above the tolerance."""
    from .config import load_config
    from .gradients import TOLERANCE, check_config

    cfg = load_config(config, overrides)
    rows = check_config(cfg, samples=samples, batch=batch, seed=seed)
    failed = [r for r in rows if r["error"] > TOLERANCE]
    if as_json:
        click.echo(json.dumps({"tolerance": TOLERANCE, "engine": cfg["model"]["engine"], "checks": rows,
                               "failed": len(failed)}, indent=2))
    else:
        table = [{"layer": r["layer"], "type": r["type"], "array": "input" if r["name"] == "x" else r["name"],
                  "shape": "x".join(map(str, r["shape"])), "checked": r["checked"],
                  "rel_error": "0 (no gradient)" if r["zero"] else f"{r['error']:.1e}",
                  "result": "FAIL" if r["error"] > TOLERANCE else "ok"} for r in rows]
        click.echo(format_table(table, ("layer", "type", "array", "shape", "checked", "rel_error", "result")))
        click.echo(f"{len(rows) - len(failed)} of {len(rows)} gradients within {TOLERANCE:g} "
                   f"({cfg['model']['engine']} engine, float64)", err=True)
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
def resume(run_ref, store, quiet):
    """Continue an interrupted, crashed or killed run from its last checkpoint.

    The result is the same, bit for bit, as if the run had never stopped.
    """
    from .config import load_config
    from .tracking import Run, RunStore, live_status
    from .train import train

    info = RunStore(store).resolve(run_ref)
    status = live_status(info.summary)
    if info.summary.get("kind") == "ensemble":
        raise NnexpError(f"run {info.id} is an ensemble: there is nothing to train")
    if status in ("completed", "pruned"):
        raise NnexpError(f"run {info.id} is {status}: there is nothing to resume")
    if status == "running":
        raise NnexpError(f"run {info.id} is still running (pid {info.summary.get('pid')}); stop it first")
    cfg = load_config(info.path / "config.yaml")
    log = (lambda *a, **k: None) if quiet else _log
    with _exclusive(info.path):
        finished = train(cfg, log=log, progress=not quiet, run=Run.open(info.path), resume=True)
    _print_finished(finished)


@contextlib.contextmanager
def _exclusive(run_dir: Path):
    """Hold a lock on the run folder: two resumes of one run never train at once."""
    import fcntl

    with open(run_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NnexpError(f"run {run_dir.name} is being resumed by another process") from None
        yield


def _print_finished(finished) -> None:
    s = finished.summary
    click.echo(
        f"test accuracy {s['test_accuracy']:.2%}  |  training {s['train_seconds']:.1f}s "
        f"({s['epochs_completed']} epochs), total {s['total_seconds']:.1f}s  |  run {finished.path}"
    )


def _log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


RUN_COLUMNS = ("id", "name", "status", "epochs", "val_acc", "test_acc", "params", "train_s", "started")


def run_row(info) -> dict:
    from .tracking import live_status

    s = info.summary
    return {
        "id": info.id,
        "name": s.get("name"),
        "status": live_status(s),
        "epochs": f"{s.get('epochs_completed', '?')}/{s.get('epochs_planned', '?')}",
        "val_acc": s.get("final_val_accuracy"),
        "test_acc": s.get("test_accuracy"),
        "params": s.get("params"),
        "train_s": s.get("train_seconds"),
        "started": s.get("started"),
    }


@cli.command()
@STORE_OPTION
@JSON_OPTION
@click.option("--reindex", is_flag=True, help="Rebuild the store's index from the run folders first.")
@click.option("--sweep", "sweep_ref", default=None, help="Only the runs of this sweep (id, id prefix or name).")
@click.option("--where", default=None, help="Only the runs matching a filter (the grammar of 'nnexp compare').")
def runs(store, as_json, reindex, sweep_ref, where):
    """List the runs in the store, oldest first."""
    # Light imports only: this is the command people run most, on stores of
    # thousands of runs (no pandas, no NumPy on the warm path).
    from .tracking import RunInfo, RunStore

    if reindex:
        records = RunStore(store).records(reindex=True)
        click.echo(f"indexed {len(records)} run{'s' if len(records) != 1 else ''} in {store}", err=True)
    if sweep_ref or where:
        from .compare.cli import select_records

        records, _ = select_records(store, sweep_ref=sweep_ref, where=where)
        infos = [RunInfo(Path(r["path"]), r["summary"]) for r in records]
    elif reindex:
        infos = [RunInfo(Path(r["path"]), r["summary"]) for r in records]
    else:
        infos = RunStore(store).runs()
    if as_json:
        click.echo(json.dumps([{"id": i.id, "path": str(i.path), **i.summary} for i in infos], indent=2))
        return
    if not infos:
        click.echo(f"no runs in {store}" + (" match" if sweep_ref or where else ""))
        return
    click.echo(format_table([run_row(i) for i in infos], RUN_COLUMNS))


def format_table(rows: list[dict], columns) -> str:
    """A plain aligned text table; fractions in [0, 1] named *_acc print as percents."""
    def cell(col, value):
        if value is None:
            return "-"
        if isinstance(value, float):
            if col.endswith("acc"):
                return f"{value:.2%}"
            return f"{value:.1f}"
        if isinstance(value, int) and col == "params":
            return f"{value:,}"
        return str(value)

    text = [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in text]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)) for t in text]
    return "\n".join(line.rstrip() for line in lines)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@JSON_OPTION
def show(run_ref, store, as_json):
    """Show a run's summary and files (RUN: id, id prefix, name or 'latest')."""
    from .tracking import RunStore

    info = RunStore(store).resolve(run_ref)
    if as_json:
        click.echo(json.dumps({"id": info.id, "path": str(info.path), **info.summary}, indent=2))
        return
    click.echo(f"run     {info.id}\npath    {info.path}")
    for key, value in info.summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4%}" if key.endswith("accuracy") else f"{value:.4g}"
        click.echo(f"{key:<22}{value}")
    click.echo("files")
    for path in sorted(info.path.rglob("*")):
        if path.is_file():
            click.echo(f"  {path.relative_to(info.path)}  ({path.stat().st_size:,} bytes)")


def load_trained(info):
    """Rebuild a run's model from its config.yaml and model.npz.

    An ensemble run has no weights of its own: its members are loaded and
    combined (see ``nnexp/ensemble.py``), so evaluate and predict work on it too.
    """
    from .config import load_config
    from .nn import ENGINES, load_weights

    if info.summary.get("kind") == "ensemble":
        from .ensemble import load_ensemble

        return load_ensemble(info, load_trained)
    config_path = info.path / "config.yaml"
    if not (info.path / "model.npz").exists():
        raise NnexpError(f"run {info.id} has no model.npz (status: {info.summary.get('status')})")
    cfg = load_config(config_path)
    model = ENGINES[cfg["model"]["engine"]].build_model(cfg["model"]["layers"], (1, 28, 28), None,
                                                        cfg["model"]["dtype"], cfg["model"]["deskew"])
    try:
        load_weights(info.path / "model.npz", model)
    except (ValueError, OSError) as exc:
        raise NnexpError(f"run {info.id}: cannot load model.npz: {exc}") from None
    return cfg, model


@cli.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@JSON_OPTION
def evaluate(run_ref, store, as_json):
    """Reload a run's weights and recompute its test metrics."""
    from .tracking import RunStore
    from .train import evaluate as eval_model
    from .train import load_data

    info = RunStore(store).resolve(run_ref)
    cfg, model = load_trained(info)
    data = load_data(cfg, log=_log)
    loss, acc, _ = eval_model(model, data.x_test, data.y_test, cfg["train"]["eval_batch_size"])
    recorded = info.summary.get("test_accuracy")
    result = {"id": info.id, "test_loss": loss, "test_accuracy": acc, "recorded_test_accuracy": recorded,
              "matches_recorded": recorded is not None and abs(acc - recorded) < 1e-12}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    note = "" if recorded is None else (" (matches the recorded value)" if result["matches_recorded"]
                                        else f" (recorded: {recorded:.4%})")
    click.echo(f"{info.id}: test accuracy {acc:.4%}, loss {loss:.4f} on {len(data.x_test):,} images{note}")


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@STORE_OPTION
@JSON_OPTION
def predict(run_ref, images, store, as_json):
    """Classify PNG images of digits with a trained run's model."""
    import numpy as np

    from .preprocess import load_digit
    from .tracking import RunStore

    info = RunStore(store).resolve(run_ref)
    cfg, model = load_trained(info)
    classes = info.summary.get("classes") or [str(i) for i in range(10)]
    batch = np.stack([load_digit(path) for path in images])[:, None]
    probs = model.predict_proba(batch)
    results = [{"image": str(path), "prediction": classes[int(p.argmax())], "probability": float(p.max()),
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}}
               for path, p in zip(images, probs)]
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        others = ", ".join(f"{c} {v:.1%}" for c, v in top[1:])
        click.echo(f"{r['image']}: {r['prediction']} ({r['probability']:.1%}; next: {others})")


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--sweep", "sweep_ref", metavar="SWEEP",
              help="Add every completed run of this sweep (id, prefix or name) as a member.")
@click.option("--name", default="ensemble", show_default=True, help="Name of the ensemble's own run.")
@STORE_OPTION
@JSON_OPTION
def ensemble(run_refs, sweep_ref, name, store, as_json):
    """Average several runs' softmax outputs on the test set; record the ensemble as a run.

    Members are the RUNs named, plus with --sweep the completed runs of a sweep."""
    from .ensemble import build_ensemble, resolve_members, sweep_members
    from .tracking import RunStore

    runs = RunStore(store)
    refs = list(run_refs) + (sweep_members(runs, sweep_ref) if sweep_ref else [])
    infos = resolve_members(runs, refs)
    # Every member's weights load before the dataset does: a run without
    # model.npz is reported in a moment, not after the test set is read.
    members = [(info, *load_trained(info)) for info in infos]
    s = build_ensemble(runs, members, name, log=_log).summary
    if as_json:
        click.echo(json.dumps({"id": s["id"], "path": str(runs.root / s["id"]), **s}, indent=2))
        return
    each = ", ".join(f"{s['member_test_accuracy'][i]:.2%}" for i in s["members"])
    click.echo(f"ensemble of {len(s['members'])} runs: test accuracy {s['test_accuracy']:.2%} (members {each})"
               f"  |  run {runs.root / s['id']}")


@cli.group()
def data():
    """Fetch and inspect datasets."""


@data.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--cache-dir", default=None, help="Cache directory (default: $NNEXP_CACHE_DIR or ~/.cache/nnexp).")
def data_fetch(names, cache_dir):
    """Download and verify datasets into the cache (default: mnist)."""
    from .data import fetch

    for name in names or ("mnist",):
        files = fetch(name, cache_dir=cache_dir, log=lambda m: click.echo(m, err=True))
        click.echo(f"{name}: ready in {Path(next(iter(files.values()))).parent}")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Trials trained at once, each in its own process [default: number of cores].")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="BLAS threads per worker; workers x threads should not exceed the cores.")
@click.option("--fail-fast", is_flag=True, help="Stop the sweep at the first failed trial.")
@click.option("--dry-run", is_flag=True, help="Check the spec and list the trials; train nothing.")
@click.option("--store", default=None, help="Run store [default: the base config's tracking.store].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-trial lines.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where trials run: worker processes on this machine, or Ray tasks.")
@click.option("--address", default=None, metavar="ADDR",
              help="With --executor ray: join the Ray cluster at ADDR (host:port, or 'auto') "
                   "instead of starting a local Ray instance.")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --executor ray: CPUs each trial asks Ray for (and its BLAS threads).")
def sweep(spec_path, workers, threads_per_worker, fail_fast, dry_run, store, quiet, executor, address,
          cpus_per_trial):
    """Run the trials of a sweep SPEC in parallel; running it again resumes it."""
    from .errors import ConfigError
    from .sweep import SweepRunner, load_spec, plan
    from .sweep.spec import short_value

    log = (lambda *a, **k: None) if quiet else _log
    if address and executor != "ray":
        raise ConfigError("--address joins a Ray cluster: use it with --executor ray")
    if executor == "ray" and not dry_run:
        from .sweep.ray_executor import import_ray

        import_ray()  # before any work: without Ray, say how to install it and exit 2
    spec = load_spec(spec_path)
    trials = plan(spec, log=log)
    store = store or os.environ.get("NNEXP_STORE") or trials[0].config["tracking"]["store"]
    runner = SweepRunner(spec, trials, Path(store), workers=workers, threads_per_worker=threads_per_worker,
                         fail_fast=fail_fast, log=log, progress=not quiet, executor=executor, address=address,
                         cpus_per_trial=cpus_per_trial)
    halving = f", halving at epochs {spec.halving.rungs}" if spec.halving else ""
    click.echo(f"sweep {spec.id}: {len(trials)} trials ({spec.method}{halving}), "
               f"{spec.metric} to {spec.goal}, store {store}", err=True)
    if dry_run:
        for trial in trials:
            click.echo(f"{trial.run_id(spec.id)}  {trial.label()}")
        return
    if executor == "ray":
        from .sweep.ray_executor import connect

        connect(address, log)  # a cluster that cannot be reached fails here, before the store is touched
    result = runner.run()
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    click.echo(f"sweep {result.id}: {counts or 'no trials'}")
    if result.best:
        b = result.best
        values = ", ".join(f"{k}={short_value(v)}" for k, v in b["params"].items())
        click.echo(f"best: trial {b['trial']} ({values}, seed {b['seed']}): {spec.metric} {b['value']:.4f}  "
                   f"run {b['run']}")
    click.echo(f"compare: nnexp compare --sweep {result.id} --store {store}")
    if result.interrupted:
        sys.exit(130)
    if result.failed:
        sys.exit(1)


SWEEP_COLUMNS = ("id", "name", "status", "method", "trials", "done", "failed", "best", "updated")


@cli.command()
@STORE_OPTION
@JSON_OPTION
def sweeps(store, as_json):
    """List the sweeps recorded in the store."""
    from .sweep.runner import list_sweeps

    states = list_sweeps(Path(store))
    if as_json:
        click.echo(json.dumps(states, indent=2))
        return
    if not states:
        click.echo(f"no sweeps in {store}")
        return
    rows = []
    for s in states:
        counts, best = s.get("counts") or {}, s.get("best") or {}
        rows.append({"id": s.get("id"), "name": s.get("name"), "status": s.get("status"),
                     "method": s.get("method"), "trials": s.get("trials"),
                     "done": counts.get("completed", 0) + counts.get("pruned", 0), "failed": counts.get("failed", 0),
                     "best": None if not best else f"{s.get('metric')} {best.get('value', float('nan')):.4f}",
                     "updated": s.get("updated")})
    click.echo(format_table(rows, SWEEP_COLUMNS))


@cli.command()
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
def compare(run_refs, sweep_ref, where, sort, agg, metrics, group, ascending, limit, fmt, plots_dir, report_path,
            store, as_json):
    """Compare runs: what differs, the metrics, and over seeds mean, std, n and 95% CI."""
    from .compare.cli import run_compare

    run_compare(store=store, run_refs=run_refs, sweep_ref=sweep_ref, where=where, sort=sort, agg=agg,
                metrics=metrics, group=group, ascending=ascending, limit=limit,
                fmt="json" if as_json else (fmt or "text"), plots_dir=plots_dir, report_path=report_path,
                argv=sys.argv)


def main(argv=None) -> None:
    """Entry point: user errors print one line and exit non-zero, never a traceback."""
    try:
        cli.main(args=argv, prog_name="nnexp", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except NnexpError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:  # disk full, read-only or vanished folder: the system's words, no traceback
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
