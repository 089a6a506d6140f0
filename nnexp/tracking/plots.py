"""PNG plots written into a run folder: learning curves, confusion matrix, errors.

Plots are drawn with matplotlib's Agg backend (no display needed, safe in
worker processes) and every figure is closed after saving, so making plots for
hundreds of runs in one process does not grow memory.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # must precede the pyplot import; headless and thread-free

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

DPI = 110
TRAIN_COLOR = "tab:blue"
VAL_COLOR = "tab:orange"
BEST_COLOR = "tab:green"


@contextmanager
def _figure(path, **subplots_kwargs):
    """Yield (fig, axes) from plt.subplots; save as PNG to `path` and always close.

    The parent folder is created if needed. Closing in `finally` keeps pyplot's
    figure registry empty even when drawing fails.
    """
    fig, axes = plt.subplots(**subplots_kwargs)
    try:
        yield fig, axes
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def _message_png(path, text: str, title: str | None = None) -> None:
    """A small PNG with a centred message, for plots with nothing to show."""
    with _figure(path, figsize=(5, 2)) as (fig, ax):
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color="0.3")
        if title:
            ax.set_title(title)


# ----------------------------------------------------------------- learning curves


def plot_learning_curves(metrics: pd.DataFrame, path, title: str | None = None) -> None:
    """Loss and accuracy per epoch, train vs validation, side by side.

    Args:
        metrics: one row per epoch with columns epoch, train_loss, train_accuracy,
            val_loss, val_accuracy (accuracies as fractions; val_* may be NaN or
            missing when there is no validation set); lr, seconds are ignored.
        path: PNG file to write.
        title: figure title; default "Learning curves".

    The best validation-accuracy epoch is marked on both panels.
    """
    title = title or "Learning curves"
    if len(metrics) == 0:
        _message_png(path, "no epochs recorded yet", title)
        return
    missing = {"epoch", "train_loss", "train_accuracy"} - set(metrics.columns)
    if missing:
        raise ValueError(f"metrics table lacks columns: {', '.join(sorted(missing))}")

    df = metrics.sort_values("epoch")
    epoch = df["epoch"].to_numpy()
    val_loss = _column(df, "val_loss")
    val_acc = _column(df, "val_accuracy")
    best = _best_epoch(epoch, val_acc)

    with _figure(path, ncols=2, figsize=(11, 4.2), layout="constrained") as (fig, (ax_loss, ax_acc)):
        # Markers keep a single-epoch run visible (a line needs two points).
        style = dict(marker="o", markersize=3.5 if len(df) <= 50 else 0, linewidth=1.6)
        ax_loss.plot(epoch, df["train_loss"], color=TRAIN_COLOR, label="train", **style)
        ax_acc.plot(epoch, df["train_accuracy"], color=TRAIN_COLOR, label="train", **style)
        if np.isfinite(val_loss).any():
            ax_loss.plot(epoch, val_loss, color=VAL_COLOR, label="validation", **style)
        if np.isfinite(val_acc).any():
            ax_acc.plot(epoch, val_acc, color=VAL_COLOR, label="validation", **style)

        if best is not None:
            best_epoch, best_acc = best
            for ax in (ax_loss, ax_acc):
                ax.axvline(best_epoch, color=BEST_COLOR, linestyle="--", linewidth=1,
                           label=f"best val (epoch {best_epoch:g})")
            ax_acc.plot([best_epoch], [best_acc], marker="*", markersize=13, color=BEST_COLOR,
                        linestyle="none", zorder=5)
            ax_acc.annotate(f"{_as_fraction(best_acc, val_acc):.2%}", (best_epoch, best_acc),
                            textcoords="offset points", xytext=(0, -16), ha="center",
                            color=BEST_COLOR, fontsize=9, fontweight="bold")

        ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy loss")
        ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
        # Accuracies are stored as fractions; tolerate percent tables too.
        acc_max = np.nanmax(np.r_[df["train_accuracy"].to_numpy(float), val_acc])
        ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=100.0 if acc_max > 1.0 else 1.0))
        for ax in (ax_loss, ax_acc):
            _widen_short_axes(ax, epoch)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.35)
            ax.legend(loc="best", fontsize=9)
        fig.suptitle(_curves_subtitle(title, df, best), fontsize=13)


def _widen_short_axes(ax, epoch: np.ndarray) -> None:
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


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    """Column as a float array, all-NaN if absent (no validation set)."""
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def _best_epoch(epoch: np.ndarray, val_acc: np.ndarray) -> tuple[float, float] | None:
    """(epoch, accuracy) of the highest validation accuracy, first on ties; None if no val."""
    if not np.isfinite(val_acc).any():
        return None
    i = int(np.nanargmax(val_acc))
    return float(epoch[i]), float(val_acc[i])


def _as_fraction(value: float, reference: np.ndarray) -> float:
    """Accuracy as a fraction whether the table stores fractions or percents."""
    return value / 100.0 if np.nanmax(reference) > 1.0 else value


def _curves_subtitle(title: str, df: pd.DataFrame, best) -> str:
    """Title plus a one-line summary of the run's end state."""
    last = df.iloc[-1]
    parts = [f"{len(df)} epoch{'s' if len(df) != 1 else ''}",
             f"final train acc {_as_fraction(last['train_accuracy'], df['train_accuracy']):.2%}"]
    if best is not None:
        parts.append(f"best val acc {_as_fraction(best[1], df['val_accuracy']):.2%} "
                     f"at epoch {best[0]:g}")
    return f"{title}  —  " + ", ".join(parts)


