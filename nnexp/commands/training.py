"""``nnexp run`` and ``resume``: training a network into a run folder."""

from __future__ import annotations

import click

from ..config import load_config
from ..devices import DEVICES
from ..ensemble import KIND as ENSEMBLE
from ..errors import NnexpError
from ..filelock import LockHeld, exclusive
from ..layer_code import check_unchanged
from ..tracking import RunStore, live_status
from ..tracking.run import FINISHED, RUNNING
from ..train import train
from .options import QUIET_OPTION, STORE_OPTION
from .progress import logger


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@QUIET_OPTION
def run(config, overrides, quiet):
    """Train the network CONFIG describes; OVERRIDES are key=value, e.g. optimizer.lr=0.01."""
    cfg = load_config(config, overrides)
    print_finished(train(cfg, log=logger(quiet), progress=not quiet))


@click.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@QUIET_OPTION
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Go on on this device instead of the run's train.device (the result is then no longer "
                   "bit for bit the uninterrupted run's).")
def resume(run_ref, store, quiet, device):
    """Continue an interrupted, crashed or killed run from its last checkpoint.

    The result is the same, bit for bit, as if the run had never stopped
    (on the same device).
    """
    runs = RunStore(store)
    info = runs.resolve(run_ref)
    status = live_status(info.summary)
    if info.summary.get("kind") == ENSEMBLE:
        raise NnexpError(f"run {info.id} is an ensemble: there is nothing to train")
    if status in FINISHED:
        raise NnexpError(f"run {info.id} is {status}: there is nothing to resume")
    if status == RUNNING:
        raise NnexpError(f"run {info.id} is still running (pid {info.summary.get('pid')}); stop it first")
    run = runs.open(info.id)
    check_unchanged(run.path, info.id)   # before its config imports a layer file
    cfg = load_config(run.config_path)
    if device is not None:   # the trainer records it in config.yaml once the checkpoint has been accepted
        cfg = load_config(run.config_path, [f"train.device={device}"])
    try:
        with exclusive(run.lock_path):  # two resumes of one run never train at once
            finished = train(cfg, log=logger(quiet), progress=not quiet, run=run, resume=True)
    except LockHeld:
        raise NnexpError(f"run {info.id} is being resumed by another process") from None
    print_finished(finished)


def print_finished(finished) -> None:
    s = finished.summary
    click.echo(
        f"test accuracy {s['test_accuracy']:.2%}  |  training {s['train_seconds']:.1f}s "
        f"({s['epochs_completed']} epochs), total {s['total_seconds']:.1f}s  |  run {finished.path}"
    )
