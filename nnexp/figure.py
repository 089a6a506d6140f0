"""Saving matplotlib figures as PNG files, and the small helpers the run plots
(``nnexp/tracking/plots.py``) and the comparison plots (``nnexp/compare/plots.py``) share.

Figures are drawn with matplotlib's Agg backend (no display needed, safe in
worker processes) and every figure is closed after saving, so making plots for
hundreds of runs in one process does not grow memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # must precede the pyplot import; headless and thread-free

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 110


@contextmanager
def saved_figure(path, **subplots_kwargs):
    """Yield (fig, axes) from plt.subplots; save as PNG to ``path`` and always close.

    The parent folder is created if needed. Closing in ``finally`` keeps pyplot's
    figure registry empty even when drawing fails.
    """
    fig, axes = plt.subplots(**subplots_kwargs)
    with saved(fig, path):
        yield fig, axes


@contextmanager
def saved(fig, path):
    """Yield; then save ``fig`` as PNG to ``path`` (creating its folder), and always close it."""
    try:
        yield
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def float_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as a float array (NaN where a cell is not a number); all-NaN if absent."""
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def widen_short_axes(ax, epoch: np.ndarray) -> None:
    """Give a run of one or two epochs sensible limits instead of a zoomed-in speck.

    Matplotlib's autoscaling on a single point yields ticks like 0.995..1.005
    and a y-range of +-0.1%; pad x by one epoch and y to at least 10% of its level.
    """
    if np.ptp(epoch) < 2:
        ax.set_xlim(epoch.min() - 1, epoch.max() + 1)
    low, high = ax.get_ylim()
    min_span = 0.1 * max(abs(low), abs(high), 1e-3)
    if high - low < min_span:
        middle = (low + high) / 2
        ax.set_ylim(middle - min_span / 2, middle + min_span / 2)
