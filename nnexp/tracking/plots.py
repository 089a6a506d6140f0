"""PNG plots written into a run folder: learning curves, per-layer diagnostics, confusion
matrix, errors, and for convolutional networks the first layer's filters and one image's feature maps.

The plots take plain arrays: the trainer computes what a network makes of an
image (``nnexp/feature_maps.py``), so this module knows nothing of layers. The learning
curves and diagnostics are the run's chart descriptions (``nnexp/charts/run.py``, which the
dashboard draws too); the image plots are drawn here. Figures are saved and closed
through ``nnexp/charts/matplotlib.py``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from ..charts.matplotlib import message_png, save_png, saved, saved_figure
from ..charts.run import diagnostics_overview, learning_curves, number
from .run import DIAGNOSTIC_COLUMNS


# ----------------------------------------------------------------- learning curves and diagnostics


def plot_learning_curves(rows: list[dict], path, title: str | None = None) -> None:
    """Loss and accuracy per epoch (or step), train vs validation, side by side.

    Args:
        rows: metrics.csv's rows, one dict per epoch: epoch, train_loss,
            train_accuracy, val_loss, val_accuracy (accuracies as fractions; val_*
            NaN or missing without a validation set); lr, seconds are not drawn.
        path: PNG file to write.
        title: figure title; default "Learning curves".

    The best validation-accuracy epoch is marked on both panels.
    """
    title = title or "Learning curves"
    if not rows:
        message_png(path, "no epochs recorded yet", title)
        return
    missing = {"epoch", "train_loss", "train_accuracy"} - set(rows[0])
    if missing:
        raise ValueError(f"metrics rows lack columns: {', '.join(sorted(missing))}")
    chart = learning_curves(sorted(rows, key=lambda row: number(row.get("epoch"))), title)
    if chart is None:
        message_png(path, "no loss or accuracy recorded yet", title)
        return
    save_png(chart, path)


def plot_diagnostics(rows: list[dict], path, title: str | None = None) -> None:
    """Per-layer diagnostics over the epochs, in three panels: dead (ReLU) and
    saturated (sigmoid, tanh) fractions, the weights' gradient norms and update
    ratios (log scale where they span decades), one line per layer, darker for
    earlier layers. Dotted red lines mark the thresholds of the rules
    (nnexp/tracking/health.py): half the units dead, an update ratio of 0.1.

    Args:
        rows: diagnostics.csv's rows, one dict per value: epoch, layer, name, stat, value.
        path: PNG file to write.
        title: figure title; default "Per-layer diagnostics".
    """
    title = title or "Per-layer diagnostics"
    if not rows:
        message_png(path, "no diagnostics recorded", title)
        return
    missing = set(DIAGNOSTIC_COLUMNS) - set(rows[0])
    if missing:
        raise ValueError(f"diagnostics rows lack columns: {', '.join(sorted(missing))}")
    save_png(diagnostics_overview(rows, title), path)


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
        message_png(path, "no misclassified images", "Misclassified images")
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
