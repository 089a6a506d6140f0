"""The runs as two tables, in CSV or Parquet: one row per run, and one row per metric value.

``FILE`` gets the runs table: the columns of ``nnexp.load_runs`` (id, name, status,
..., ``param.<key>`` for the flattened config, ``metric.<name>`` for the final, best,
mean and test values). ``FILE`` with ``-metrics`` before its suffix gets the long
table: ``run_id, step, epoch, metric, value``, one row per cell of each run's
metrics.csv (see runs.py for how a row's step is chosen). Both are replaced whole,
atomically: a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..atomic import atomic_writer
from ..compare.frame import records_frame
from ..errors import ConfigError
from ..values import is_missing
from .runs import check_file_target, metric_rows, need

FORMATS = ("csv", "parquet")
METRIC_COLUMNS = ("run_id", "step", "epoch", "metric", "value")


def metrics_path(path) -> Path:
    """Where the long table of ``path`` goes: ``runs.csv`` -> ``runs-metrics.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-metrics{path.suffix}")


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run; tags as one text, comma-joined (a tag holds no comma)."""
    frame = records_frame(records)
    frame["tags"] = [",".join(map(str, t)) if isinstance(t, list) else t for t in frame["tags"]]
    return frame


def metrics_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (run, row of its metrics.csv, metric), in the runs' and the rows' order."""
    columns = {name: [] for name in METRIC_COLUMNS}
    for record in records:
        for row in metric_rows(record):
            for metric, value in row.values.items():
                columns["run_id"].append(record["id"])
                columns["step"].append(row.step)
                columns["epoch"].append(row.epoch)
                columns["metric"].append(metric)
                columns["value"].append(value)
    frame = pd.DataFrame(columns)
    frame["step"] = frame["step"].astype("int64")
    frame["epoch"] = frame["epoch"].astype("float64")
    frame["value"] = frame["value"].astype("float64")
    return frame


def write_tables(records: list[dict], path, fmt: str) -> tuple[Path, Path]:
    """Write the runs table to ``path`` and the long metrics table beside it; the two paths."""
    path = check(path, fmt)
    runs, long = runs_frame(records), metrics_frame(records)
    second = metrics_path(path)
    for frame, where in ((runs, path), (long, second)):
        with atomic_writer(where, binary=True) as f:
            if fmt == "csv":
                frame.to_csv(f, index=False, lineterminator="\n")
            else:
                uniform(frame).to_parquet(f, index=False, engine="pyarrow")
    return path, second


def uniform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each column of mixed kinds (a parameter that is a number in one run
    and text in another) as text, JSON for the non-strings: a Parquet column has one type."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        kinds = {type(v) for v in frame[column] if not is_missing(v)}
        if len(kinds) > 1 or (kinds and not kinds <= {str, int, float, bool}):
            frame[column] = [None if is_missing(v) else v if isinstance(v, str) else json.dumps(v)
                             for v in frame[column]]
    return frame


def check(path, fmt: str) -> Path:
    """``path`` as a Path, before any run is read: ConfigError for an unknown format or
    unless ``path``'s folder exists and can be written; MissingExtra for Parquet without pyarrow."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format {fmt!r} (allowed: {', '.join(FORMATS)})")
    if fmt == "parquet":
        need("pyarrow", "parquet", "nnexp export parquet")
    path = Path(path)
    check_file_target(path)
    return path
