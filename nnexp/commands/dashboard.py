"""``nnexp ui``: serve the dashboard over a store until Ctrl-C, or write it as static files (--export)."""

from __future__ import annotations

import logging
import webbrowser
from pathlib import Path

import click

from ..ui.export import export
from ..ui.server import serve
from .options import STORE_OPTION


@click.command()
@STORE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but a loopback address makes the store readable by others.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard (or the export) in a web browser.")
@click.option("--log-requests", is_flag=True, help="Print a line for every request.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Instead of serving: write the pages of the chosen runs into DIR as static files "
                   "(open DIR/index.html, or put DIR on any static host); an earlier export there is replaced.")
@click.option("--where", default=None, help="With --export: only the runs matching a filter (the grammar of "
              "'nnexp compare').")
@click.option("--sweep", "sweep_refs", multiple=True,
              help="With --export: the runs of a sweep (id, id prefix or name); repeat it for several sweeps.")
@click.option("--tag", "tags", multiple=True, help="With --export: only the runs with this tag; repeat it: all of them.")
def ui(store, host, port, open_browser, log_requests, export_dir, where, sweep_refs, tags):
    """Serve a read-only dashboard of the store's runs and sweeps (and its JSON API) until Ctrl-C,
    or write it as static files (--export)."""
    if export_dir is None:
        if where or sweep_refs or tags:
            raise click.UsageError("--where, --sweep and --tag choose the runs of an export: give --export DIR too")
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
        logging.getLogger("nnexp.ui.access").setLevel(logging.INFO if log_requests else logging.WARNING)
        serve(store, host=host, port=port, open_browser=open_browser,
              echo=lambda message, err: click.echo(message, err=err))
        return
    site = export(store, export_dir, where=where, sweeps=sweep_refs, tags=tags)
    for url in site.left_out:
        click.echo(f"warning: left out the answer to {url} (its file name would be too long)", err=True)
    index = Path(export_dir).resolve() / "index.html"
    click.echo(f"nnexp ui: {site.runs} run{'s' if site.runs != 1 else ''} and {len(site.sweeps)} "
               f"sweep{'s' if len(site.sweeps) != 1 else ''} written to {export_dir}: {site.files:,} files, "
               f"{site.bytes:,} bytes; open {index.as_uri()}", err=True)
    if open_browser:
        webbrowser.open(index.as_uri())
