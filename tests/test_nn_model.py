"""Sequential / build_model / weight files / loss values / a tiny training run."""

import math
import pickle

import numpy as np
import pytest

from nnexp.engines import ENGINES
from nnexp.nn import (
    LAYER_SPECS,
    REQUIRED,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    build_model,
    load_weights,
    save_weights,
    softmax,
)
from nnexp.nn.fast import build_fast_model
from nnexp.nn.model import build_layers

BUILDERS = [build_model, build_fast_model]

MLP = [
    {"type": "dense", "units": 256, "init": "he"},
    {"type": "relu"},
    {"type": "dense", "units": 128},
    {"type": "relu"},
    {"type": "dense", "units": 10},
]


# ---------------------------------------------------------------- the loss


def test_loss_matches_hand_computation():
    logits = np.array([[1.0, 2.0, 3.0],
                       [1.0, 1.0, 1.0]])
    y = np.array([2, 0])
    loss = SoftmaxCrossEntropy()
    # row 0: -log softmax_2 = log(e^1 + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)
    # row 1: all logits equal, p = 1/3 each: -log(1/3) = log 3
    expected = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(3)) / 2
    assert loss.forward(logits, y) == pytest.approx(expected, rel=1e-12)  # 0.7531...
    # gradient (p - onehot) / N with N = 2
    z = 1 + math.exp(-1) + math.exp(-2)
    p0 = [math.exp(-2) / z, math.exp(-1) / z, 1 / z]
    expected_grad = np.array([[p0[0] / 2, p0[1] / 2, (p0[2] - 1) / 2],
                              [(1 / 3 - 1) / 2, 1 / 6, 1 / 6]])
    np.testing.assert_allclose(loss.backward(), expected_grad, rtol=1e-12)


def test_loss_label_smoothing_by_hand():
    logits = np.array([[1.0, 2.0, 3.0]])
    eps = 0.1
    logp = np.array([1.0, 2.0, 3.0]) - (3 + math.log(1 + math.exp(-1) + math.exp(-2)))
    target = np.array([eps / 3, eps / 3, 1 - eps + eps / 3])  # (1-eps)*onehot + eps/C
    loss = SoftmaxCrossEntropy(label_smoothing=eps)
    assert loss.forward(logits, np.array([2])) == pytest.approx(-(target * logp).sum(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), np.exp(logp)[None] - target, rtol=1e-12)


def test_loss_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4],
                       [1e4, 1e4, 1e4]], dtype=np.float32)
    loss = SoftmaxCrossEntropy()
    # row 0 is predicted with certainty (loss 0), row 1 is uniform (log 3)
    assert loss.forward(logits, np.array([0, 1])) == pytest.approx(math.log(3) / 2, rel=1e-6)
    g = loss.backward()
    assert g.dtype == np.float32 and np.all(np.isfinite(g))
    # the wrong class with certainty: loss = 1e4 - (-1e4) = 2e4, finite
    assert loss.forward(logits[:1], np.array([2])) == pytest.approx(2e4)
    p = softmax(logits)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1)


def test_loss_rejects_bad_labels():
    loss = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="range"):
        loss.forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integers"):
        loss.forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxCrossEntropy(1.0)


# ---------------------------------------------------------------- building


def test_build_model_shapes_and_parameter_count():
    model = build_model(MLP, input_shape=(1, 28, 28), rng=np.random.default_rng(0))
    # the dense layer got a non-flat input, so a Flatten was inserted before it
    assert isinstance(model.layers[0], Flatten)
    assert [type(layer).__name__ for layer in model.layers] == \
        ["Flatten", "Dense", "ReLU", "Dense", "ReLU", "Dense"]
    assert model.num_parameters() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == 235146
    names = [name for name, _, _ in model.parameters()]
    assert names == ["1.W", "1.b", "3.W", "3.b", "5.W", "5.b"]
    assert model.layers[1].params["W"].shape == (784, 256)
    assert model.layers[1].params["b"].shape == (256,)
    for _, p, g in model.parameters():
        assert p.dtype == np.float32 and g.shape == p.shape
    out = model.forward(np.zeros((5, 1, 28, 28), dtype=np.float32))
    assert out.shape == (5, 10) and out.dtype == np.float32
    # an explicit flatten gives the same layout without an implicit one
    explicit = build_model([{"type": "flatten"}] + MLP, rng=np.random.default_rng(0))
    assert len(explicit.layers) == len(model.layers)


