"""``nnexp reproduce``: training a run again and comparing the two bit for bit."""

from __future__ import annotations

import json
import sys

import click

from ..errors import NnexpError
from ..reproduce import reproduce as reproduce_run
from ..text_table import aligned
from .options import JSON_OPTION, QUIET_OPTION, STORE_OPTION
from .progress import logger


@click.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@JSON_OPTION
@QUIET_OPTION
@click.option("--keep", is_flag=True, help="Keep the reproduction's store (its path is printed) instead of removing it.")
def reproduce(run_ref, store, as_json, quiet, keep):
    """Train RUN again from its folder's config, seeds and BLAS thread count, and compare bit for bit.

    Compares every array of model.npz, every metrics.csv column (not the
    seconds), diagnostics.csv and the test and final metrics; on a difference,
    lists the environment (versions, commit, uncommitted changes, BLAS, CPU,
    dataset digest) where the two differ. The store is only read; the
    retraining goes into a temporary store. Exit status 0 when identical,
    1 when anything differs, 2 when it cannot be trained again (an unknown
    or damaged run, data that cannot be read, a run its folder cannot retrain).
    """
    try:
        result = reproduce_run(store, run_ref, log=logger(quiet or as_json), progress=not (quiet or as_json),
                               keep=keep)
    except NnexpError as exc:
        exc.exit_code = max(exc.exit_code, 2)   # 1 says "different": an unknown run or unreadable data is not that
        raise
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(_text(result))
    if not result.identical:
        sys.exit(1)


def _text(result) -> str:
    rows = [[c.what, "identical" if c.identical else f"DIFFERENT: {c.note or f'max abs diff {c.max_abs_diff:.3g}'}"]
            for c in result.comparisons]
    lines = [aligned(["compared", "result"], rows)]
    differ = sum(not c.identical for c in result.comparisons)
    threads = f", {result.blas_threads_set} BLAS threads as recorded" if result.blas_threads_set else ""
    lines.append(f"not compared: {', '.join(result.not_compared)}" if result.not_compared else "")
    if differ == 0:
        lines.append(f"run {result.run_id}: reproduced bit for bit ({len(result.comparisons)} compared{threads})")
    else:
        lines.append(f"run {result.run_id}: {differ} of {len(result.comparisons)} DIFFERENT{threads}")
        changed = [e for e in result.environment if e["differs"]]
        if changed:
            lines.append(aligned(["environment", "recorded", "now"],
                                 [[e["what"], e["recorded"], e["now"]] for e in changed]))
        else:
            lines.append("the environment each run recorded is the same (nothing it records differs)")
    if result.reproduction:
        lines.append(f"reproduction kept: {result.reproduction}")
    return "\n".join(line for line in lines if line)
