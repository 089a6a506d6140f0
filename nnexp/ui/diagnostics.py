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

import math
import os

from ..tracking import health
from ..tracking.reading import MAX_TABLE_FILE, read_bytes
from ..tracking.run import DIAGNOSTIC_COLUMNS as COLUMNS
from ..tracking.run import DIAGNOSTICS

# The statistics the trainer records, in the order a page shows them; others follow by name.
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_norm", "update_ratio")
DESCRIPTIONS = {
    "act_mean": "mean activation", "act_std": "activation standard deviation",
    "dead_fraction": "fraction of units that never fire", "saturated_fraction": "fraction of saturated units",
    "grad_norm": "gradient norm", "weight_norm": "weight norm", "update_ratio": "update / weight norm ratio",
}


def read_diagnostic_series(run_dir) -> dict:
    """{"available", "problem", "epochs", "stats", "series", "warnings"} of a run folder.

    ``series``: one per (stat, layer, name), ordered by STATS then layer, each
    ``{"stat", "layer", "name", "label", "epochs", "values"}`` (values None
    where missing). ``available`` is False when the file is missing;
    ``problem`` says why a present file could not be used (one that is not a
    regular file or is too large is never read, see tracking/reading.py).
    ``warnings`` are what ``nnexp show`` warns of (nnexp/tracking/health.py
    parses the file and applies the rules for both).
    """
    empty = {"available": False, "problem": None, "epochs": [], "stats": [], "series": [], "warnings": []}
    path = os.path.join(os.fspath(run_dir), DIAGNOSTICS)
    try:
        text = read_bytes(path, MAX_TABLE_FILE).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return empty
    except OSError as exc:
        return dict(empty, problem=f"cannot read {DIAGNOSTICS}: {exc.strerror or exc}")
    rows = health.parse_diagnostics(text)
    if not rows and text and not _has_header(text):
        return dict(empty, problem=f"{DIAGNOSTICS} does not start with the header {','.join(COLUMNS)}")
    series: dict[tuple, dict] = {}
    epochs = set()
    for row in rows:
        key = (row["stat"], row["layer"], row["name"])
        entry = series.setdefault(key, {"stat": row["stat"], "layer": row["layer"], "name": row["name"],
                                        "label": _label(row["layer"], row["name"]), "points": {}})
        entry["points"][row["epoch"]] = row["value"] if math.isfinite(row["value"]) else None
        epochs.add(row["epoch"])
    ordered = sorted(series.values(), key=lambda s: (_stat_rank(s["stat"]), _layer_rank(s["layer"]), s["name"]))
    out = []
    for entry in ordered:
        points = sorted(entry.pop("points").items())
        out.append(dict(entry, epochs=[e for e, _ in points], values=[v for _, v in points]))
    stats = sorted({s["stat"] for s in out}, key=_stat_rank)
    return {"available": True, "problem": None, "epochs": sorted(epochs), "stats": stats, "series": out,
            "warnings": health.diagnose(rows)}


def _has_header(text: str) -> bool:
    return tuple(h.strip() for h in text.split("\n", 1)[0].strip().split(",")) == COLUMNS


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
