"""How a value looks in a comparison table, in the terminal and in the HTML report."""

from __future__ import annotations

import math

from ..values import is_missing

DIFFERENCES = (" diff", " diff_low", " diff_high")  # signed; of an accuracy in percentage points
NOTE_WIDTH = 40  # characters of a note a table shows


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
            return f"{value:.2%}"
        if "accuracy" in column and column.endswith(("std", "ci95")):
            return f"{value * 100:.2f}pp"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if column == "note":
        return short_note(value) or "-"
    return str(value)


def short_note(note) -> str | None:
    """The first line of a note, cut to NOTE_WIDTH characters."""
    if not isinstance(note, str) or not note.strip():
        return None
    line = note.strip().splitlines()[0]
    return line if len(line) <= NOTE_WIDTH and "\n" not in note.strip() else line[:NOTE_WIDTH - 1] + "…"
