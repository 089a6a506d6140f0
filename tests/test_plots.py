"""Tests for nnexp.tracking.plots: PNGs written into a run folder."""

from __future__ import annotations

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from nnexp import feature_maps
from nnexp.checkpoint import TrainState
from nnexp.charts import run as run_charts
from nnexp.tracking import plots
from nnexp.tracking.records import read_metric_rows

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


def metrics_rows(epochs: int, with_val: bool = True) -> list[dict]:
    """metrics.csv's rows as the trainer logs them (NaN in val_* without a validation set)."""
    epoch = np.arange(1, epochs + 1)
    train_loss = 0.9 * np.exp(-epoch / 3) + 0.05
    val_loss = train_loss + 0.03 + 0.004 * epoch
    return [{"epoch": int(e), "train_loss": float(tl), "train_accuracy": float(1 - tl / 2),
             "val_loss": float(vl) if with_val else np.nan, "val_accuracy": float(1 - vl / 2) if with_val else np.nan,
             "lr": 0.1, "seconds": 2.5} for e, tl, vl in zip(epoch, train_loss, val_loss)]


# ----------------------------------------------------------------- learning curves


@pytest.mark.parametrize("epochs", [1, 2, 12])
@pytest.mark.parametrize("with_val", [True, False])
def test_learning_curves_png(tmp_path, epochs, with_val):
    path = tmp_path / "plots" / "learning_curves.png"  # parent is created
    plots.plot_learning_curves(metrics_rows(epochs, with_val), path)
    assert_png(path, min_width=800)


def test_learning_curves_from_csv_round_trip(tmp_path):
    # metrics.csv without a validation set has empty val_* cells -> NaN on read.
    folder = tmp_path / "run"
    folder.mkdir()
    pd.DataFrame(metrics_rows(3, with_val=False)).to_csv(folder / "metrics.csv", index=False)
    plots.plot_learning_curves(read_metric_rows(folder, columns=None), tmp_path / "lc.png")
    assert_png(tmp_path / "lc.png")


