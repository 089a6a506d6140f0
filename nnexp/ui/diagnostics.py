"""A run's per-layer diagnostics (``diagnostics.csv``) as series, one per statistic and layer.

The trainer appends rows in long format, one value a row::

    epoch,layer,name,stat,value
    1,1,relu,dead_fraction,0.12        # a layer's activations: name is the layer's type
    1,0,0.W,grad_norm,0.53             # a parameter: name is "<layer>.<parameter>"

A run without the file has no diagnostics (older runs, or diagnostics off).
Like metrics.csv, the file may be caught mid-write: a last line without its
newline is ignored, and so is any row that does not parse.
"""

from __future__ import annotations

import csv
import math
import os

from ..tracking.run import DIAGNOSTICS

COLUMNS = ("epoch", "layer", "name", "stat", "value")
# The statistics the trainer records, in the order a page shows them; others follow by name.
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_norm", "update_ratio")
DESCRIPTIONS = {
    "act_mean": "mean activation", "act_std": "activation standard deviation",
    "dead_fraction": "fraction of units that never fire", "saturated_fraction": "fraction of saturated units",
    "grad_norm": "gradient norm", "weight_norm": "weight norm", "update_ratio": "update / weight norm ratio",
}


def _number(text: str):
    """An int for a whole number, else a float; ValueError if it is not a number."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def read_diagnostics(run_dir) -> dict:
    """{"available", "problem", "epochs", "stats", "series"} of a run folder.

    ``series``: one per (stat, layer, name), ordered by STATS then layer, each
    ``{"stat", "layer", "name", "label", "epochs", "values"}`` (values None
    where missing). ``available`` is False when the file is missing;
    ``problem`` says why a present file could not be used.
    """
    empty = {"available": False, "problem": None, "epochs": [], "stats": [], "series": []}
    path = os.path.join(os.fspath(run_dir), DIAGNOSTICS)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return empty
    except OSError as exc:
        return dict(empty, problem=f"cannot read {DIAGNOSTICS}: {exc.strerror or exc}")
    lines = text.split("\n")
    lines.pop()  # "" after a complete last line, or the half-written one
    rows = list(csv.reader(line.rstrip("\r") for line in lines))
    if not rows:
        return dict(empty, available=True)
    header = [h.strip() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return dict(empty, problem=f"{DIAGNOSTICS} has no column {', '.join(missing)} (expected {','.join(COLUMNS)})")
    at = {c: header.index(c) for c in COLUMNS}
    series: dict[tuple, dict] = {}
    epochs = set()
    for fields in rows[1:]:
        if len(fields) != len(header):
            continue
        try:
            epoch = _number(fields[at["epoch"]])
            layer = _layer(fields[at["layer"]])
            value = float(fields[at["value"]]) if fields[at["value"]].strip() else math.nan
        except ValueError:
            continue
        name, stat = fields[at["name"]].strip(), fields[at["stat"]].strip()
        if not stat:
            continue
        key = (stat, layer, name)
        entry = series.setdefault(key, {"stat": stat, "layer": layer, "name": name,
                                        "label": _label(layer, name), "points": {}})
        entry["points"][epoch] = value if math.isfinite(value) else None
        epochs.add(epoch)
    ordered = sorted(series.values(), key=lambda s: (_stat_rank(s["stat"]), _layer_rank(s["layer"]), s["name"]))
    out = []
    for entry in ordered:
        points = sorted(entry.pop("points").items())
        out.append(dict(entry, epochs=[e for e, _ in points], values=[v for _, v in points]))
    stats = sorted({s["stat"] for s in out}, key=_stat_rank)
    return {"available": True, "problem": None, "epochs": sorted(epochs), "stats": stats, "series": out}


def _layer(text: str):
    """A layer's index as a number, or its text when it is not one; None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return _number(text)
    except ValueError:
        return text


def _label(layer, name: str) -> str:
    """'3.W' for a parameter (its name starts with its layer), '2 relu' for a layer's activations."""
    if layer is None:
        return name
    return name if name.startswith(f"{layer}.") else f"{layer} {name}".strip()


def _stat_rank(stat: str) -> tuple:
    return (STATS.index(stat), "") if stat in STATS else (len(STATS), stat)


def _layer_rank(layer) -> tuple:
    if layer is None:
        return (2, 0, "")
    return (0, layer, "") if isinstance(layer, (int, float)) else (1, 0, str(layer))
