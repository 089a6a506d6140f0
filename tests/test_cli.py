"""End-to-end: `nnexp run` on real MNIST (small subsets) and the run commands."""

import csv
import json

import numpy as np
import pytest

from nnexp.data import load_dataset


def run_folders(store):
    """The run folders of a store (not the index file or the sweeps folder)."""
    return sorted(p for p in store.iterdir() if (p / "summary.json").exists())


def only_run(store):
    runs = run_folders(store)
    assert len(runs) == 1, runs
    return runs[0]


def test_run_writes_a_readable_run_folder(nnexp, tiny_config, store):
    code, out, err = nnexp("run", tiny_config, "--quiet")
    assert code == 0, err
    run = only_run(store)
    assert "test accuracy" in out and str(run) in out
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "metrics.csv", "diagnostics.csv", "summary.json", "model.npz", "plots"} <= names
    assert {p.name for p in (run / "plots").iterdir()} == {
        "learning_curves.png", "confusion_matrix.png", "misclassified.png", "diagnostics.png"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert 0.8 < summary["test_accuracy"] <= 1.0  # a fraction, not a percent
    assert summary["params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert summary["epochs_completed"] == 2 and summary["seed"] == 0
    assert summary["versions"]["numpy"] == np.__version__
    assert 20 < summary["peak_rss_mib"] < 4096  # this test process: NumPy, pandas, matplotlib, the data
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


def test_same_config_and_seed_give_identical_metrics(nnexp, tiny_config, store):
    for _ in range(2):
        assert nnexp("run", tiny_config, "-q", "tracking.plots=false")[0] == 0
    a, b = run_folders(store)

    def metrics(run):  # everything but the timing column
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((run / "metrics.csv").open())]

    assert metrics(a) == metrics(b)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert sa["test_accuracy"] == sb["test_accuracy"] and sa["test_loss"] == sb["test_loss"]
    wa, wb = np.load(a / "model.npz"), np.load(b / "model.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa.files)


def test_overrides_change_the_run(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=1", "tracking.name=short", "tracking.plots=false")
    assert code == 0, err
    summary = json.loads((only_run(store) / "summary.json").read_text())
    assert summary["name"] == "short" and summary["epochs_completed"] == 1


def test_invalid_config_exits_2_and_writes_nothing(nnexp, tiny_config, store):
    code, out, err = nnexp("run", tiny_config, "optimizer.lrr=0.1")
    assert code == 2
    assert "unknown key 'optimizer.lrr'" in err and "did you mean 'optimizer.lr'" in err
    assert "Traceback" not in err
    assert not store.exists()
    code, _, err = nnexp("run", tiny_config, "train.epochs=-1")
    assert code == 2 and "'train.epochs' must be > 0" in err


def test_divergence_marks_the_run_failed(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "optimizer.name=sgd", "optimizer.lr=1e30")
    assert code == 1 and "diverged at epoch 1, batch" in err
    summary = json.loads((only_run(store) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["reason"].startswith("diverged at epoch 1, batch")


def test_early_stopping_and_restore_best(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=30", "optimizer.lr=0.05",
                         "train.early_stopping={patience: 1}", "train.restore_best=true", "tracking.plots=false")
    assert code == 0, err
    summary = json.loads((only_run(store) / "summary.json").read_text())
    assert summary["epochs_completed"] < 30
    rows = list(csv.DictReader((only_run(store) / "metrics.csv").open()))
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert summary["best_epoch"] == int(best["epoch"])
    assert summary["final_val_accuracy"] == pytest.approx(float(best["val_accuracy"]), abs=1e-12)


def test_listing_show_evaluate(nnexp, tiny_config, store):
    assert nnexp("run", tiny_config, "-q", "tracking.plots=false")[0] == 0
    run = only_run(store)
    code, out, _ = nnexp("runs", "--store", store)
    assert code == 0 and run.name in out and "completed" in out
    code, out, _ = nnexp("runs", "--store", store, "--json")
    listed = json.loads(out)
    assert code == 0 and listed[0]["id"] == run.name and listed[0]["status"] == "completed"
    code, out, _ = nnexp("show", "tiny", "--store", store)
    assert code == 0 and "test_accuracy" in out and "model.npz" in out
    code, out, _ = nnexp("evaluate", run.name, "--store", store, "--json")
    result = json.loads(out)
    assert code == 0 and result["matches_recorded"] is True
    code, _, err = nnexp("show", "nope", "--store", store)
    assert code == 1 and "no run 'nope'" in err
    code, _, err = nnexp("show", "../etc", "--store", store)
    assert code == 1 and "not a valid run id" in err


def test_predict_classifies_test_digits_saved_as_png(nnexp, tiny_config, store, tmp_path):
    import matplotlib.pyplot as plt

    assert nnexp("run", tiny_config, "-q", "tracking.plots=false", "train.epochs=3")[0] == 0
    data = load_dataset("mnist", val_size=0, log=lambda m: None)
    paths = []
    for i in range(10):
        # dark-on-light and enlarged, as a user's scan would be
        img = np.kron(1.0 - data.x_test[i, 0], np.ones((5, 5)))
        path = tmp_path / f"digit{i}.png"
        plt.imsave(path, img, cmap="gray", vmin=0, vmax=1)
        paths.append(path)
    code, out, err = nnexp("predict", "tiny", *paths, "--store", store, "--json")
    assert code == 0, err
    results = json.loads(out)
    correct = sum(r["prediction"] == str(y) for r, y in zip(results, data.y_test[:10]))
    assert correct >= 8
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in results)


@pytest.mark.integration
def test_default_mlp_one_epoch_reaches_95_percent(nnexp, store):
    code, out, err = nnexp("run", "configs/mlp.yaml", "-q", "train.epochs=1", f"tracking.store={store}",
                           "tracking.plots=false")
    assert code == 0, err
    summary = json.loads((only_run(store) / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95


@pytest.mark.integration
def test_small_cnn_on_real_mnist_learns_and_draws_its_conv_plots(nnexp, store):
    # 5,000 images, one epoch: about 10 s on 2 cores; measured 88.3% test accuracy
    code, out, err = nnexp("run", "configs/cnn-small.yaml", "-q", "train.epochs=1", "data.train_subset=5000",
                           f"tracking.store={store}")
    assert code == 0, err
    run = only_run(store)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_accuracy"] >= 0.85
    assert "plot_errors" not in summary
    for name in ("learning_curves.png", "conv_filters.png", "feature_maps.png"):
        assert (run / "plots" / name).stat().st_size > 1000, name


def test_ctrl_c_leaves_the_run_marked_interrupted(nnexp, tiny_config, store, ctrl_c_at_epoch):
    ctrl_c_at_epoch(2)
    code, _, err = nnexp("run", tiny_config, "-q")
    assert code == 130 and "interrupted" in err
    run = only_run(store)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "Ctrl-C" in summary["reason"]
    assert summary["epochs_completed"] == 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header + the finished epoch


def test_a_crash_is_recorded_with_its_reason(nnexp, tiny_config, store, monkeypatch):
    import nnexp.train as train_module

    def broken(*args, **kwargs):
        raise MemoryError("out of memory in a test")

    monkeypatch.setattr(train_module, "train_one_epoch", broken)
    with pytest.raises(MemoryError):
        nnexp("run", tiny_config, "-q")
    run = only_run(store)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "MemoryError: out of memory in a test" == summary["reason"]
    assert "Traceback" in (run / "error.txt").read_text()


def test_augmented_training_is_deterministic_and_changes_the_run(nnexp, tiny_config, store):
    aug = "data.augment={rotate: 10, scale: 0.1, shift: 2, elastic_alpha: 8}"
    for extra in ([aug], [aug], []):
        assert nnexp("run", tiny_config, "-q", "tracking.plots=false", "train.epochs=1", *extra)[0] == 0
    a, b, plain = sorted((json.loads((r / "summary.json").read_text()) for r in run_folders(store)),
                         key=lambda s: s["start_time"])
    assert a["final_train_loss"] == b["final_train_loss"] and a["test_accuracy"] == b["test_accuracy"]
    assert a["final_train_loss"] != plain["final_train_loss"]


def test_a_quiet_scheduled_run_logs_each_epoch_s_rate_and_its_memory(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "tracking.plots=false", "train.epochs=3",
                         "schedule.name=cosine", "schedule.min_lr=0.0005")
    assert code == 0 and err == ""  # quiet: no progress bars either
    run = only_run(store)
    # each row's lr is the schedule's at the epoch's first step, over all 3 epochs' steps
    # (epoch e starts at step (e - 1) * steps_per_epoch of 3 * steps_per_epoch)
    expected = [0.0005 + (0.002 - 0.0005) / 2 * (1 + np.cos(np.pi * e / 3)) for e in range(3)]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-12)
    summary = json.loads((run / "summary.json").read_text())
    assert 20 < summary["rss_mib"] <= summary["peak_rss_mib"]  # MiB, like the peak
