"""``nnexp schema``: the JSON Schema of a config or of a sweep spec, for YAML-aware editors."""

from __future__ import annotations

import click

from ..schema import SCHEMAS, dumps


@click.command()
@click.argument("kind", type=click.Choice(list(SCHEMAS)))
def schema(kind):
    """Print the JSON Schema (draft 2020-12) of a config or of a sweep spec.

    It is generated from the tables nnexp validates with; schemas/ in the
    repository holds the copies that the shipped YAML files name in their
    first line (# yaml-language-server: $schema=...)."""
    click.echo(dumps(SCHEMAS[kind]()), nl=False)
