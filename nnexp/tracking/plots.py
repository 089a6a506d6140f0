"""PNG plots written into a run folder: learning curves, per-layer diagnostics, confusion
matrix, errors, and for convolutional networks the first layer's filters and one image's feature maps.

The plots take plain arrays: the trainer computes what a network makes of an
image (``nnexp/feature_maps.py``), so this module knows nothing of layers.
Figures are saved and closed through ``nnexp/figure.py``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from ..figure import float_column, saved, saved_figure, widen_short_axes
from .health import RULES

TRAIN_COLOR = "tab:blue"
VAL_COLOR = "tab:orange"
BEST_COLOR = "tab:green"


def _message_png(path, text: str, title: str | None = None) -> None:
    """A small PNG with a centred message, for plots with nothing to show."""
    with saved_figure(path, figsize=(5, 2)) as (fig, ax):
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color="0.3")
        if title:
            ax.set_title(title)


# ----------------------------------------------------------------- learning curves


def plot_learning_curves(rows: list[dict], path, title: str | None = None) -> None:
    """Loss and accuracy per epoch, train vs validation, side by side.

    Args:
        rows: metrics.csv's rows, one dict per epoch with keys epoch, train_loss,
            train_accuracy, val_loss, val_accuracy (accuracies as fractions; val_*
            may be NaN or missing when there is no validation set); lr, seconds
            are ignored.
        path: PNG file to write.
        title: figure title; default "Learning curves".

    The best validation-accuracy epoch is marked on both panels.
    """
    title = title or "Learning curves"
    metrics = pd.DataFrame(rows)
    if len(metrics) == 0:
        _message_png(path, "no epochs recorded yet", title)
        return
    missing = {"epoch", "train_loss", "train_accuracy"} - set(metrics.columns)
    if missing:
        raise ValueError(f"metrics table lacks columns: {', '.join(sorted(missing))}")

    df = metrics.sort_values("epoch")
    epoch = df["epoch"].to_numpy()
    val_loss = float_column(df, "val_loss")
    val_acc = float_column(df, "val_accuracy")
    best = _best_epoch(epoch, val_acc)

    with saved_figure(path, ncols=2, figsize=(11, 4.2), layout="constrained") as (fig, (ax_loss, ax_acc)):
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
            widen_short_axes(ax, epoch)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.35)
            ax.legend(loc="best", fontsize=9)
        fig.suptitle(_curves_subtitle(title, df, best), fontsize=13)


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


# ----------------------------------------------------------------- diagnostics

REFERENCE_COLOR = "tab:red"


def plot_diagnostics(rows: list[dict], path, title: str | None = None) -> None:
    """Per-layer diagnostics over the epochs, in three panels: dead (ReLU) and
    saturated (sigmoid, tanh) fractions, the weights' gradient norms (log scale)
    and the weights' update ratios (log scale), one line per layer, darker for
    earlier layers. Dashed red lines mark the thresholds of the rules
    (nnexp/tracking/health.py): half the units dead, an update ratio of 0.1.

    Args:
        rows: diagnostics.csv's rows, dicts with keys epoch, layer, name, stat, value.
        path: PNG file to write.
        title: figure title; default "Per-layer diagnostics".
    """
    title = title or "Per-layer diagnostics"
    diagnostics = pd.DataFrame(rows)
    if len(diagnostics) == 0:
        _message_png(path, "no diagnostics recorded", title)
        return
    missing = set(("epoch", "layer", "name", "stat", "value")) - set(diagnostics.columns)
    if missing:
        raise ValueError(f"diagnostics table lacks columns: {', '.join(sorted(missing))}")
    df = diagnostics.assign(value=pd.to_numeric(diagnostics["value"], errors="coerce"))
    epochs = np.sort(df["epoch"].unique())
    units = _diagnostic_lines(df, ("dead_fraction", "saturated_fraction"))
    weights = df[df["name"].astype(str).str.endswith(".W")]
    kinds = {int(layer): str(name) for layer, name in zip(df["layer"], df["name"]) if "." not in str(name)}
    grads = _diagnostic_lines(weights, ("grad_norm",))
    updates = _diagnostic_lines(weights, ("update_ratio",))
    style = dict(marker="o", markersize=3 if len(epochs) <= 50 else 0, linewidth=1.5)

    with saved_figure(path, ncols=3, figsize=(15, 5.4), layout="constrained") as (fig, (ax_u, ax_g, ax_r)):
        for (layer, name, stat), line, color in _colored(units):
            ax_u.plot(line.index, line.to_numpy(), color=color, label=f"layer {layer} {name}",
                      linestyle="--" if stat == "saturated_fraction" else "-", **style)
        dead = RULES["dead_units"].threshold
        ax_u.axhline(dead, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2, label=f"warning above {dead:.0%}")
        ax_u.set(title="Dead (ReLU, solid) / saturated (sigmoid, tanh, dashed)", xlabel="epoch", ylabel="fraction of the layer's units",
                 ylim=(-0.03, 1.03))
        ax_u.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        if not units:
            ax_u.text(0.5, 0.62, "no ReLU, LeakyReLU,\nsigmoid or tanh layer", transform=ax_u.transAxes,
                      ha="center", va="center", color="0.4")
        for ax, lines in ((ax_g, grads), (ax_r, updates)):
            for (layer, name, _), line, color in _colored(lines):
                label = f"{name} ({kinds[layer]})" if layer in kinds else name
                ax.plot(line.index, line.to_numpy(), color=color, label=label, **style)
        large = RULES["large_updates"].threshold
        ax_r.axhline(large, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2, label=f"warning above {large:g}")
        ax_g.set(title="Gradient norm of the weights", xlabel="epoch", ylabel="L2 norm")
        ax_r.set(title="Update ratio of the weights", xlabel="epoch", ylabel="|last step's change| / |weights|")
        for ax, lines, nothing in ((ax_g, grads, "every gradient is 0"), (ax_r, updates, "no step changed a weight")):
            if _positive_values(lines):
                ax.set_yscale("log", nonpositive="mask")  # a zero gradient is left out, not drawn at the bottom
                ax.set_ylabel(ax.get_ylabel() + " (log scale)")
                plain = FuncFormatter(lambda v, _: f"{v:.2g}")  # 0.01 rather than 10^-2
                low, high = ax.get_ylim()
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_formatter(plain if high < 10 * low else NullFormatter())
            else:
                ax.text(0.5, 0.62, nothing if lines else "no dense or conv weights", transform=ax.transAxes,
                        ha="center", va="center", color="0.3", fontsize=12)
        for ax in (ax_u, ax_g, ax_r):
            if len(epochs):
                widen_short_axes(ax, epochs.astype(float))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
            ax.grid(True, alpha=0.35, which="major")
            if ax.get_legend_handles_labels()[0]:  # below the panel: a deep network's lines fill it
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=3, frameon=False,
                          columnspacing=1.0, handlelength=1.6)
        fig.suptitle(f"{title}  —  {len(epochs)} epoch{'s' if len(epochs) != 1 else ''}", fontsize=13)


def _diagnostic_lines(df: pd.DataFrame, stats: tuple) -> list[tuple[tuple, pd.Series]]:
    """((layer, name, stat), values indexed by epoch) for each stat in ``stats``, in layer order."""
    chosen = df[df["stat"].isin(stats)]
    return [((int(layer), str(name), str(stat)), group.set_index("epoch")["value"].sort_index())
            for (layer, name, stat), group in chosen.groupby(["layer", "name", "stat"], sort=True)]


def _colored(lines):
    """(key, line, color): earlier layers darker, on one colour scale per panel."""
    cmap = plt.get_cmap("viridis")
    n = len(lines)
    return [(key, line, cmap(0.85 * i / max(n - 1, 1))) for i, (key, line) in enumerate(lines)]


def _positive_values(lines) -> bool:
    """Whether any line has a finite value above 0 (a log axis needs one)."""
    return any(np.any(np.isfinite(v) & (v > 0)) for v in (line.to_numpy(float) for _, line in lines))


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
    with saved_figure(path, figsize=(side + 1.0, side), layout="constrained") as (fig, ax):
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

    with saved_figure(path, nrows=nrows, ncols=ncols, squeeze=False,
                 figsize=(max(1.75 * ncols + 0.3, 4.5), 1.85 * nrows + 0.9),
                 layout="constrained") as (fig, axes):
        for ax in axes.ravel()[len(shown):]:
            ax.axis("off")  # unused cells of the last row
        for ax, k, picture in zip(axes.ravel(), shown, pictures):
            # Dark ink on white reads like paper; a light frame shows the image edge.
            if picture.ndim == 3:   # colour: as it is, scaled to [0, 1] on the grid's range
                ax.imshow((picture - low) / max(high - low, 1e-12), interpolation="nearest")
            else:
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
    """(N, H, W), (N, 1, H, W) or (N, H*W) -> (N, H, W) float; colour (N, 3, H, W) -> (N, H, W, 3)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4 and images.shape[1] == 1:
        return images[:, 0]
    if images.ndim == 4 and images.shape[1] == 3:
        return images.transpose(0, 2, 3, 1)
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


