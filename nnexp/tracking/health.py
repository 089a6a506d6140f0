"""What a run's diagnostics.csv says is wrong with the network, in plain words.

Each rule of :data:`RULES` looks at the latest epoch of diagnostics.csv
(written by the trainer, see nnexp/diagnostics.py) and fires once per layer
or parameter it concerns, saying since which epoch the problem has lasted.
``nnexp show`` prints the warnings; its ``--json`` lists them. This module
reads the file with the csv module only: ``show`` loads neither NumPy nor pandas.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from .reading import MAX_TABLE_FILE, read_bytes
from .run import DIAGNOSTIC_COLUMNS, DIAGNOSTICS


@dataclass(frozen=True)
class Rule:
    name: str
    threshold: float
    fires_when: str


#: The rules and their thresholds (docs/diagnostics.md explains them).
RULES = {rule.name: rule for rule in (
    Rule("dead_units", 0.5,
         "a ReLU or LeakyReLU layer's dead_fraction is above the threshold: more than half of its units "
         "output 0 (LeakyReLU: a negative number) for every probe image"),
    Rule("vanishing_gradients", 1e-3,
         "the gradient norm of the first dense or conv layer's weights is below the threshold times "
         "that of the last one's"),
    Rule("large_updates", 0.1,
         "a dense or conv layer's weights changed in the epoch's last step by more than the threshold "
         "times their norm (update_ratio)"),
)}


def read_diagnostic_rows(path) -> list[dict]:
    """The rows of a diagnostics.csv (a run folder or the file itself) as dicts
    {epoch: int, layer: int, name, stat, value: float}; [] if there is none.
    Rows that cannot be read (the half-written end of a killed run's file) are left out.
    A file that cannot be read (see reading.py: a regular file of at most 32 MiB) raises OSError."""
    path = Path(path)
    if path.is_dir():
        path = path / DIAGNOSTICS
    try:
        text = read_bytes(path, MAX_TABLE_FILE).decode("utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    return parse_diagnostics(text)


def parse_diagnostics(text: str) -> list[dict]:
    """The rows of a diagnostics.csv's text (see read_diagnostic_rows); [] without its header."""
    lines = list(csv.reader(io.StringIO(text, newline="")))
    if not lines or tuple(lines[0]) != DIAGNOSTIC_COLUMNS:
        return []
    rows = []
    for line in lines[1:]:
        try:
            epoch, layer, name, stat, value = line
            rows.append({"epoch": int(epoch), "layer": int(layer), "name": name, "stat": stat,
                         "value": float(value)})
        except ValueError:
            continue
    return rows


def diagnose(rows: list[dict]) -> list[dict]:
    """The warnings the rules give for diagnostics rows (``read_diagnostic_rows``):
    dicts {rule, layer, name, epoch (the latest), since (the first epoch of the
    streak that reaches it), value, message}, in layer order per rule."""
    if not rows:
        return []
    series: dict[tuple, dict[int, float]] = {}
    kinds: dict[int, str] = {}
    for row in rows:
        series.setdefault((row["layer"], row["name"], row["stat"]), {})[row["epoch"]] = row["value"]
        if "." not in row["name"]:
            kinds[row["layer"]] = row["name"]
    last = max(row["epoch"] for row in rows)
    return _dead_units(series, last) + _vanishing_gradients(series, last) + _large_updates(series, kinds, last)


def _since(by_epoch: dict[int, float], last: int, holds) -> int | None:
    """The first epoch of the unbroken streak of epochs up to ``last`` where ``holds(value)``; None if it fails at ``last``."""
    epoch = last
    if epoch not in by_epoch or not holds(by_epoch[epoch]):
        return None
    while epoch - 1 in by_epoch and holds(by_epoch[epoch - 1]):
        epoch -= 1
    return epoch


def _warning(rule: str, layer: int, name: str, last: int, since: int, value: float, message: str) -> dict:
    return {"rule": rule, "layer": layer, "name": name, "epoch": last, "since": since, "value": value,
            "message": message}


def _dead_units(series, last: int) -> list[dict]:
    limit = RULES["dead_units"].threshold
    out = []
    for (layer, name, stat), by_epoch in sorted(series.items()):
        if stat != "dead_fraction":
            continue
        since = _since(by_epoch, last, lambda v: v > limit)
        if since is None:
            continue
        value = by_epoch[last]
        output = "0" if name == "relu" else "<= 0"
        out.append(_warning("dead_units", layer, name, last, since, value,
                            f"layer {layer} ({name}): {value:.0%} of its units are dead (output {output} for "
                            f"every probe image) since epoch {since}"))
    return out


def _weights(series, stat: str) -> list[tuple[int, str, dict]]:
    """(layer, name, {epoch: value}) of ``stat`` for every weight tensor (a dense or conv layer's W), in layer order."""
    return sorted((layer, name, by_epoch) for (layer, name, s), by_epoch in series.items()
                  if s == stat and name.endswith(".W"))


def _vanishing_gradients(series, last: int) -> list[dict]:
    weights = _weights(series, "grad_norm")
    if len(weights) < 2:
        return []
    (layer, name, first), (_, last_name, final) = weights[0], weights[-1]
    limit = RULES["vanishing_gradients"].threshold

    def ratio(epoch):
        a, b = first.get(epoch, math.nan), final.get(epoch, math.nan)
        return a / b if b > 0 else math.nan

    ratios = {epoch: ratio(epoch) for epoch in first}
    since = _since(ratios, last, lambda v: v < limit)
    if since is None:
        return []
    value = ratios[last]
    times = f"{float(f'{1 / value:.2g}'):,.0f} times" if value > 0 else "infinitely"  # two significant digits
    return [_warning("vanishing_gradients", layer, name, last, since, value,
                     f"vanishing gradients: the first layer's weights ({name}) get a gradient {times} smaller "
                     f"than the last layer's ({last_name}): norm {first[last]:.2g} against {final[last]:.2g} "
                     f"(ratio under {limit:g}) since epoch {since}; the first layers barely learn")]


def _large_updates(series, kinds: dict[int, str], last: int) -> list[dict]:
    limit = RULES["large_updates"].threshold
    out = []
    for layer, name, by_epoch in _weights(series, "update_ratio"):
        since = _since(by_epoch, last, lambda v: v > limit)
        if since is None:
            continue
        value = by_epoch[last]
        kind = f" ({kinds[layer]})" if layer in kinds else ""
        out.append(_warning("large_updates", layer, name, last, since, value,
                            f"layer {layer}{kind}: one step changes its weights ({name}) by {value:.0%} of their "
                            f"norm (update ratio {value:.2g}, above {limit:g}) since epoch {since}: the steps "
                            "are too large; try a smaller learning rate"))
    return out
