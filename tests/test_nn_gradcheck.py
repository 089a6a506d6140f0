"""Backprop is checked against float64 central differences, layer by layer."""

import json

import numpy as np
import pytest

from nnexp.nn import (
    BatchNorm,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    build_model,
)
from nnexp.nn.gradcheck import (
    check_layer_gradients,
    check_loss_gradients,
    check_model_gradients,
)
from nnexp.nn.fast import build_fast_model
from nnexp.nn.fast.layers import FastDense, FastFlatten, FastReLU
from nnexp.nn.fast.layout import from_rows, per_sample_rows, times_mask

TOL = 1e-6


def away_from_zero(x, margin=0.1):
    """Push entries out of (-margin, margin) so a finite difference never straddles a kink."""
    return np.where(x >= 0, x + margin, x - margin)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def assert_small(errors):
    assert errors, "no gradients were checked"
    for name, err in errors.items():
        assert err < TOL, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("dense", [Dense, FastDense])
@pytest.mark.parametrize("init", ["he", "xavier", "small_normal", "uniform"])
def test_dense(rng, dense, init):
    layer = dense(5, 4, init=init, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(4)  # non-zero bias, so db is really tested
    errors = check_layer_gradients(layer, rng.standard_normal((3, 5)), rng)
    assert set(errors) == {"x", "W", "b"}
    assert_small(errors)


@pytest.mark.parametrize("layer", [ReLU(), FastReLU(), LeakyReLU(0.1), Sigmoid(), Tanh()],
                         ids=["relu", "fast_relu", "leaky_relu", "sigmoid", "tanh"])
def test_activations(rng, layer):
    x = away_from_zero(rng.standard_normal((4, 6)) * 2)
    errors = check_layer_gradients(layer, x, rng)
    assert set(errors) == {"x"}
    assert_small(errors)


@pytest.mark.parametrize("relu_cls", [ReLU, FastReLU])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_activations_backward_after_either_mode(rng, relu_cls, training):
    """The fast ReLU keeps x instead of its mask in evaluation mode (one pass
    less at inference); a backward after it still gets the right gradient."""
    x = away_from_zero(rng.standard_normal((4, 6)))
    assert_small(check_layer_gradients(relu_cls(), x, rng, training=training))
    relu, dout = relu_cls(), rng.standard_normal((4, 6))
    relu.forward(x, training=training)
    np.testing.assert_array_equal(relu.backward(dout), dout * (x > 0))


def test_sigmoid_is_stable_for_large_inputs():
    y = Sigmoid().forward(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=np.float32))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [[0, 0, 0.5, 1, 1]], atol=1e-7)


@pytest.mark.parametrize("flatten", [Flatten, FastFlatten])
def test_flatten(rng, flatten):
    errors = check_layer_gradients(flatten(), rng.standard_normal((2, 3, 4, 2)), rng)
    assert_small(errors)
    assert flatten().output_shape((1, 28, 28)) == (784,)


def test_dropout_with_fixed_mask(rng):
    layer = Dropout(0.4, rng=np.random.default_rng(0))

    def same_mask():  # reseed identically so every forward draws the same mask
        layer.rng = np.random.default_rng(7)

    x = rng.standard_normal((5, 8))
    errors = check_layer_gradients(layer, x, rng, before_forward=same_mask)
    assert_small(errors)
    # the mask really drops something and rescales the rest by 1/(1-p)
    same_mask()
    y = layer.forward(x)
    kept = y != 0
    assert 0 < kept.sum() < x.size
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)