# ----------------------------------------------------------------- confusion matrix


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts, row = true class, column = predicted class.

    Raises:
        ValueError: label arrays of different lengths or labels outside [0, C).
    """
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    # Each (true, pred) pair gets a unique bin index true*C + pred.
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def plot_confusion_matrix(y_true, y_pred, classes: list[str], path, title: str | None = None) -> np.ndarray:
    """Draw the confusion matrix with counts in the cells (zeros left blank).

    Args:
        y_true, y_pred: (N,) integer labels in [0, C).
        classes: C class names, used as tick labels.
        path: PNG file to write.
        title: default "Confusion matrix"; the accuracy and N are appended.

    Returns:
        (C, C) int64 counts, row = true, column = predicted.

    Colours use a log scale so that a handful of errors is visible next to a
    diagonal of thousands.
    """
    classes = [str(c) for c in classes]
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    total = int(cm.sum())
    accuracy = np.trace(cm) / total if total else float("nan")

    side = max(4.5, 0.55 * n + 2.0)
    with _figure(path, figsize=(side + 1.0, side), layout="constrained") as (fig, ax):
        shown = np.ma.masked_equal(cm, 0)  # zero cells stay white
        vmax = max(int(cm.max()), 2)
        image = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=vmax))
        fig.colorbar(image, ax=ax, shrink=0.8, label="count (log scale)")
        _annotate_counts(ax, cm, vmax)

        ticks = np.arange(n)
        if max(map(len, classes)) > 2:  # long names would overlap: tilt, anchored at the tick
            ax.set_xticks(ticks, labels=classes, rotation=40, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticks(ticks, labels=classes)
        ax.set_yticks(ticks, labels=classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{title or 'Confusion matrix'}\naccuracy {accuracy:.2%} on {total:,} images")
        # Thin white lines between cells make rows/columns easy to follow.
        ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
    return cm


def _annotate_counts(ax, cm: np.ndarray, vmax: int) -> None:
    """Write each non-zero count in its cell, white on dark cells."""
    n = cm.shape[0]
    fontsize = max(5, min(10, 90 // n))
    # Cells above ~sqrt(vmax) on the log scale are dark enough to need white text.
    dark = math.sqrt(vmax)
    for i, j in zip(*np.nonzero(cm)):
        count = cm[i, j]
        ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=fontsize,
                color="white" if count > dark else "black",
                fontweight="bold" if i != j else "normal")


# ----------------------------------------------------------------- misclassified


def plot_misclassified(images, y_true, y_pred, probs, classes, path, max_images: int = 36) -> int:
    """Grid of the first `max_images` misclassified images, titled with true/predicted.

    Args:
        images: (N, H, W), (N, 1, H, W) or flattened (N, H*W) square images.
        y_true, y_pred: (N,) integer labels.
        probs: (N, C) class probabilities, or None; if given, each title shows
            the probability the model gave its (wrong) prediction.
        classes: C class names.
        path: PNG file to write.

    Returns:
        The total number of misclassified images (not just those drawn).
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    probs = None if probs is None else np.asarray(probs)
    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        _message_png(path, "no misclassified images", "Misclassified images")
        return 0

    shown = wrong[:max_images]
    pictures = _as_2d_images(images)[shown]
    ncols = math.ceil(math.sqrt(len(shown)))
    nrows = math.ceil(len(shown) / ncols)
    low, high = float(pictures.min()), float(pictures.max())  # same scale for all

    with _figure(path, nrows=nrows, ncols=ncols, squeeze=False,
                 figsize=(max(1.75 * ncols + 0.3, 4.5), 1.85 * nrows + 0.9),
                 layout="constrained") as (fig, axes):
        for ax in axes.ravel()[len(shown):]:
            ax.axis("off")  # unused cells of the last row
        for ax, k, picture in zip(axes.ravel(), shown, pictures):
            # Dark ink on white reads like paper; a light frame shows the image edge.
            ax.imshow(picture, cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.8")
            ax.set_title(_error_label(k, y_true, y_pred, probs, classes), fontsize=8.5, color="firebrick")
        total = len(y_true)
        note = f"\nfirst {len(shown)} shown" if len(shown) < wrong.size else ""
        fig.suptitle(f"Misclassified: {wrong.size:,} of {total:,} images "
                     f"({wrong.size / total:.2%}){note}", fontsize=11)
    return int(wrong.size)


def _as_2d_images(images) -> np.ndarray:
    """(N, H, W), (N, 1, H, W) or (N, H*W) -> (N, H, W) float."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4 and images.shape[1] == 1:
        return images[:, 0]
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side == images.shape[1]:
            return images.reshape(len(images), side, side)
    if images.ndim == 3:
        return images
    raise ValueError(f"expected images shaped (N,H,W), (N,1,H,W) or (N,H*W), got {images.shape}")


def _error_label(k: int, y_true, y_pred, probs, classes) -> str:
    """'true 7 / pred 2 (0.93)' for sample k; the probability only if known."""
    true, pred = f"true {classes[y_true[k]]}", f"pred {classes[y_pred[k]]}"
    if probs is not None:
        pred += f" ({probs[k, y_pred[k]]:.2f})"
    # Long class names (e.g. "T-shirt/top") would run into the next cell's title.
    separator = " / " if len(true) + len(pred) <= 24 else "\n"
    return true + separator + pred
