"""``nnexp sweep``: running a sweep's trials."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..devices import array_module
from ..errors import ConfigError
from ..sweep import SweepRunner, load_spec, plan
from ..sweep.ray_executor import connect, import_ray
from ..sweep.spec import examples, short_value
from ..sweep.tpe import import_optuna
from .progress import logger


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Trials trained at once, each in its own process [default: number of cores]; "
                   "with train.device: gpu, trials per GPU [default: 1].")
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
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Search with this seed instead of the spec's (random, tpe): another sweep, named NAME-seedN.")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --executor ray: CPUs each trial asks Ray for (and its BLAS threads).")
@click.option("--gpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --executor ray and train.device: gpu: GPUs each trial asks Ray for [default: 1].")
def sweep(spec_path, workers, threads_per_worker, fail_fast, dry_run, store, quiet, executor, address,
          seed, cpus_per_trial, gpus_per_trial):
    """Run the trials of a sweep SPEC in parallel; running it again resumes it."""
    log = logger(quiet)
    if address and executor != "ray":
        raise ConfigError("--address joins a Ray cluster: use it with --executor ray")
    if gpus_per_trial is not None and executor != "ray":
        raise ConfigError("--gpus-per-trial is what a trial asks Ray for: use it with --executor ray")
    if executor == "ray" and not dry_run:
        import_ray()  # before any work: without Ray, say how to install it and exit 2
    spec = load_spec(spec_path, seed=seed)
    if spec.method == "tpe":
        import_optuna()  # without Optuna, say how to install it and exit 2
    trials = plan(spec, log=log)
    checked = trials or examples(spec)  # a tpe sweep's space, checked on a few random points
    store = store or os.environ.get("NNEXP_STORE") or (checked[0].config["tracking"]["store"] if spec.script is None
                                                         else "runs")
    gpus = 0
    if spec.script is None and any(trial.config["train"]["device"] == "gpu" for trial in checked):
        if gpus_per_trial is None:
            gpus_per_trial = 1.0
        if executor == "local" and not dry_run:   # CuPy and a GPU, or exit 2, before the store is touched
            gpus = array_module("gpu").cuda.runtime.getDeviceCount()
            workers = (workers or 1) * gpus   # --workers is per GPU
    runner = SweepRunner(spec, trials, Path(store), workers=workers, threads_per_worker=threads_per_worker,
                         fail_fast=fail_fast, log=log, progress=not quiet, executor=executor, address=address,
                         cpus_per_trial=cpus_per_trial, gpus=gpus, gpus_per_trial=gpus_per_trial or 0.0)
    halving = (f", {spec.halving.rule} halving at epochs {spec.halving.rungs}" if spec.halving else "")
    goals = ", ".join(f"{o.name} to {o.goal}" for o in spec.objectives)
    click.echo(f"sweep {spec.id}: {runner.total} trials ({spec.method}{halving}), {goals}, store {store}", err=True)
    if dry_run:
        for trial in trials:
            click.echo(f"{trial.run_id(spec.id)}  {trial.label()}")
        if spec.method == "tpe":
            how = f"in batches of {spec.batch} points" if spec.batch else "one point at a time"
            click.echo(f"tpe proposes the trials while the sweep runs, {how}; the space was checked on "
                       f"{len(checked)} random points, such as:")
            for trial in checked[:3]:
                click.echo(f"  {trial.label()}")
        return
    if executor == "ray":
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
