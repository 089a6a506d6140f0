"""Options several commands share."""

from __future__ import annotations

import os

import click

STORE_OPTION = click.option(
    "--store", default=lambda: os.environ.get("NNEXP_STORE", "runs"), show_default="runs or $NNEXP_STORE",
    help="Run store directory.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
QUIET_OPTION = click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