def test_float32_model_stays_float32_on_float64_or_uint8_input():
    model = build_model(MLP, input_shape=(784,), rng=np.random.default_rng(0))
    for x in (np.ones((3, 784)), np.ones((3, 784), dtype=np.uint8)):
        assert model.forward(x).dtype == np.float32


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown type"):
        build_model([{"type": "conv"}])
    with pytest.raises(ValueError, match="units"):
        build_model([{"type": "dense"}])
    with pytest.raises(ValueError, match="unknown key"):
        build_model([{"type": "relu", "alpha": 0.1}, {"type": "dense", "units": 2}])
    with pytest.raises(ValueError, match="must be int"):
        build_model([{"type": "dense", "units": 2.5}])
    with pytest.raises(ValueError, match="init"):
        build_model([{"type": "dense", "units": 2, "init": "zeros"}])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        build_model([{"type": "dense", "units": 2}, {"type": "dropout", "p": 1.0}])
    with pytest.raises(ValueError, match="positive"):
        Dense(0, 3)


#: layer type -> (the options a spec must give, the layer its class makes with them alone on a (2, 8, 8) input)
CONSTRUCTED = {
    "dense": ({"units": 3}, lambda: Dense(128, 3)), "conv2d": ({"out_channels": 3}, lambda: Conv2D(2, 3)),
    "batchnorm": ({}, lambda: BatchNorm(2)), "dropout": ({}, Dropout), "leaky_relu": ({}, LeakyReLU),
    "maxpool2d": ({}, MaxPool2D), "avgpool2d": ({}, AvgPool2D), "relu": ({}, ReLU), "sigmoid": ({}, Sigmoid),
    "tanh": ({}, Tanh), "flatten": ({}, Flatten), "global_avgpool": ({}, GlobalAvgPool2D),
}


@pytest.mark.parametrize("kind", sorted(LAYER_SPECS))
def test_an_option_left_out_of_a_spec_is_the_constructors_default(kind):
    required, constructed = CONSTRUCTED[kind]
    assert {k for k, (_, d) in LAYER_SPECS[kind].items() if d is REQUIRED} == set(required)
    layers, _ = build_layers([{"type": kind, **required}], (2, 8, 8), np.random.default_rng(0), np.float32)
    assert repr(layers[-1]) == repr(constructed())


def test_layer_specs_table():
    assert LAYER_SPECS["dense"] == {"units": (int, REQUIRED), "init": (str, "he")}
    assert LAYER_SPECS["dropout"]["p"] == (float, 0.5)
    assert LAYER_SPECS["leaky_relu"]["alpha"] == (float, 0.01)
    assert set(LAYER_SPECS) == {"dense", "relu", "leaky_relu", "sigmoid", "tanh",
                                "dropout", "flatten", "conv2d", "maxpool2d", "avgpool2d",
                                "global_avgpool", "batchnorm"}


# ---------------------------------------------------------------- weights


@pytest.mark.parametrize("build", BUILDERS)
def test_state_dict_round_trip_via_weight_files(tmp_path, build):
    a = build(MLP, rng=np.random.default_rng(1))
    b = build(MLP, rng=np.random.default_rng(2))
    x = np.random.default_rng(3).random((4, 1, 28, 28), dtype=np.float32)
    assert not np.array_equal(a.forward(x), b.forward(x))
    optimizer_view = b.parameters()[0][1]  # loading must keep optimizers' references valid
    save_weights(tmp_path / "w.npz", a)
    load_weights(tmp_path / "w.npz", b)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))   # the same weights through the same code
    assert b.parameters()[0][1] is optimizer_view
    assert set(a.state_dict()) == {"1.W", "1.b", "3.W", "3.b", "5.W", "5.b"}


def test_load_state_dict_names_the_mismatch():
    model = build_model(MLP, rng=np.random.default_rng(0))
    state = model.state_dict()
    with pytest.raises(ValueError, match="5.b"):
        model.load_state_dict({k: v for k, v in state.items() if k != "5.b"})
    with pytest.raises(ValueError, match="unexpected keys.*9.W"):
        model.load_state_dict(dict(state, **{"9.W": np.zeros(1)}))
    with pytest.raises(ValueError, match=r"3\.W.*\(256, 64\)"):
        model.load_state_dict(dict(state, **{"3.W": np.zeros((256, 64))}))


