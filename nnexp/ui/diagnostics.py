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

import os

from ..charts.run import DESCRIPTIONS, STATS, diagnostic_series  # noqa: F401 -- the page names the statistics
from ..tracking import health
from ..tracking.reading import MAX_TABLE_FILE, read_bytes
from ..tracking.run import DIAGNOSTIC_COLUMNS as COLUMNS
from ..tracking.run import DIAGNOSTICS


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
    out = diagnostic_series(rows)
    epochs = {e for s in out for e in s["epochs"]}
    stats = list(dict.fromkeys(s["stat"] for s in out))
    return {"available": True, "problem": None, "epochs": sorted(epochs), "stats": stats, "series": out,
            "warnings": health.diagnose(rows)}


def _has_header(text: str) -> bool:
    return tuple(h.strip() for h in text.split("\n", 1)[0].strip().split(",")) == COLUMNS


