"""The ``nnexp`` command line: run, resume, reproduce, gradcheck, runs, show, evaluate, predict, ensemble, data, sweep,
sweeps, compare, diff, tag, note, rm, gc, du, ui, export, schema.

Each command lives in a module of ``nnexp/commands``, loaded only when the
command runs (click's pattern for lazily loaded subcommands): ``nnexp runs``
on a store of thousands of runs must not wait for NumPy, pandas and
matplotlib, which only the commands that train, evaluate or plot need.
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import NnexpError

#: command -> the module of nnexp/commands that defines it (as a function of the same name)
COMMANDS = {
    "run": "training", "resume": "training", "reproduce": "reproducing", "gradcheck": "checking",
    "runs": "listing", "show": "listing", "sweeps": "listing",
    "evaluate": "models", "predict": "models", "ensemble": "models",
    "data": "datasets", "sweep": "sweeping", "compare": "comparing", "diff": "comparing",
    "tag": "curating", "note": "curating", "rm": "curating", "gc": "curating", "du": "curating",
    "ui": "dashboard", "export": "exporting", "schema": "schema",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from their modules on first use."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, name: str):
        module = COMMANDS.get(name)
        if module is None:
            return None
        return getattr(importlib.import_module(f"{__package__}.commands.{module}"), name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnexp")  # the source's version, not an installed copy's metadata
def cli():
    """Train a from-scratch NumPy network on MNIST and track every run on disk."""


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
