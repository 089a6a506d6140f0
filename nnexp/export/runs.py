"""What every export reads of the store: the chosen runs and each run's rows of metrics.

The runs are chosen as ``nnexp runs``, ``compare``, ``tag`` and ``rm`` choose them
(the store query ``select_runs``: sweeps, a ``--where`` filter and tags), and a run's rows come from
its metrics.csv through the store's reader (``read_metric_rows``), never parsed here.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..compare.select import RunQuery, select_runs
from ..errors import ConfigError, NnexpError
from ..tracking.annotations import check_tag
from ..tracking.records import read_metric_rows
from ..values import is_number

AXES = ("step", "epoch")  # metrics.csv columns that place a row, not metrics of it


def check_file_target(path: Path, what: str | None = None) -> None:
    """ConfigError (exit 2, after ``what``: where the path came from) unless ``path`` can be
    written as a file: not a folder, in a folder that exists and may be written."""
    prefix, folder = f"{what}: " if what else "", path.parent
    if path.is_dir():
        raise ConfigError(f"{prefix}{path} is a folder, not a file to write")
    if not folder.is_dir():
        raise ConfigError(f"{prefix}cannot write {path}: its folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{prefix}cannot write {path}: its folder {folder} is not writable")


class MissingExtra(ConfigError):
    """An export whose library is not installed (exit code 2), with the pip command that installs it."""


def need(module: str, extra: str, what: str):
    """Import ``module`` for ``what``, or MissingExtra naming ``pip install 'nnexp[extra]'``."""
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and package.startswith(exc.name):
            raise MissingExtra(f"{what} needs {package}, which is not installed: pip install 'nnexp[{extra}]'") \
                from None
        raise MissingExtra(f"{what} needs {package}, which is installed but does not import ({exc}); "
                           f"reinstall it: pip install --force-reinstall 'nnexp[{extra}]'") from None


def chosen_records(store, sweep_refs=(), where: str | None = None, tags=()) -> list[dict]:
    """The records of the runs chosen by sweeps, a filter and tags (all that are given
    must hold), oldest first; NnexpError when no run is chosen."""
    query = RunQuery(sweeps=tuple(sweep_refs), where=where, tags=tuple(check_tag(t) for t in tags))
    records = select_runs(store, query).records
    if not records:
        chosen = " matching the selection" if sweep_refs or where or tags else ""
        raise NnexpError(f"no runs in {store}{chosen}: nothing to export (see 'nnexp runs --store {store}')")
    return records


@dataclass
class Row:
    """One row of a run's metrics.csv: where it sits and the metrics it holds."""

    step: int          # its ``step`` cell, else its epoch, else its position (1, 2, ...)
    epoch: float | None
    values: dict       # {metric: float}, the axes and empty cells left out


def metric_rows(record: dict) -> list[Row]:
    """The rows of a record's metrics.csv (as the store's reader reads them), each placed
    at a whole step for tools whose axis is an integer (MLflow's step, TensorBoard's)."""
    rows = []
    for position, cells in enumerate(read_metric_rows(record["path"], record["id"], columns=None), start=1):
        step, epoch = cells.get("step"), cells.get("epoch")
        epoch = epoch if _finite(epoch) else None
        if _finite(step) and step == int(step):
            place = int(step)
        elif epoch is not None and epoch == int(epoch):
            place = int(epoch)  # the trainer's rows: one per epoch, at the epoch's number
        else:
            place = position
        values = {k: v for k, v in cells.items() if k not in AXES and _finite(v)}
        if epoch is not None and _finite(step):
            values["epoch"] = epoch  # a row with a step of its own keeps its epoch as a metric
        rows.append(Row(place, epoch, values))
    return rows


def summary_metrics(record: dict, rows: list[Row]) -> dict:
    """The record's single values (test_accuracy, best_val_loss, final_*, n_params, a
    script's run.summary values, ...): its metrics other than the per-row names."""
    per_row = {name for row in rows for name in row.values}
    return {k: float(v) for k, v in (record.get("metrics") or {}).items()
            if k not in per_row and _finite(v)}


def _finite(value) -> bool:
    return is_number(value) and math.isfinite(value)
