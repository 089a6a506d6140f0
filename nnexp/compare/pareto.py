"""The Pareto front of runs compared on several metrics at once.

A run is Pareto-optimal when no other run is at least as good on every
metric and better on one. Equal runs do not dominate each other (both stay
on the front); a run missing a value is never on the front and dominates
nothing.
"""

from __future__ import annotations

import numpy as np

# A multi-objective sweep's metric names -> the comparison's metric columns.
OBJECTIVE_COLUMNS = {"val_accuracy": "metric.val_accuracy", "val_loss": "metric.val_loss",
                     "params": "metric.n_params", "train_seconds": "metric.train_seconds"}


def pareto_front(values, goals) -> np.ndarray:
    """(N,) bool: which rows of ``values`` are Pareto-optimal.

    Args:
        values: (N, K) numbers, one column per metric (NaN: missing).
        goals: K of "maximize" / "minimize".
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(goals):
        raise ValueError(f"values must be (N, {len(goals)}), got shape {values.shape}")
    if any(g not in ("maximize", "minimize") for g in goals):
        raise ValueError(f"goals must be maximize or minimize, got {list(goals)}")
    signs = np.array([1.0 if g == "maximize" else -1.0 for g in goals])
    scores = values * signs  # larger is better in every column
    complete = np.isfinite(scores).all(axis=1)
    front = complete.copy()
    rows = scores[complete]
    for i in np.flatnonzero(complete):
        at_least = (rows >= scores[i]).all(axis=1)
        better = (rows > scores[i]).any(axis=1)
        front[i] = not (at_least & better).any()
    return front


def sweep_objectives(sweep: dict | None) -> list[tuple[str, str]]:
    """[(metric column, goal)] of a multi-objective sweep's state; empty for any other."""
    metrics = (sweep or {}).get("metrics")
    if not isinstance(metrics, list) or len(metrics) < 2:
        return []
    out = []
    for m in metrics:
        if not isinstance(m, dict) or m.get("name") not in OBJECTIVE_COLUMNS:
            return []
        out.append((OBJECTIVE_COLUMNS[m["name"]], m.get("goal", "maximize")))
    return out


def mark_front(result, objectives: list[tuple[str, str]], column: str = "pareto") -> None:
    """Add ``column`` (True on the front) to a comparison (``table.Comparison``:
    one row per run, or per group with the mean), before its first metric."""
    names = [c.removeprefix("metric.") for c, _ in objectives]
    if any(n not in result.columns for n in names):
        return
    rows = result.table_rows
    values = np.array([[_number(row.get(n)) for n in names] for row in rows], dtype=float).reshape(len(rows),
                                                                                                  len(names))
    front = pareto_front(values, [g for _, g in objectives]) if rows else np.zeros(0, dtype=bool)
    for row, on in zip(rows, front):
        row[column] = bool(on)
    result.columns.insert(min(result.columns.index(n) for n in names), column)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
