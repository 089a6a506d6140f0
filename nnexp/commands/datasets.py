"""``nnexp data``: fetching datasets, and inspecting one of your own."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..data import default_cache_dir, fetch
from ..data.custom import read_folder, read_npz
from ..text_table import aligned


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


@data.command("inspect")
@click.argument("path", type=click.Path(exists=True))
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False), default=None,
              help="PNG of sample images, one row per class (default: <name>-samples.png here).")
@click.option("--cache-dir", default=None, help="Cache of decoded image folders (default: as for training).")
def data_inspect(path, grid_path, cache_dir):
    """Show a dataset of your own: an .npz file or a folder of images (its classes, counts, shape, digest)."""
    from ..tracking import plots  # matplotlib (heavy): only this subcommand draws

    path = Path(path)
    own = read_folder(path, cache_dir or default_cache_dir(), log=lambda m: click.echo(m, err=True)) \
        if path.is_dir() else read_npz(path)
    parts = [("train", own.y_train)] + ([("test", own.y_test)] if own.y_test is not None else [])
    shape = "x".join(map(str, own.x_train.shape[1:]))
    click.echo(f"{path}: {'image-folder' if path.is_dir() else 'npz'}, {len(own.classes)} classes, "
               f"input {shape} ({own.x_train.dtype}), sha256 {own.digest[:16]}..., {own.size_bytes:,} bytes")
    if own.y_test is None:
        click.echo("no test set of its own: training splits off data.test_size images")
    rows = [[name] + [str(int((y == k).sum())) for _, y in parts] for k, name in enumerate(own.classes)]
    rows.append(["total"] + [str(len(y)) for _, y in parts])
    click.echo(aligned(["class"] + [name for name, _ in parts], rows))
    grid_path = Path(grid_path or f"{path.stem or 'data'}-samples.png")
    images = own.x_train.astype(np.float32) / (255.0 if own.x_train.dtype == np.uint8 else 1.0)
    plots.plot_samples(images, own.y_train, own.classes, grid_path)
    click.echo(f"samples: {grid_path}")
