"""``nnexp ui``: serve the dashboard over a store until Ctrl-C."""

from __future__ import annotations

import logging

import click

from ..ui.server import serve
from .options import STORE_OPTION


@click.command()
@STORE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but a loopback address makes the store readable by others.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a web browser.")
@click.option("--log-requests", is_flag=True, help="Print a line for every request.")
def ui(store, host, port, open_browser, log_requests):
    """Serve a read-only dashboard of the store's runs and sweeps (and its JSON API) until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("nnexp.ui.access").setLevel(logging.INFO if log_requests else logging.WARNING)
    serve(store, host=host, port=port, open_browser=open_browser,
          echo=lambda message, err: click.echo(message, err=err))