# ----------------------------------------------------------------- convolutional networks

FILTER_CMAP = "RdBu_r"        # diverging: red positive, blue negative, white zero
ACTIVATION_CMAP = "viridis"   # sequential, for non-negative (post-ReLU) feature maps


def filter_images(weights, per_filter: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Conv kernels as 2-D images on a scale symmetric around 0.

    Args:
        weights: (O, C, kh, kw) Conv2D weights, or (O, kh, kw).
        per_filter: divide each kernel by its own max |w|, which shows the
            shape of weak filters too; False divides all of them by the
            largest max |w| of the layer, which shows which filters are weak.

    Returns:
        images: (O, kh, kw) float64 in [-1, 1]; for C > 1 input channels, the
            mean over them (one picture per output channel).
        scales: (O,) the max |w| each image was divided by.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 3:
        w = w[:, None]
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError(f"expected conv weights shaped (O, C, kh, kw) or (O, kh, kw), "
                         f"got {np.shape(weights)}")
    images = w.mean(axis=1)
    peak = np.abs(images).max(axis=(1, 2))
    scales = peak if per_filter else np.full(len(images), peak.max())
    safe = np.where(scales > 0, scales, 1.0)  # an all-zero kernel stays zero
    return images / safe[:, None, None], scales


def plot_conv_filters(weights, path, title: str | None = None, per_filter: bool = True) -> np.ndarray:
    """Grid of a conv layer's kernels: one small image per output channel.

    Args:
        weights: (O, C, kh, kw) or (O, kh, kw); for C > 1 the mean over the C
            input channels is drawn, and the title says so.
        path: PNG file to write.
        title: default "First conv layer filters"; the filter count and size
            are appended.
        per_filter: see :func:`filter_images`.

    Returns:
        (O, kh, kw) the images drawn, in [-1, 1].

    Red is positive, blue negative and white zero, on one colour bar for all
    kernels; with ``per_filter`` the label above each kernel gives its index
    and the max |w| it was divided by, so magnitudes are not lost.
    """
    images, scales = filter_images(weights, per_filter)
    n, kh, kw = images.shape
    in_channels = np.shape(weights)[1] if np.ndim(weights) == 4 else 1
    ncols = min(n, math.ceil(math.sqrt(1.6 * n)))  # a landscape grid, about 1.6:1
    nrows = math.ceil(n / ncols)
    mosaic, (pitch_h, pitch_w), (gap_h, _) = _tile(images, ncols)
    cell = 0.85 if n <= 32 else 0.68  # inches per kernel, gaps included
    width = cell * ncols
    height = width * mosaic.shape[0] / mosaic.shape[1]

    # One image of all kernels, not one axes each: 128 axes took 2.5 s to draw.
    with saved_figure(path, figsize=(max(width + 1.5, 5.0), height + 1.0), layout="constrained") as (fig, ax):
        cmap = plt.get_cmap(FILTER_CMAP).with_extremes(bad="0.88")  # grey gaps: white means 0
        shown = ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.axis("off")
        fontsize = 7 if n <= 32 else 6
        for k in range(n):
            row, col = divmod(k, ncols)
            # The label sits in the gap above its kernel (pixel centres are integers).
            ax.text(col * pitch_w + (kw - 1) / 2, row * pitch_h + gap_h - 0.6,
                    f"{k}: {scales[k]:.2g}" if per_filter else str(k),
                    ha="center", va="bottom", fontsize=fontsize)
        bar = fig.colorbar(shown, ax=ax, shrink=min(0.9, 0.35 + 0.12 * nrows), ticks=[-1, 0, 1])
        if per_filter:
            bar.set_label("weight / the filter's max |w|")
        else:
            top = scales[0]
            bar.ax.set_yticklabels([f"{-top:.2g}", "0", f"{top:.2g}"])
            bar.set_label("weight")
        detail = f"{n} filters of {kh}x{kw}"
        if in_channels > 1:
            detail += f", mean over {in_channels} input channels"
        detail += ("; each scaled to its own max |w| (label: index: max |w|)" if per_filter
                   else "; one scale for all (label: index)")
        fig.suptitle(f"{title or 'First conv layer filters'}\n{detail}", fontsize=10)
    return images


def _tile(images: np.ndarray, ncols: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(n, kh, kw) images -> one NaN-separated mosaic of ncols columns.

    Returns the mosaic, the pitch (kernel plus gap, in kernel pixels) and the
    gaps (rows, columns). Each kernel has its gap before it: the gap above
    holds its label, so it grows with the kernel (labels scale with the cell).
    """
    n, kh, kw = images.shape
    nrows = math.ceil(n / ncols)
    gap_h, gap_w = max(1, math.ceil(0.4 * kh)), max(1, math.ceil(0.15 * kw))
    pitch_h, pitch_w = kh + gap_h, kw + gap_w
    mosaic = np.full((nrows * pitch_h, ncols * pitch_w - gap_w), np.nan)
    for k, image in enumerate(images):
        row, col = divmod(k, ncols)
        top, left = row * pitch_h + gap_h, col * pitch_w
        mosaic[top:top + kh, left:left + kw] = image
    return mosaic, (pitch_h, pitch_w), (gap_h, gap_w)


def _bare_axes(ax) -> None:
    """No ticks; a light frame shows the image's edge against the white figure."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.75")


def strongest_channels(maps: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k channels of maps (C, H, W) with the largest mean |activation|,
    in channel order (ties: the lower index), so that dead channels are not what is shown."""
    strength = np.abs(maps).mean(axis=(1, 2))
    chosen = np.argsort(-strength, kind="stable")[:k]
    return np.sort(chosen)


def plot_feature_maps(image, rows, probs, label, path, classes=None, max_channels: int = 16,
                      title: str | None = None) -> list[tuple[str, tuple]]:
    """One image and the feature maps a network's conv blocks make of it, a row per block.

    Args:
        image: (C, H, W) the input image as the network took it.
        rows: [(row label, maps (C, H, W)), ...], one per conv block, top to bottom
            (see ``nnexp.feature_maps``).
        probs: (classes,) the network's class probabilities for the image, or None.
        label: its true class index, or None if unknown.
        path: PNG file to write.
        classes: class names for the labels (default: the indices).
        max_channels: at most this many maps per row: the most active ones
            for this image (see :func:`strongest_channels`), titled with
            their channel index.
        title: default "Feature maps"; the prediction is appended.

    Returns:
        [(row label, (C, H, W)), ...] as drawn.

    Each row has its own colour scale, shared by its maps so that they can be compared.

    Raises:
        ValueError: no rows, or an image or maps not shaped (C, H, W).
    """
    image = np.asarray(image)
    if not rows:
        raise ValueError("no feature maps to draw")
    if image.ndim != 3 or any(np.ndim(maps) != 3 for _, maps in rows):
        raise ValueError(f"expected an image and maps shaped (C, H, W), got {image.shape} and "
                         f"{[np.shape(maps) for _, maps in rows]}")
    ncols = min(max_channels, max(maps.shape[0] for _, maps in rows))
    cell = 0.8

    fig = plt.figure(layout="constrained",
                     figsize=(max(cell * ncols + 1.3, 6.0), (cell + 0.65) * (len(rows) + 1) + 0.5))
    with saved(fig, path):
        panels = fig.subfigures(len(rows) + 1, 1, squeeze=False)[:, 0]
        _draw_input_row(panels[0], image, ncols)
        for panel, (name, maps) in zip(panels[1:], rows):
            _draw_maps_row(panel, name, maps, ncols)
        fig.suptitle(_prediction_title(title or "Feature maps", probs, label, classes), fontsize=11)
    return [(name, maps.shape) for name, maps in rows]


def _draw_input_row(panel, image: np.ndarray, ncols: int) -> None:
    """The input (C, H, W) in the first cell of a row of ncols; grey, dark ink on white."""
    axes = panel.subplots(1, ncols, squeeze=False)[0]
    for ax in axes[1:]:
        ax.axis("off")
    picture = image[0] if image.shape[0] == 1 else image.mean(axis=0)
    axes[0].imshow(picture, cmap="gray_r", interpolation="nearest")
    _bare_axes(axes[0])
    channels = "" if image.shape[0] == 1 else f", mean of {image.shape[0]} channels"
    panel.suptitle(f"input: {'x'.join(map(str, image.shape))}{channels}", fontsize=9, x=0.02, ha="left")


def _draw_maps_row(panel, name: str, maps: np.ndarray, ncols: int) -> None:
    """The strongest ncols channels of maps (C, H, W) side by side, one colour bar."""
    shown = strongest_channels(maps, ncols)
    axes = panel.subplots(1, ncols, squeeze=False)[0]
    for ax in axes[len(shown):]:
        ax.axis("off")
    low, high = float(maps[shown].min()), float(maps[shown].max())
    if low < 0:  # signed maps (no ReLU, tanh, ...): centre a diverging map on 0
        top = max(-low, high)
        cmap, vmin, vmax = FILTER_CMAP, -top, top
    else:        # post-ReLU: 0 is "off", the darkest colour
        cmap, vmin, vmax = ACTIVATION_CMAP, 0.0, high if high > 0 else 1.0
    for ax, c in zip(axes, shown):
        image = ax.imshow(maps[c], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        _bare_axes(ax)
        ax.set_title(f"ch {c}", fontsize=7, pad=2)
    panel.colorbar(image, ax=axes[:len(shown)], shrink=0.9, aspect=8, pad=0.01)
    count = f"{len(shown)} most active of {len(maps)} channels" if len(shown) < len(maps) else \
        f"all {len(maps)} channels"
    panel.suptitle(f"{name}  ->  {'x'.join(map(str, maps.shape))} ({count})",
                   fontsize=9, x=0.02, ha="left")


def _prediction_title(title: str, probs, label, classes) -> str:
    """'Feature maps — true 7, predicted 7 (0.98)': what the network made of the image."""
    name = (lambda k: str(classes[k])) if classes is not None else str
    parts = [] if label is None else [f"true {name(int(label))}"]
    if probs is not None:
        k = int(np.argmax(probs))
        parts.append(f"predicted {name(k)} ({probs[k]:.2f})")
    return f"{title}  —  {', '.join(parts)}" if parts else title


def plot_samples(images, labels, classes, path, per_class: int = 8) -> None:
    """A grid of a dataset's images: one row per class (its name on the left), its first ``per_class``
    images; grayscale (N, 1, H, W) or colour (N, 3, H, W) in [0, 1]."""
    pictures, labels = _as_2d_images(images), np.asarray(labels)
    rows = [np.flatnonzero(labels == k)[:per_class] for k in range(len(classes))]
    with saved_figure(path, nrows=len(classes), ncols=per_class, squeeze=False,
                      figsize=(1.1 * per_class + 1.2, 1.1 * len(classes) + 0.5), layout="constrained") as (fig, axes):
        for k, (row, name) in enumerate(zip(rows, classes)):
            for j, ax in enumerate(axes[k]):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(row):
                    picture = np.clip(pictures[row[j]], 0.0, 1.0)
                    ax.imshow(picture, cmap=None if picture.ndim == 3 else "gray", vmin=0, vmax=1,
                              interpolation="nearest")
                else:
                    ax.axis("off")
            axes[k][0].set_ylabel(str(name), rotation=0, ha="right", va="center", fontsize=9)
        fig.suptitle(f"{len(labels):,} images, {len(classes)} classes", fontsize=10)
