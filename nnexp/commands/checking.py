"""``nnexp gradcheck``: a config's backprop against finite differences, layer by layer."""

from __future__ import annotations

import json
import sys

import click

from ..config import input_shape, load_config
from ..engines import ENGINES
from ..gradients import TOLERANCE, check_config
from ..text_table import aligned
from .options import JSON_OPTION

COLUMNS = ["layer", "type", "array", "shape", "checked", "rel_error", "result"]


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--samples", type=click.IntRange(min=1), default=20, show_default=True,
              help="Entries checked per array (input or parameter) of each layer.")
@click.option("--batch", type=click.IntRange(min=2), default=4, show_default=True,
              help="Random images in the batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights, images and choices.")
@click.option("--engine", type=click.Choice(sorted(ENGINES)), default="reference", show_default=True,
              help="The engine whose layers are checked (the reference one is the code docs/math.md derives), "
                   "whatever model.engine says.")
@JSON_OPTION
def gradcheck(config, overrides, samples, batch, seed, engine, as_json):
    """Check the gradients of CONFIG's network against finite differences, layer by layer.

    The network is built in float64 by the reference engine (or --engine) and
    run on random images; for every layer, dL/d(its input) and dL/d(each
    parameter) from backprop are compared with central differences.  Exit
    status 1 if an error is above the tolerance."""
    cfg = load_config(config, overrides)
    rows = check_config(cfg, samples=samples, batch=batch, seed=seed, input_shape=input_shape(cfg), engine=engine)
    failed = [r for r in rows if r["error"] > TOLERANCE]
    if as_json:
        click.echo(json.dumps({"tolerance": TOLERANCE, "engine": engine, "checks": rows,
                               "failed": len(failed)}, indent=2))
    else:
        click.echo(aligned(COLUMNS, [[str(r["layer"]), r["type"], "input" if r["name"] == "x" else r["name"],
                                      "x".join(map(str, r["shape"])), str(r["checked"]),
                                      "0 (no gradient)" if r["zero"] else f"{r['error']:.1e}",
                                      "FAIL" if r["error"] > TOLERANCE else "ok"] for r in rows]))
        click.echo(f"{len(rows) - len(failed)} of {len(rows)} gradients within {TOLERANCE:g} "
                   f"({engine} engine, float64)", err=True)
    if failed:
        sys.exit(1)
