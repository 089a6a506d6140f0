"""How a value looks: in a comparison table (the terminal, the HTML report, the
dashboard) and in a run's summary (``nnexp show``, the dashboard's run page)."""

from __future__ import annotations

import json
import math

from ..timestamps import timestamp
from ..values import is_missing, is_number

DIFFERENCES = (" diff", " diff_low", " diff_high")  # signed; of an accuracy in percentage points
NOTE_WIDTH = 40  # characters of a note a table shows
TIME_FIELDS = ("start_time",)  # summary fields that hold seconds since the epoch


def percent(fraction: float) -> str:
    """A fraction (an accuracy) as a percent: 0.95123 -> '95.12%'."""
    return f"{fraction:.2%}"


def summary_text(key: str, value, summary: dict | None = None) -> str:
    """A field of a run's summary as text: times (seconds since the epoch) as
    dates, accuracies in [0, 1] as percents (``best_val_value`` too when
    ``best_val_metric`` is an accuracy), parameter counts and sizes with
    thousands separators, other floats with 4 significant digits (large ones
    whole), mappings as 'key value, ...', lists comma-separated, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ", ".join(f"{k} {_inner_text(str(k), v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_inner_text(key, v) for v in value) or "-"
    if not is_number(value):
        return str(value)
    if key in TIME_FIELDS and math.isfinite(value) and 0 <= value < 1e11:
        return timestamp(float(value))
    accuracy = "accuracy" in key or (key == "best_val_value" and "accuracy" in str((summary or {}).get(
        "best_val_metric", "")))
    if accuracy and isinstance(value, float) and 0.0 <= value <= 1.0:
        return percent(value)
    if isinstance(value, int):
        return f"{value:,}" if key == "params" or key.endswith("_size") else str(value)
    if math.isfinite(value) and abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_cell(column: str, value) -> str:
    """Accuracies (a column whose name contains 'accuracy') in [0, 1] as percents,
    differences with their sign (of accuracies in percentage points), other
    floats with 4 significant digits, missing values as '-'."""
    if is_missing(value):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and column.endswith(DIFFERENCES):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value * 100:+.2f}pp" if "accuracy" in column else f"{value:+.4g}"
    if isinstance(value, float):
        if "accuracy" in column and 0.0 <= value <= 1.0 and not column.endswith(("std", "ci95")):
            return percent(value)
        if "accuracy" in column and column.endswith(("std", "ci95")):
            return f"{value * 100:.2f}pp"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if column == "note":
        return short_note(value) or "-"
    return str(value)


def _inner_text(key: str, value) -> str:
    """A value inside a summary's mapping or list: deeper containers as compact JSON."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return summary_text(key, value)


def short_note(note) -> str | None:
    """The first line of a note, cut to NOTE_WIDTH characters."""
    if not isinstance(note, str) or not note.strip():
        return None
    line = note.strip().splitlines()[0]
    return line if len(line) <= NOTE_WIDTH and "\n" not in note.strip() else line[:NOTE_WIDTH - 1] + "…"
