"""A run record as one flat row: the top-level fields, then ``param.*`` and
``metric.*`` keys. The comparison table works on these rows as plain dicts
(``nnexp compare`` loads no pandas unless it plots); ``frame.py`` turns them
into the pandas view."""

from __future__ import annotations

import json
import math

from ..tracking import live_status
from ..values import is_missing, is_number, plain

TOP_COLUMNS = ("id", "name", "status", "sweep", "trial", "seed", "tags", "note", "dataset", "start_time", "started",
               "path")


def flat_row(record: dict) -> dict:
    """{id, name, status (as live_status reports it), ..., param.<key>, metric.<name>};
    metric values are floats (NaN where a record holds something else)."""
    s = record.get("summary") or {}
    row = {"id": record["id"], "name": s.get("name"), "status": live_status(s), "sweep": s.get("sweep"),
           "trial": s.get("trial"), "seed": s.get("seed"), "tags": s.get("tags") or [], "note": s.get("note"),
           "dataset": s.get("dataset"), "start_time": s.get("start_time"), "started": s.get("started"),
           "path": record.get("path")}
    for key, value in (record.get("params") or {}).items():
        row[f"param.{key}"] = value
    for key, value in (record.get("metrics") or {}).items():
        row[f"metric.{key}"] = float(value) if is_number(value) and not is_missing(value) else math.nan
    return row


def group_key(value):
    """A hashable stand-in for a cell: numbers by value (1 and 1.0 alike, True
    apart from 1), missing values alike, lists and mappings by their JSON."""
    kind = type(value)
    if kind is str:
        return ("text", value)
    if kind is float or kind is int:
        return ("missing",) if value != value else ("number", float(value))
    if is_missing(value):
        return ("missing",)
    value = plain(value)
    if isinstance(value, bool):
        return ("bool", value)
    if is_number(value):
        return ("number", float(value))
    if isinstance(value, str):
        return ("text", value)
    return ("json", json.dumps(value, default=str, sort_keys=True))
