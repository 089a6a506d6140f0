"""Tests for nnexp.compare.plots: which comparison plots appear, and that odd data never crashes."""

from __future__ import annotations

import itertools
import logging

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from nnexp.charts import comparison
from nnexp.compare import layout
from nnexp.compare.layout import running_best, short_names, use_log_axis
from nnexp.compare.plots import comparison_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LR = "param.optimizer.lr"
LAYERS = "param.model.layers"
BATCH = "param.data.batch_size"
SEED = "param.train.seed"
ACC = "metric.val_accuracy"
SMALL = "flatten | dense(64) | relu | dense(10)"
BIG = "flatten | dense(512) | relu | dropout(0.2) | dense(256) | relu | dropout(0.2) | dense(10)"


def synthetic_runs(grid: dict[str, list], seeds=(0, 1, 2), epochs: int = 4, rng: int = 0):
    """A grid sweep over `grid` (param column -> values) repeated over seeds.

    Returns (runs, curves) shaped like the pandas view of runs and the
    run id -> metrics.csv mapping. Accuracy peaks at lr 1e-3 and grows with
    the bigger layers, so there is something to compare.
    """
    rng = np.random.default_rng(rng)
    rows, curves = [], {}
    for trial, (values, seed) in enumerate(itertools.product(itertools.product(*grid.values()), seeds)):
        params = dict(zip(grid, values))
        lr = params.get(LR, 1e-3)
        quality = (0.95 - 0.03 * (np.log10(lr) + 3) ** 2 + (0.01 if params.get(LAYERS) == BIG else 0.0)
                   + rng.normal(0, 0.004))
        epoch = np.arange(1, epochs + 1)
        val_acc = quality - 0.25 * np.exp(-epoch)
        val_loss = 1.2 * (1 - val_acc) + rng.normal(0, 0.005, epochs)
        run_id = f"20260101-000000-sweep-{trial:04d}"
        curves[run_id] = pd.DataFrame({
            "epoch": epoch, "train_loss": val_loss * 0.9, "train_accuracy": val_acc + 0.01,
            "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "seconds": 1.5})
        rows.append({"id": run_id, "name": f"sweep-{trial}", "status": "pruned" if trial % 5 == 4 else "completed",
                     "trial": trial, SEED: seed, **params, ACC: val_acc[-1], "metric.val_loss": val_loss[-1]})
    return pd.DataFrame(rows), curves


def names(written) -> list[str]:
    return [path.name for _, path in written]


def assert_png(path) -> None:
    """A real, non-blank PNG of a sensible size."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    assert 300 <= pixels.shape[1] <= 4000 and 150 <= pixels.shape[0] <= 4000
    assert np.ptp(pixels) > 0


@pytest.fixture(autouse=True)
def no_figures_left_open():
    yield
    assert plt.get_fignums() == []


@pytest.fixture
def no_skipped_plots(caplog):
    """Fail if a plot was skipped because drawing raised (it would hide a bug)."""
    caplog.set_level(logging.WARNING, logger="nnexp.compare.plots")
    yield
    assert [r.getMessage() for r in caplog.records if r.name == "nnexp.compare.plots"] == []


# ----------------------------------------------------------------- log axis and names


@pytest.mark.parametrize("values, expected", [
    ([1e-4, 1e-3, 1e-2], True),
    ([1e-4, 1e-3], True),  # exactly a decade
    ([5e-4, 8e-3], True),  # 16x
    ([32, 64, 128, 256], False),  # 8x
    ([1.0, 9.0], False),
    ([0.0, 1.0, 1000.0], False),  # zero cannot go on a log axis
    ([-1.0, 100.0], False),
    ([np.nan, 1e-5, 1e-1, np.inf], True),  # missing and infinite ignored
    ([1e-3], False),
    ([], False),
    (["0.001", "0.1"], False),  # text is a category
    ([True, False], False),
    ([1e-5, "auto", 1e-1], False),  # mixed types are categories
])
def test_use_log_axis(values, expected):
    assert use_log_axis(values) is expected
    assert use_log_axis(pd.Series(values, dtype=object)) is expected


def test_short_names_use_the_last_part_unless_it_collides():
    got = short_names([LR, LAYERS, "param.optimizer.name", "param.data.name"])
    assert got == {LR: "lr", LAYERS: "layers", "param.optimizer.name": "optimizer.name",
                   "param.data.name": "data.name"}


# ----------------------------------------------------------------- which plots appear


def test_one_param_gives_curves_and_metric_vs_param_only(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-3, 1e-2]})
    written = comparison_plots(runs, curves, [LR], ACC, "maximize", tmp_path)
    assert names(written) == ["learning_curves.png", "metric_vs_optimizer.lr.png"]
    assert [title for title, _ in written] == ["Learning curves", "val_accuracy vs lr"]
    for _, path in written:
        assert_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names(written))


def test_three_params_give_parallel_coordinates_and_no_heatmap(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-2], LAYERS: [SMALL, BIG], BATCH: [32, 128]}, seeds=(0, 1))
    written = comparison_plots(runs, curves, [LR, LAYERS, BATCH], "metric.val_loss", "minimize", tmp_path)
    assert "parallel_coordinates.png" in names(written)
    assert "heatmap.png" not in names(written)
    assert [n for n in names(written) if n.startswith("metric_vs_")] == [
        "metric_vs_optimizer.lr.png", "metric_vs_model.layers.png", "metric_vs_data.batch_size.png"]


def test_two_params_add_a_heatmap_and_sweep_plots_only_with_sweep_true(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-3, 1e-2], LAYERS: [SMALL, BIG]})
    plain = comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", tmp_path / "plain")
    assert names(plain) == ["learning_curves.png", "metric_vs_optimizer.lr.png",
                            "metric_vs_model.layers.png", "heatmap.png"]  # no parallel coordinates
    sweep = comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", tmp_path / "sweep", sweep=True)
    assert names(sweep) == names(plain) + ["best_so_far.png", "importance.png"]
    assert [title for title, _ in sweep][-2:] == ["Best so far", "Parameter importance"]
    for _, path in sweep:
        assert_png(path)


def test_heatmap_skipped_when_a_param_has_too_many_values(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: list(np.geomspace(1e-5, 1e-1, 21)), LAYERS: [SMALL, BIG]}, seeds=(0,))
    written = comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", tmp_path)
    assert "heatmap.png" not in names(written)
    assert "metric_vs_optimizer.lr.png" in names(written)


def test_a_plot_no_longer_drawn_is_removed_from_the_folder(tmp_path):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-2], LAYERS: [SMALL, BIG]}, seeds=(0,))
    comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", tmp_path)
    assert (tmp_path / "heatmap.png").exists()
    runs[BATCH] = np.tile([32, 64], len(runs) // 2)
    written = comparison_plots(runs, curves, [LR, LAYERS, BATCH], ACC, "maximize", tmp_path)
    assert not (tmp_path / "heatmap.png").exists()
    assert all(path.exists() for _, path in written)


def test_a_plot_that_fails_to_draw_is_skipped_and_logged(tmp_path, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(comparison, "heatmap", broken)
    runs, curves = synthetic_runs({LR: [1e-4, 1e-2], LAYERS: [SMALL, BIG]}, seeds=(0,))
    with caplog.at_level(logging.WARNING, logger="nnexp.compare.plots"):
        written = comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", tmp_path)
    assert "heatmap.png" not in names(written)
    assert "learning_curves.png" in names(written)
    assert any("heatmap.png" in r.getMessage() and "boom" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------- odd data


def test_single_run(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-3]}, seeds=(0,), epochs=1)
    written = comparison_plots(runs, curves, [], ACC, "maximize", tmp_path, sweep=True)
    assert names(written) == ["learning_curves.png", "best_so_far.png"]
    for _, path in written:
        assert_png(path)


def test_no_runs_gives_no_plots(tmp_path):
    runs, _ = synthetic_runs({LR: [1e-3]}, seeds=(0,))
    assert comparison_plots(runs.iloc[:0], {}, [LR], ACC, "maximize", tmp_path, sweep=True) == []


def test_nan_metrics_missing_curves_and_mixed_types(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-3, 1e-2], BATCH: [32, 64]}, seeds=(0, 1))
    runs["param.optimizer.momentum"] = [0.9, "nesterov", None, [0.9, 0.99]] * (len(runs) // 4)
    runs.loc[::3, ACC] = np.nan  # failed runs have no metric
    runs.loc[1, BATCH] = np.nan  # a run that lacks a param
    runs.loc[2, "status"] = "failed"
    del curves[runs.loc[0, "id"]]  # died before its first epoch
    curves[runs.loc[4, "id"]] = curves[runs.loc[4, "id"]].drop(columns=["val_loss", "val_accuracy"])
    varied = [LR, BATCH, "param.optimizer.momentum"]
    written = comparison_plots(runs, curves, varied, ACC, "maximize", tmp_path, sweep=True)
    assert names(written) == ["learning_curves.png", "metric_vs_optimizer.lr.png", "metric_vs_data.batch_size.png",
                              "metric_vs_optimizer.momentum.png", "parallel_coordinates.png",
                              "best_so_far.png", "importance.png"]
    for _, path in written:
        assert_png(path)


def test_all_metrics_missing_skips_metric_plots_but_keeps_curves(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-2], LAYERS: [SMALL, BIG]}, seeds=(0,))
    runs[ACC] = np.nan
    written = comparison_plots(runs, curves, [LR, LAYERS], ACC, "maximize", tmp_path, sweep=True)
    assert names(written) == ["learning_curves.png"]


def test_no_curves_and_no_validation_columns(tmp_path, no_skipped_plots):
    runs, curves = synthetic_runs({LR: [1e-4, 1e-2]}, seeds=(0,))
    assert "learning_curves.png" not in names(comparison_plots(runs, {}, [LR], ACC, "maximize", tmp_path))
    train_only = {k: v[["epoch", "train_loss", "train_accuracy"]] for k, v in curves.items()}
    written = comparison_plots(runs, train_only, [LR], ACC, "maximize", tmp_path)
    assert "learning_curves.png" in names(written)  # falls back to the training curves


@pytest.mark.parametrize("bad, message", [
    (dict(goal="max"), "goal must be one of"),
    (dict(metric="metric.nope"), "metric 'metric.nope'"),
    (dict(varied=["param.nope"]), "param.nope"),
])
def test_bad_arguments_name_the_bad_value(tmp_path, bad, message):
    runs, curves = synthetic_runs({LR: [1e-3]}, seeds=(0,))
    args = dict(runs=runs, curves=curves, varied=[LR], metric=ACC, goal="maximize", out_dir=tmp_path) | bad
    with pytest.raises(ValueError, match=message):
        comparison_plots(**args)


def test_many_runs_give_every_plot(tmp_path, no_skipped_plots):
    """A 1,000-run random search: every plot, labelled best few (how fast: a benchmark's question)."""
    rng = np.random.default_rng(1)
    n = 1000
    lr = 10 ** rng.uniform(-5, 0, n)
    runs = pd.DataFrame({
        "id": [f"r{i}" for i in range(n)], "status": "completed", "trial": np.arange(n), SEED: 0,
        LR: lr, "param.optimizer.weight_decay": 10 ** rng.uniform(-6, -1, n),
        BATCH: rng.choice([32, 64, 128], n), "param.optimizer.name": rng.choice(["sgd", "adam"], n),
        ACC: 0.95 - 0.02 * (np.log10(lr) + 3) ** 2 + rng.normal(0, 0.01, n)})
    epoch = np.arange(1, 16)
    curves = {rid: pd.DataFrame({"epoch": epoch, "val_accuracy": acc - 0.2 * np.exp(-epoch / 3),
                                 "val_loss": 1 - acc + 0.2 * np.exp(-epoch / 3)})
              for rid, acc in zip(runs["id"], runs[ACC])}
    varied = [LR, "param.optimizer.weight_decay", BATCH, "param.optimizer.name"]
    written = comparison_plots(runs, curves, varied, ACC, "maximize", tmp_path, sweep=True)
    assert len(written) == 1 + len(varied) + 1 + 2  # curves, one per param, parallel, sweep pair


# ----------------------------------------------------------------- helpers


def test_running_best_ignores_pruned_and_missing_trials():
    values = [np.nan, 0.5, 0.9, 0.4, 0.95, 0.7]
    pruned = [False, False, False, False, True, False]
    np.testing.assert_array_equal(running_best(values, pruned, "maximize"), [np.nan, 0.5, 0.9, 0.9, 0.9, 0.9])
    np.testing.assert_array_equal(running_best([3, 2, np.nan, 1], [False] * 4, "minimize"), [3, 2, 2, 1])


def test_mean_band_matches_summarize_per_epoch():
    from nnexp.compare.stats import summarize

    pieces = [(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.7, 0.8])),
              (np.array([1.0, 2.0]), np.array([0.6, 0.6])),
              (np.array([1.0, 2.0, 3.0]), np.array([0.4, 0.9, 0.85]))]
    epoch, mean, low, high, n = layout.mean_band(pieces)
    np.testing.assert_array_equal(epoch, [1, 2, 3])
    assert n == 3
    for i, at in enumerate([[0.5, 0.6, 0.4], [0.7, 0.6, 0.9], [0.8, 0.85]]):
        expected = summarize(at)
        assert mean[i] == pytest.approx(expected["mean"])
        assert low[i] == pytest.approx(expected["ci_low"])
        assert high[i] == pytest.approx(expected["ci_high"])
