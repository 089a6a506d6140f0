"""The moving average of the weights (train.ema)."""

import csv
import json

import numpy as np
import pytest

import nnexp.train as train_module
from nnexp import checkpoint
from nnexp.config import load_config
from nnexp.ema import WeightEMA
from nnexp.nn.model import build_model, load_weights


def small_model():
    return build_model([{"type": "flatten"}, {"type": "dense", "units": 3}, {"type": "batchnorm"}],
                       input_shape=(1, 2, 2), rng=np.random.default_rng(0), dtype=np.float64)


def test_update_follows_the_formula_with_its_warm_up():
    model = small_model()
    ema = WeightEMA(model, decay=0.9)
    W = dict((n, p) for n, p, _ in model.parameters())["1.W"]
    start = W.copy()
    W += 1.0                      # one "step"
    ema.update()                  # t = 1: d = min(0.9, 2 / 11)
    d1 = 2 / 11
    expected = d1 * start + (1 - d1) * W
    np.testing.assert_allclose(ema.shadow["1.W"], expected, rtol=0, atol=1e-15)
    for _ in range(100):
        ema.update()              # later d = 0.9: the average converges to the constant weights
    np.testing.assert_allclose(ema.shadow["1.W"], W, atol=1e-4)
    assert set(ema.shadow) >= {"2.running_mean", "2.running_var"}  # batch-norm statistics are averaged too


def test_applied_swaps_the_average_in_and_back_out():
    model = small_model()
    ema = WeightEMA(model, decay=0.5)
    live = {n: p for n, p, _ in model.parameters()}
    own = live["1.W"].copy()
    ema.shadow["1.W"][...] = 7.0
    with ema.applied():
        assert (live["1.W"] == 7.0).all()
    assert np.array_equal(live["1.W"], own)


def test_state_round_trip_and_mismatch():
    model = small_model()
    ema = WeightEMA(model, decay=0.99)
    ema.update()
    other = WeightEMA(small_model(), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.t == 1 and all(np.array_equal(other.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(ValueError, match="expected"):
        other.load_state_dict({"t": np.array(1)})


def test_a_run_with_ema_tests_and_saves_the_average(nnexp, tiny_config, store):
    """The same training (identical training metrics), but what is tested
    and saved is the average, so the test figures differ."""
    assert nnexp("run", tiny_config, "-q", "tracking.plots=false", "train.ema=0.999")[0] == 0
    assert nnexp("run", tiny_config, "-q", "tracking.plots=false")[0] == 0
    with_ema, plain = sorted((json.loads((p / "summary.json").read_text()) for p in store.iterdir()
                              if (p / "summary.json").exists()), key=lambda s: s["start_time"])
    assert with_ema["test_accuracy"] != plain["test_accuracy"]
    assert with_ema["final_train_loss"] == plain["final_train_loss"]  # training itself is unchanged


def test_ema_must_be_a_decay(nnexp, tiny_config):
    code, _, err = nnexp("run", tiny_config, "train.ema=1.5")
    assert code == 2 and "train.ema" in err and "(0, 1)" in err


def test_validation_early_stopping_and_restore_best_use_the_average(nnexp, tiny_config, store, monkeypatch):
    """With train.ema each epoch's validation figures are those of the
    averaged weights, early stopping and the best epoch follow them, and
    restore_best ends with the average of the best epoch, not the raw weights.
    Each epoch's checkpoint holds both, so both are evaluated here again."""
    saved, real_save = [], checkpoint.save

    def keep(path, ckpt):
        saved.append(ckpt)
        return real_save(path, ckpt)
    monkeypatch.setattr(checkpoint, "save", keep)
    patience = 1
    code, _, err = nnexp("run", tiny_config, "-q", "tracking.plots=false", "train.ema=0.9", "train.epochs=8",
                         "optimizer.lr=0.005", "data.train_subset=500", "data.val_size=300", "data.batch_size=32",
                         "train.restore_best=true", f"train.early_stopping={{metric: val_accuracy, patience: {patience}}}")
    assert code == 0, err
    [folder] = [p for p in store.iterdir() if (p / "summary.json").exists()]
    cfg = load_config(folder / "config.yaml")
    data = train_module.load_data(cfg, log=lambda *a: None)
    model, _, _ = train_module.build(cfg, data.x_train.shape[1:], train_module.make_rngs(0))

    def scores(state):
        model.load_state_dict(state)
        return train_module.evaluate(model, data.x_val, data.y_val)[:2]

    raw = [scores(c.model) for c in saved]
    averaged = [scores({k: v for k, v in c.ema.items() if k != "t"}) for c in saved]
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [c.epoch for c in saved] == list(range(1, len(saved) + 1))
    for row, (loss, accuracy) in zip(rows, averaged):
        assert float(row["val_loss"]) == pytest.approx(loss, rel=1e-9) and float(row["val_accuracy"]) == accuracy
    assert raw != averaged

    def stop_and_best(values):
        """(epoch early stopping ends after, or None; best epoch) by the rule, over these epochs."""
        best, best_epoch, bad = -1.0, 0, 0
        for epoch, value in enumerate(values, start=1):
            best, best_epoch, bad = (value, epoch, 0) if value > best else (best, best_epoch, bad + 1)
            if bad >= patience:
                return epoch, best_epoch
        return None, best_epoch
    stopped, best_epoch = stop_and_best([a for _, a in averaged])
    epochs_trained = len(saved)
    assert stopped == epochs_trained < 8                                   # stopped early, as the average said
    assert stop_and_best([a for _, a in raw]) != (stopped, best_epoch)     # the raw weights would not have
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best_epoch"] == best_epoch and summary["best_val_value"] == averaged[best_epoch - 1][1]
    load_weights(folder / "model.npz", model)
    kept = model.state_dict()
    best_average = saved[best_epoch - 1].ema
    assert all(np.array_equal(kept[k], best_average[k]) for k in kept)
    assert not all(np.array_equal(kept[k], saved[best_epoch - 1].model[k]) for k in kept)