def test_pickled_weights_are_refused(tmp_path):
    model = build_model(MLP, rng=np.random.default_rng(0))
    state = model.state_dict()
    state["1.W"] = np.array([{"evil": True}], dtype=object)  # saved via pickle
    np.savez(tmp_path / "bad.npz", **state)
    with pytest.raises(ValueError, match="refuses pickled data"):
        load_weights(tmp_path / "bad.npz", model)
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(model.state_dict()))
    with pytest.raises(ValueError, match="refuses pickled data"):
        load_weights(tmp_path / "raw.pkl", model)


# ---------------------------------------------------------------- behaviour


def _train(seed, x, y, specs, steps, batch=32, engine="reference"):
    rng = np.random.default_rng(seed)
    model = ENGINES[engine].build_model(specs, x.shape[1:], rng)
    loss, opt = SoftmaxCrossEntropy(), ENGINES[engine].optimizers["adam"](model.parameters())
    for step in range(steps):
        idx = rng.integers(0, len(x), batch)
        loss.forward(model.forward(x[idx]), y[idx])
        model.backward(loss.backward())
        opt.step(0.01)
    return model


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_same_seed_same_run_bit_for_bit(engine):
    data = np.random.default_rng(0)
    x = data.standard_normal((100, 12)).astype(np.float32)
    y = data.integers(0, 3, 100)
    specs = [{"type": "dense", "units": 16}, {"type": "relu"}, {"type": "dropout", "p": 0.3},
             {"type": "dense", "units": 3}]
    m1, m2 = _train(7, x, y, specs, 20, engine=engine), _train(7, x, y, specs, 20, engine=engine)
    for (n1, p1, _), (n2, p2, _) in zip(m1.parameters(), m2.parameters()):   # one process, one path
        np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(m1.predict_proba(x), m2.predict_proba(x))
    m3 = _train(8, x, y, specs, 20, engine=engine)
    assert not np.array_equal(m1.predict_proba(x), m3.predict_proba(x))


@pytest.mark.parametrize("build", BUILDERS)
def test_predict_proba_batched_eval_mode(build):
    model = build([{"type": "dense", "units": 8}, {"type": "relu"},
                         {"type": "dropout", "p": 0.5}, {"type": "dense", "units": 4}],
                        input_shape=(5,), rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((23, 5)).astype(np.float32)
    p = model.predict_proba(x, batch_size=7)
    assert p.shape == (23, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    # dropout is off in eval mode, so batching and repetition change nothing
    np.testing.assert_allclose(p, model.predict_proba(x), rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x, batch_size=7), p.argmax(axis=1))   # same batches, same bits


def test_sequential_by_hand():
    rng = np.random.default_rng(0)
    model = Sequential([Dense(3, 4, rng=rng), ReLU(), Dropout(0.5, rng=rng), Dense(4, 2, rng=rng)])
    assert [n for n, _, _ in model.parameters()] == ["0.W", "0.b", "3.W", "3.b"]
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2
    with pytest.raises(ValueError, match="not a Layer"):
        Sequential([Dense(3, 4), "relu"])


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_tiny_training_run_learns_a_separable_problem(engine):
    # three well-separated Gaussian blobs in 10-D
    data = np.random.default_rng(0)
    centers = data.standard_normal((3, 10)) * 3
    y = data.integers(0, 3, 600)
    x = (centers[y] + data.standard_normal((600, 10))).astype(np.float32)
    model = _train(0, x[:450], y[:450],
                   [{"type": "dense", "units": 32}, {"type": "relu"},
                    {"type": "dense", "units": 3}], steps=150, engine=engine)
    accuracy = (model.predict(x[450:]) == y[450:]).mean()
    assert accuracy > 0.95


@pytest.mark.parametrize("build", BUILDERS)
def test_backward_after_an_evaluation_forward_is_refused(build):
    model = build([{"type": "dense", "units": 3}], input_shape=(4,), rng=np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="training=True"):
        model.backward(np.zeros((2, 3), np.float32))
    model.forward(np.zeros((2, 4), np.float32), training=True)
    model.forward(np.zeros((2, 4), np.float32), training=False)
    with pytest.raises(RuntimeError, match="training=True"):
        model.backward(np.zeros((2, 3), np.float32))


def test_layers_made_directly_check_their_arguments():
    with pytest.raises(ValueError, match="must be a positive integer, got 2.5"):
        Dense(4, 2.5)
    with pytest.raises(ValueError, match="must be a positive integer, got 3.0"):
        Dense(3.0, 4)
    for p in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            Dropout(p)
    assert Dropout().p == LAYER_SPECS["dropout"]["p"][1]  # the class and the config agree
