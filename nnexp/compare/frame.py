"""The pandas view of a store: one row per run, flat ``param.*`` and ``metric.*``
columns. ``nnexp.load_runs`` is the notebook entry point::

    import nnexp
    df = nnexp.load_runs("runs", where="optimizer.name == 'adam' and val_accuracy > 0.97")
    df.groupby("param.optimizer.lr")["metric.val_accuracy"].mean()
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .rows import TOP_COLUMNS, flat_row
from .select import RunQuery, select_runs


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Records (see ``nnexp.tracking.records``) as a DataFrame, in their order."""
    rows = [flat_row(r) for r in records]
    frame = pd.DataFrame(rows, columns=None if rows else list(TOP_COLUMNS))
    params = sorted(c for c in frame.columns if c.startswith("param."))
    metrics = sorted(c for c in frame.columns if c.startswith("metric."))
    frame = frame[list(TOP_COLUMNS) + params + metrics]
    for column in metrics:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_runs(store: str | Path = "runs", where: str | None = None) -> pd.DataFrame:
    """Every readable run of ``store`` (oldest first), optionally filtered by a
    ``--where`` expression (same grammar as ``nnexp compare --where``)."""
    return records_frame(select_runs(store, RunQuery(where=where)).records)
