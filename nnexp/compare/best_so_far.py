"""Best so far against the number of trials: how fast a search finds a good setting.

`running_best` is the curve of one sweep; `best_so_far_table` puts several
sweeps side by side (``nnexp compare --sweep A --sweep B --best-so-far``),
one row per sweep, one column per trial count, so that searches with the
same budget (random and tpe, several seeds each) can be read off together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .layout import running_best

def trial_counts(n: int, every: int) -> list[int]:
    """The trial counts a table shows: every ``every`` trials, and the last."""
    counts = list(range(every, n + 1, every))
    return counts if counts and counts[-1] == n else counts + [n]


def best_so_far_table(runs: pd.DataFrame, metric: str, goal: str, every: int = 5) -> pd.DataFrame:
    """One row per sweep (``sweep`` column, sorted): its id, trials, and the
    best ``metric`` among its first n trials (by ``trial`` number) for n =
    every, 2 every, ..., all (column ``<metric>@<n>``); pruned trials do not count.

    Args:
        runs: the pandas view of runs (columns sweep, trial, status and ``metric``).
        metric: the metric.* column.
        goal: "maximize" or "minimize".
        every: the step between the trial counts shown.
    """
    frame = runs[runs["sweep"].notna()].copy()
    frame["trial"] = pd.to_numeric(frame["trial"], errors="coerce")
    name = metric.removeprefix("metric.")
    rows = []
    longest = int(frame.groupby("sweep").size().max()) if len(frame) else 0
    counts = trial_counts(longest, every) if longest else []
    for sweep, group in frame.groupby("sweep", sort=True):
        group = group.sort_values("trial", kind="stable")
        best = running_best(pd.to_numeric(group[metric], errors="coerce"),
                            (group["status"] == "pruned").to_numpy(), goal)
        row = {"sweep": sweep, "trials": len(group)}
        for n in counts:
            row[f"{name}@{n}"] = float(best[n - 1]) if n <= len(best) else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["sweep", "trials"] + [f"{name}@{n}" for n in counts])
