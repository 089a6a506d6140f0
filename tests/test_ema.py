"""The moving average of the weights (train.ema)."""

import json

import numpy as np
import pytest

from nnexp.ema import WeightEMA
from nnexp.nn.model import build_model


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