def test_dropout_identity_in_eval_and_p0(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    d = Dropout(0.5, rng=rng)
    assert d.forward(x, training=False) is x
    assert d.backward(x) is x
    assert Dropout(0.0, rng=rng).forward(x, training=True) is x


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy(rng, smoothing):
    logits = rng.standard_normal((4, 5)) * 3
    y = np.array([0, 3, 4, 3])
    errors = check_loss_gradients(SoftmaxCrossEntropy(smoothing), logits, y)
    assert_small(errors)


@pytest.mark.parametrize("build", [build_model, build_fast_model])
def test_whole_model(rng, build):
    model = build(
        [{"type": "dense", "units": 6}, {"type": "tanh"},
         {"type": "dense", "units": 5}, {"type": "leaky_relu", "alpha": 0.2},
         {"type": "dropout", "p": 0.3},
         {"type": "dense", "units": 3}, {"type": "sigmoid"},
         {"type": "dense", "units": 4}],
        input_shape=(2, 2), rng=np.random.default_rng(3), dtype=np.float64,
    )
    dropout = next(layer for layer in model.layers if isinstance(layer, Dropout))

    def same_mask():
        dropout.rng = np.random.default_rng(11)

    x = rng.standard_normal((5, 2, 2))
    y = np.array([0, 1, 2, 3, 1])
    errors = check_model_gradients(model, SoftmaxCrossEntropy(0.05), x, y,
                                   before_forward=same_mask)
    assert set(errors) == {"1.W", "1.b", "3.W", "3.b", "6.W", "6.b", "8.W", "8.b"}
    assert_small(errors)


def test_relu_model_away_from_kinks(rng):
    # ReLU between dense layers: check with inputs whose pre-activations are not near 0
    model = build_model([{"type": "dense", "units": 4}, {"type": "relu"},
                         {"type": "dense", "units": 3}],
                        input_shape=(3,), rng=np.random.default_rng(5), dtype=np.float64)
    x = rng.standard_normal((4, 3))
    pre = model.layers[0].forward(x)
    assert np.abs(pre).min() > 1e-3  # the fixed seeds keep us well away from the kink
    errors = check_model_gradients(model, SoftmaxCrossEntropy(), x, np.array([0, 1, 2, 0]))
    assert_small(errors)


def test_gradcheck_catches_a_wrong_backward(rng):
    class BadTanh(Tanh):
        def backward(self, dout):
            return dout * (1 - self.y)  # wrong: should be 1 - y**2

    errors = check_layer_gradients(BadTanh(), rng.standard_normal((3, 3)), rng)
    assert errors["x"] > 1e-2


def test_gradcheck_refuses_float32(rng):
    with pytest.raises(ValueError, match="float64"):
        check_layer_gradients(Dense(3, 2, rng=rng), rng.standard_normal((2, 3)), rng)


def _layouts(rng):
    """The same kind of activations in the memory layouts layers hand each other."""
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    x.ravel()[:5] = [-0.0, 0.0, np.nan, -np.inf, np.inf]
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return {"nchw": x, "channels_last": channels_last, "strided": x[:, :, ::2],
            "broadcast": np.broadcast_to(x[:1], x.shape), "axes_swapped": x.transpose(1, 0, 2, 3),
            "dense": rng.standard_normal((7, 5)), "one_row": x[:1, :1], "empty": x[:0],
            "int": rng.integers(-3, 3, (4, 5))}


def _layout(a):
    """The strides of a's axes longer than 1 (a length-1 axis's stride means nothing)."""
    return [s for s, n in zip(a.strides, a.shape) if n > 1]


@pytest.mark.parametrize("relu_cls", [ReLU, FastReLU])
def test_relu_output_and_gradient_are_numpys_bit_for_bit(rng, relu_cls):
    """The fast ReLU computes max(x, 0) against a row of zeros along per-sample
    rows and its gradient with a float copy of the mask: the same bits as the
    reference's np.maximum(x, 0) and dout * (x > 0) -- -0.0, NaN and infinities
    included -- in every memory layout, and the output keeps the input's layout."""
    for name, x in _layouts(rng).items():
        relu = relu_cls()
        y, expected = relu.forward(x), np.maximum(x, 0)
        assert y.dtype == expected.dtype and y.shape == expected.shape, name
        assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(expected).tobytes(), name
        assert _layout(y) == _layout(expected), name
        dout = rng.standard_normal(x.shape).astype(y.dtype if y.dtype.kind == "f" else np.float64)
        dx = relu.backward(dout)
        assert dx.tobytes() == np.multiply(dout, x > 0, dtype=dout.dtype).tobytes(), name


def test_per_sample_rows_round_trip(rng):
    for name, x in _layouts(rng).items():
        found = per_sample_rows(x)
        if name in ("strided", "broadcast", "axes_swapped", "empty"):
            assert found is None, name          # not one block with the samples outermost
            continue
        rows, order = found
        assert rows.shape == (len(x), x[0].size) and np.shares_memory(rows, x), name
        back = from_rows(rows, x.shape, order)
        assert _layout(back) == _layout(x) and np.array_equal(back, x, equal_nan=True), name


def test_times_mask_is_multiplying_by_the_mask(rng):
    a = rng.standard_normal((6, 7)).astype(np.float32)
    mask = rng.random((6, 7)) > 0.5
    assert times_mask(a, mask).tobytes() == np.multiply(a, mask, dtype=np.float32).tobytes()
    out = np.empty((6, 14), np.float32)[:, ::2]             # a strided destination
    assert times_mask(a, mask, out=out) is out
    np.testing.assert_array_equal(out, np.where(mask, a, 0))


# ---------------------------------------------------------------- nnexp gradcheck


CNN_CONFIG = """\
model:
  engine: {engine}
  layers:
    - {{type: conv2d, out_channels: 4, padding: 1}}
    - {{type: batchnorm}}
    - {{type: relu}}
    - {{type: maxpool2d}}
    - {{type: conv2d, out_channels: 8}}
    - {{type: relu}}
    - {{type: dropout, p: 0.3}}
    - {{type: dense, units: 10}}
"""


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_gradcheck_command_passes_a_correct_network(nnexp, tmp_path, engine):
    config = tmp_path / "cnn.yaml"
    config.write_text(CNN_CONFIG.format(engine="fast"))
    code, out, err = nnexp("gradcheck", config, "--samples", "5", "--json", "--engine", engine)
    assert code == 0, err
    report = json.loads(out)
    assert report["failed"] == 0 and report["engine"] == engine
    assert report["checks"][0]["type"] == ("FastConv2D" if engine == "fast" else "Conv2D")
    checked = {(c["layer"], c["name"]) for c in report["checks"]}
    # every layer's input, and every parameter
    assert {(0, "x"), (0, "W"), (0, "b"), (1, "gamma"), (1, "beta"), (3, "x"), (8, "x"), (8, "W")} <= checked
    assert all(c["checked"] >= 1 for c in report["checks"])


def test_gradcheck_checks_the_reference_layers_whatever_engine_the_config_names(nnexp, tmp_path):
    config = tmp_path / "cnn.yaml"
    winograd = CNN_CONFIG.format(engine="fast").replace("out_channels: 8}", "out_channels: 8, algorithm: winograd}")
    config.write_text(winograd)
    code, out, err = nnexp("gradcheck", config, "--samples", "3")
    assert code == 0, err
    types = {line.split()[1] for line in out.splitlines()[1:]}
    assert {"Conv2D", "BatchNorm", "Dense"} <= types and not any(t.startswith("Fast") for t in types)
    assert err.strip().endswith("(reference engine, float64)")


def test_gradcheck_command_names_the_broken_layer(nnexp, tmp_path, monkeypatch):
    """A batch-norm backward without its mean-correction terms: only that layer
    (and what depends on it) fails, and the exit status says so."""
    def broken_backward(self, dout):
        axes = self.axes(dout)
        self.grads["beta"][...] = dout.sum(axis=axes)
        self.grads["gamma"][...] = (dout * self.xhat).sum(axis=axes)
        return self.per_channel(self.params["gamma"] * self.inv_std, dout) * dout

    monkeypatch.setattr(BatchNorm, "backward", broken_backward)
    config = tmp_path / "cnn.yaml"
    config.write_text(CNN_CONFIG.format(engine="reference"))
    code, out, err = nnexp("gradcheck", config, "--samples", "5")
    assert code == 1
    failing = [line.split()[:3] for line in out.splitlines() if line.endswith("FAIL")]
    assert ["1", "BatchNorm", "input"] in failing
    assert all(int(layer) <= 1 for layer, _, _ in failing)   # the layers above it are fine
    assert "gradients within" in err


def test_gradcheck_command_reports_config_errors(nnexp, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: {layers: [{type: dense, unit: 10}]}\n")
    code, _, err = nnexp("gradcheck", config)
    assert code == 2 and "unit" in err
