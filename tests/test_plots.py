"""Tests for nnexp.tracking.plots: PNGs written into a run folder."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from nnexp.tracking import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = [str(i) for i in range(10)]


def assert_png(path, min_width=300, min_height=150) -> np.ndarray:
    """The file is a PNG that matplotlib reads back at a sensible size; returns pixels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert min_width <= width <= 4000 and min_height <= height <= 4000
    assert np.ptp(pixels) > 0  # not a blank canvas
    return pixels


@pytest.fixture(autouse=True)
def no_figures_left_open():
    """Every plot function must close its figures (memory stays flat over many runs)."""
    yield
    assert plt.get_fignums() == []


def metrics_table(epochs: int, with_val: bool = True) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    train_loss = 0.9 * np.exp(-epoch / 3) + 0.05
    val_loss = train_loss + 0.03 + 0.004 * epoch
    return pd.DataFrame({
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": 1 - train_loss / 2,
        "val_loss": val_loss if with_val else np.nan,
        "val_accuracy": 1 - val_loss / 2 if with_val else np.nan,
        "lr": 0.1,
        "seconds": 2.5,
    })


# ----------------------------------------------------------------- learning curves


@pytest.mark.parametrize("epochs", [1, 2, 12])
@pytest.mark.parametrize("with_val", [True, False])
def test_learning_curves_png(tmp_path, epochs, with_val):
    path = tmp_path / "plots" / "learning_curves.png"  # parent is created
    plots.plot_learning_curves(metrics_table(epochs, with_val), path)
    assert_png(path, min_width=800)


def test_learning_curves_from_csv_round_trip(tmp_path):
    # metrics.csv without a validation set has empty val_* cells -> NaN on read.
    csv = tmp_path / "metrics.csv"
    metrics_table(3, with_val=False).to_csv(csv, index=False)
    plots.plot_learning_curves(pd.read_csv(csv), tmp_path / "lc.png")
    assert_png(tmp_path / "lc.png")


def test_learning_curves_without_val_columns_and_empty(tmp_path):
    table = metrics_table(4).drop(columns=["val_loss", "val_accuracy"])
    plots.plot_learning_curves(table, tmp_path / "a.png")
    assert_png(tmp_path / "a.png")
    plots.plot_learning_curves(table.iloc[:0], tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")


def test_learning_curves_missing_columns(tmp_path):
    with pytest.raises(ValueError, match="train_loss"):
        plots.plot_learning_curves(pd.DataFrame({"epoch": [1]}), tmp_path / "x.png")


def test_best_epoch_is_first_maximum_and_ignores_nan():
    epoch = np.array([1, 2, 3, 4])
    assert plots._best_epoch(epoch, np.array([np.nan, 0.9, 0.95, 0.95])) == (3.0, 0.95)
    assert plots._best_epoch(epoch, np.full(4, np.nan)) is None


# ----------------------------------------------------------------- confusion matrix


def test_confusion_matrix_counts_by_hand(tmp_path):
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 2, 0, 2]
    expected = np.array([
        [1, 1, 0],  # true 0: one right, one called 1
        [0, 2, 1],  # true 1: two right, one called 2
        [1, 0, 3],  # true 2: three right, one called 0
    ])
    cm = plots.plot_confusion_matrix(y_true, y_pred, ["a", "b", "c"], tmp_path / "cm.png", title="Toy")
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype.kind == "i"
    assert_png(tmp_path / "cm.png")


def test_confusion_matrix_mnist_sized(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 10_000)
    y_pred = np.where(rng.random(10_000) < 0.97, y_true, rng.integers(0, 10, 10_000))
    cm = plots.plot_confusion_matrix(y_true, y_pred, CLASSES, tmp_path / "cm.png")
    assert cm.shape == (10, 10) and cm.sum() == 10_000
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(y_true, minlength=10))
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(y_pred, minlength=10))
    assert np.trace(cm) == np.sum(y_true == y_pred)
    assert_png(tmp_path / "cm.png", min_width=500, min_height=500)


def test_confusion_matrix_rejects_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        plots.plot_confusion_matrix([0, 3], [0, 1], ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels"):
        plots.plot_confusion_matrix([0, 1], [0], ["a", "b"], tmp_path / "x.png")


# ----------------------------------------------------------------- misclassified


@pytest.mark.parametrize("layout", ["nhw", "n1hw", "flat"])
def test_misclassified_count_and_png(tmp_path, layout):
    rng = np.random.default_rng(1)
    n = 200
    images = rng.random((n, 28, 28)).astype(np.float32)
    images = {"nhw": images, "n1hw": images[:, None], "flat": images.reshape(n, -1)}[layout]
    y_true = rng.integers(0, 10, n)
    y_pred = y_true.copy()
    wrong = rng.choice(n, 50, replace=False)
    y_pred[wrong] = (y_true[wrong] + 1) % 10
    probs = rng.dirichlet(np.ones(10), n)

    count = plots.plot_misclassified(images, y_true, y_pred, probs, CLASSES, tmp_path / "m.png")
    assert count == 50  # all of them, although only 36 are drawn
    assert_png(tmp_path / "m.png", min_width=500, min_height=500)


def test_misclassified_without_probs_and_few_errors(tmp_path):
    images = np.zeros((5, 28, 28))
    count = plots.plot_misclassified(images, [1, 2, 3, 4, 5], [1, 2, 0, 4, 0], None, CLASSES,
                                     tmp_path / "m.png", max_images=1)
    assert count == 2
    assert_png(tmp_path / "m.png", min_width=100, min_height=100)


def test_misclassified_none(tmp_path):
    labels = np.arange(10)
    count = plots.plot_misclassified(np.zeros((10, 28, 28)), labels, labels, None, CLASSES,
                                     tmp_path / "m.png")
    assert count == 0
    assert_png(tmp_path / "m.png", min_width=200, min_height=100)


def test_error_label_format():
    probs = np.array([[0.05, 0.93, 0.02]])
    label = plots._error_label(0, np.array([2]), np.array([1]), probs, ["zero", "one", "two"])
    assert label == "true two / pred one (0.93)"
