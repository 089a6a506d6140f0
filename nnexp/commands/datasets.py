"""``nnexp data``: fetching and checking datasets."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import fetch


@click.group()
def data():
    """Fetch and inspect datasets."""


@data.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--cache-dir", default=None, help="Cache directory (default: $NNEXP_CACHE_DIR or ~/.cache/nnexp).")
def data_fetch(names, cache_dir):
    """Download and verify datasets into the cache (default: mnist)."""
    for name in names or ("mnist",):
        files = fetch(name, cache_dir=cache_dir, log=lambda m: click.echo(m, err=True))
        click.echo(f"{name}: ready in {Path(next(iter(files.values()))).parent}")