def test_learning_curves_without_val_columns_and_empty(tmp_path):
    rows = [{k: v for k, v in row.items() if not k.startswith("val_")} for row in metrics_rows(4)]
    plots.plot_learning_curves(rows, tmp_path / "a.png")
    assert_png(tmp_path / "a.png")
    plots.plot_learning_curves([], tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")


def test_learning_curves_missing_columns(tmp_path):
    with pytest.raises(ValueError, match="train_loss"):
        plots.plot_learning_curves([{"epoch": 1}], tmp_path / "x.png")


def test_best_epoch_is_first_maximum_and_ignores_nan():
    rows = metrics_rows(4)
    for row, acc in zip(rows, [np.nan, 0.9, 0.95, 0.95]):
        row["val_accuracy"] = acc
    chart = run_charts.learning_curves(rows)
    [best] = [m for panel in chart.panels for m in panel.marks if m.marker == "star"]
    assert (list(best.x), list(best.y)) == ([3.0], [0.95])
    assert all(line.x == 3.0 for panel in chart.panels for line in panel.lines)
    assert "best validation accuracy 95.00% at epoch 3" in chart.subtitle
    for row in rows:
        row["val_accuracy"] = np.nan
    chart = run_charts.learning_curves(rows)
    assert not any(m.marker == "star" for panel in chart.panels for m in panel.marks)


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


# ----------------------------------------------------------------- conv filters


def test_filter_images_scale_each_kernel_symmetrically():
    w = np.zeros((3, 1, 2, 2))
    w[0, 0] = [[0.5, -0.25], [0, 0.1]]
    w[1, 0] = [[-2.0, 1.0], [0, 0]]  # w[2] stays all zero
    images, scales = plots.filter_images(w)
    np.testing.assert_allclose(scales, [0.5, 2.0, 0.0])
    np.testing.assert_allclose(images[0], [[1, -0.5], [0, 0.2]])
    np.testing.assert_allclose(images[1], [[-1, 0.5], [0, 0]])  # sign kept: -1 is the peak
    np.testing.assert_array_equal(images[2], 0)                  # no division by zero
    shared, shared_scales = plots.filter_images(w, per_filter=False)
    np.testing.assert_allclose(shared_scales, 2.0)
    np.testing.assert_allclose(shared[0], w[0, 0] / 2.0)


def test_filter_images_average_the_input_channels():
    w = np.stack([np.full((2, 3, 3), 1.0), np.full((2, 3, 3), -3.0)], axis=1)  # (2 out, 2 in, 3, 3)
    w[0, 1] = 3.0   # filter 0: channels 1 and 3 -> mean 2
    images, scales = plots.filter_images(w)
    assert images.shape == (2, 3, 3)
    np.testing.assert_allclose(scales, [2.0, 1.0])  # filter 1: mean of 1 and -3 = -1


@pytest.mark.parametrize("shape, per_filter", [
    ((8, 1, 3, 3), True),     # a typical first layer: 8 filters on a grey image
    ((16, 3, 5, 5), True),    # several input channels: their mean is drawn
    ((128, 1, 3, 3), False),  # the upper end of what the grid is for, one scale
    ((5, 3, 3), True),        # kernels without the channel axis
])
def test_conv_filters_png(tmp_path, shape, per_filter):
    weights = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    drawn = plots.plot_conv_filters(weights, tmp_path / "plots" / "conv_filters.png", per_filter=per_filter)
    assert drawn.shape == (shape[0],) + shape[-2:]
    assert np.abs(drawn).max() == pytest.approx(1.0)
    assert_png(tmp_path / "plots" / "conv_filters.png", min_width=400, min_height=200)


def test_tile_puts_each_kernel_below_its_label_gap():
    images = np.arange(5 * 3 * 3, dtype=float).reshape(5, 3, 3)
    mosaic, (pitch_h, pitch_w), (gap_h, gap_w) = plots._tile(images, ncols=3)
    assert (gap_h, gap_w) == (2, 1) and (pitch_h, pitch_w) == (5, 4)
    assert mosaic.shape == (2 * 5, 3 * 4 - 1)
    np.testing.assert_array_equal(mosaic[2:5, 0:3], images[0])
    np.testing.assert_array_equal(mosaic[7:10, 4:7], images[4])  # row 1, column 1
    assert np.isnan(mosaic[7:10, 8:11]).all()                    # the unused sixth cell
    assert np.isfinite(mosaic).sum() == images.size


def test_conv_filters_rejects_other_shapes(tmp_path):
    with pytest.raises(ValueError, match="expected conv weights"):
        plots.plot_conv_filters(np.zeros((8, 9)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------- feature maps

TINY_CNN = [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},   # 0: 4x28x28
    {"type": "batchnorm"},                                                   # 1
    {"type": "relu"},                                                        # 2: block 1 ends
    {"type": "maxpool2d", "kernel_size": 2},                                 # 3: 4x14x14
    {"type": "conv2d", "out_channels": 20, "kernel_size": 3},                # 4: 20x12x12
    {"type": "relu"},                                                        # 5: block 2 ends
    {"type": "dense", "units": 10},                                          # 6 flatten, 7 dense
]


@pytest.fixture
def tiny_cnn():
    from nnexp.nn.model import build_model

    model = build_model(TINY_CNN, input_shape=(1, 28, 28), rng=np.random.default_rng(0))
    # Non-trivial batch-norm statistics, so that evaluation mode visibly uses them.
    bn = model.layers[1]
    bn.buffers["running_mean"][...] = [0.1, -0.2, 0.0, 0.3]
    bn.buffers["running_var"][...] = [0.5, 2.0, 1.0, 1.5]
    return model


def test_layer_activations_are_the_models_forward_step_by_step(tiny_cnn):
    x = np.random.default_rng(1).random((2, 1, 28, 28)).astype(np.float32)
    outs = feature_maps.layer_activations(tiny_cnn, x)
    assert [o.shape for o in outs] == [
        (2, 4, 28, 28), (2, 4, 28, 28), (2, 4, 28, 28), (2, 4, 14, 14),
        (2, 20, 12, 12), (2, 20, 12, 12), (2, 2880), (2, 10)]
    # the model's own evaluation folds batch-norm into the conv: equal up to rounding
    np.testing.assert_allclose(outs[-1], tiny_cnn.forward(x, training=False), rtol=1e-5, atol=1e-6)

    # The first conv's output, recomputed independently as a sum over the 3x3 offsets.
    conv = tiny_cnn.layers[0]
    padded = np.pad(x[:, 0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    W, b = conv.params["W"].astype(np.float64), conv.params["b"].astype(np.float64)
    expected = np.zeros((2, 4, 28, 28)) + b[:, None, None]
    for i in range(3):
        for j in range(3):
            expected += W[None, :, 0, i, j, None, None] * padded[:, None, i:i + 28, j:j + 28]
    np.testing.assert_allclose(outs[0], expected, rtol=1e-4, atol=1e-5)
    # Evaluation-mode batch norm (running statistics), then the ReLU.
    bn = tiny_cnn.layers[1]
    mean, var = bn.buffers["running_mean"], bn.buffers["running_var"]
    normed = (outs[0] - mean[:, None, None]) / np.sqrt(var[:, None, None] + bn.eps)
    np.testing.assert_allclose(outs[1], normed * bn.params["gamma"][:, None, None]
                               + bn.params["beta"][:, None, None], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(outs[2], np.maximum(outs[1], 0))


def test_layer_activations_keep_their_own_copies(tiny_cnn):
    x = np.random.default_rng(2).random((1, 1, 28, 28)).astype(np.float32)
    first = feature_maps.layer_activations(tiny_cnn, x)
    expected = [a.copy() for a in first]
    feature_maps.layer_activations(tiny_cnn, np.zeros_like(x))  # reuses the layers' buffers
    for a, b in zip(first, expected):
        np.testing.assert_array_equal(a, b)


def test_conv_blocks_end_after_batchnorm_and_activation(tiny_cnn):
    assert feature_maps.conv_blocks(tiny_cnn.layers) == [(0, 2), (4, 5)]


def test_strongest_channels_in_channel_order():
    maps = np.zeros((5, 2, 2))
    maps[[1, 3, 4]] = np.array([3.0, -5.0, 1.0])[:, None, None]  # by |mean|: 3, 1, 4
    np.testing.assert_array_equal(plots.strongest_channels(maps, 2), [1, 3])
    np.testing.assert_array_equal(plots.strongest_channels(maps, 10), [0, 1, 2, 3, 4])


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (28, 28)])
def test_feature_maps_png(tmp_path, tiny_cnn, image_shape):
    image = np.random.default_rng(3).random(image_shape).astype(np.float32)
    seen = feature_maps.feature_maps(tiny_cnn, image)
    assert seen.image.shape == (1, 28, 28) and seen.probs.shape == (10,)
    np.testing.assert_allclose(seen.probs.sum(), 1.0)
    rows = plots.plot_feature_maps(seen.image, seen.rows, seen.probs, 7, tmp_path / "plots" / "feature_maps.png",
                                   classes=CLASSES, title="Feature maps of test image 0")
    assert [shape for _, shape in rows] == [(4, 28, 28), (20, 12, 12)]
    assert rows[0][0] == "layers 0-2: Conv2D > BatchNorm > ReLU"
    assert rows[1][0] == "layers 4-5: Conv2D > ReLU"
    assert_png(tmp_path / "plots" / "feature_maps.png", min_width=800, min_height=300)


def test_feature_maps_need_a_conv_layer(tmp_path):
    from nnexp.nn.model import build_model

    mlp = build_model([{"type": "flatten"}, {"type": "dense", "units": 10}], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="no Conv2D"):
        feature_maps.feature_maps(mlp, np.zeros((1, 28, 28)))
    assert feature_maps.first_conv_weights(mlp) is None
    with pytest.raises(ValueError, match="no feature maps"):
        plots.plot_feature_maps(np.zeros((1, 28, 28)), [], None, 0, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------- in a run folder


def finished_run(tmp_path):
    """A run folder with one epoch logged and the training state, as make_plots finds them at the end of training."""
    from types import SimpleNamespace

    from nnexp.tracking import RunStore

    run = RunStore(tmp_path / "runs").create("p")
    state = TrainState("d", 1, rows=[dict(epoch=1, train_loss=0.5, train_accuracy=0.8, val_loss=0.6,
                                          val_accuracy=0.75, lr=0.001, seconds=1.0)])
    run.log_epoch(state.rows[0])
    rng = np.random.default_rng(4)
    data = SimpleNamespace(x_test=rng.random((30, 1, 28, 28)).astype(np.float32),
                           y_test=rng.integers(0, 10, 30), classes=CLASSES)
    probs = rng.dirichlet(np.ones(10), 30)
    return run, data, probs, state


def test_make_plots_adds_the_conv_plots_for_a_conv_net_only(tmp_path, tiny_cnn):
    from nnexp.nn.model import build_model
    from nnexp.train import make_plots

    run, data, probs, state = finished_run(tmp_path)
    mlp = build_model([{"type": "dense", "units": 10}], rng=np.random.default_rng(0))
    make_plots(run, data, probs, state, mlp)
    base = {"learning_curves.png", "confusion_matrix.png", "misclassified.png"}
    assert {p.name for p in run.plots_dir.iterdir()} == base

    make_plots(run, data, probs, state, tiny_cnn, image_index=29)
    assert {p.name for p in run.plots_dir.iterdir()} == base | {"conv_filters.png", "feature_maps.png"}
    assert_png(run.plots_dir / "conv_filters.png")
    assert_png(run.plots_dir / "feature_maps.png")


def test_a_failing_conv_plot_is_recorded_not_raised(tmp_path, tiny_cnn):
    import json

    from nnexp.train import make_plots

    run, data, probs, state = finished_run(tmp_path)
    messages = []
    make_plots(run, data, probs, state, tiny_cnn, image_index=30, log=messages.append)  # 30 test images
    names = {p.name for p in run.plots_dir.iterdir()}
    assert "conv_filters.png" in names and "feature_maps.png" not in names
    errors = json.loads(run.summary_path.read_text())["plot_errors"]
    assert errors == {"feature_maps.png": "ValueError: tracking.feature_map_image is 30, "
                                          "but the test set has 30 images"}
    assert messages == ["warning: could not draw plots/feature_maps.png: " + errors["feature_maps.png"]]


CNN_LAYERS = ("model.layers=[{type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}, {type: relu}, "
              "{type: maxpool2d}, {type: dense, units: 10}]")


def test_cli_runs_write_the_conv_plots_for_a_cnn_only(nnexp, tiny_config, store):
    import json

    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=1", "tracking.name=mlp")
    assert code == 0, err
    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=1", "tracking.name=cnn", CNN_LAYERS,
                         "tracking.feature_map_image=3")
    assert code == 0, err
    runs = {json.loads((p / "summary.json").read_text())["name"]: p
            for p in store.iterdir() if (p / "summary.json").exists()}
    base = {"learning_curves.png", "confusion_matrix.png", "misclassified.png", "diagnostics.png"}
    assert {p.name for p in (runs["mlp"] / "plots").iterdir()} == base
    assert {p.name for p in (runs["cnn"] / "plots").iterdir()} == base | {"conv_filters.png", "feature_maps.png"}
    summary = json.loads((runs["cnn"] / "summary.json").read_text())
    assert summary["status"] == "completed" and "plot_errors" not in summary
    assert "feature_map_image: 3" in (runs["cnn"] / "config.yaml").read_text()
    assert_png(runs["cnn"] / "plots" / "feature_maps.png", min_width=500)


def test_feature_map_image_must_not_be_negative(nnexp, tiny_config):
    code, _, err = nnexp("run", tiny_config, "tracking.feature_map_image=-1")
    assert code == 2 and "'tracking.feature_map_image' must be >= 0" in err
