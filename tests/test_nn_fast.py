"""The fast engine against the reference network it replaces.

Every fast layer, the fast model and its fused evaluation are held against
the reference on the same inputs: bit for bit where the fast variant
computes the same operations (ReLU, Dense, Flatten, max-pooling), otherwise
within float rounding (float64: ~1e-12; float32: ~1e-5).  The fast
optimizers are held against the reference rules in test_nn_optim.py.
"""

import numpy as np
import pytest

from nnexp.nn import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
    build_model,
    forward_backward,
)
from nnexp.nn.fast import build_fast_model
from nnexp.nn.fast.batchnorm import FastBatchNorm
from nnexp.nn.fast.conv import FastConv2D
from nnexp.nn.fast.layers import FastDense, FastFlatten, FastReLU
from nnexp.nn.fast.pooling import FastAvgPool2D, FastGlobalAvgPool2D, FastMaxPool2D


def channels_last(x):
    """x (N, C, H, W) with (N, H, W, C) memory: the Winograd convolution's output layout."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def run_both(ref, fast, x, dout, training=True):
    """(reference y, dx), (fast y, dx) for the same input and output gradient."""
    out = []
    for layer in (ref, fast):
        y = layer.forward(x, training)
        out.append((np.array(y), np.array(layer.backward(dout))))
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


@pytest.mark.parametrize("layout", [np.asarray, channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_elementwise_and_shape_layers_are_bit_for_bit(rng, layout, training):
    x = layout(rng.standard_normal((4, 3, 6, 5)).astype(np.float32))
    dout = rng.standard_normal(x.shape).astype(np.float32)
    (y1, dx1), (y2, dx2) = run_both(ReLU(), FastReLU(), x, dout, training)
    assert y1.tobytes() == y2.tobytes() and dx1.tobytes() == dx2.tobytes()
    flat_dout = dout.reshape(4, -1)
    (y1, dx1), (y2, dx2) = run_both(Flatten(), FastFlatten(), x, flat_dout, training)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)


def test_dense_is_bit_for_bit(rng):
    ref, fast = (cls(12, 7, rng=np.random.default_rng(0)) for cls in (Dense, FastDense))
    x, dout = rng.standard_normal((9, 12)).astype(np.float32), rng.standard_normal((9, 7)).astype(np.float32)
    (y1, dx1), (y2, dx2) = run_both(ref, fast, x, dout)
    # the same three GEMMs on the same shapes and operand layouts: exact on any BLAS kernel
    assert y1.tobytes() == y2.tobytes() and dx1.tobytes() == dx2.tobytes()
    for name in ("W", "b"):
        assert ref.grads[name].tobytes() == fast.grads[name].tobytes()


@pytest.mark.parametrize("layout", [np.asarray, channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("k,stride,shape", [(2, None, (3, 4, 8, 6)), (2, None, (2, 3, 7, 5)),
                                            (3, 2, (2, 2, 9, 7)), (2, 3, (2, 2, 8, 8))])
def test_pools(rng, layout, k, stride, shape):
    # small integers: many ties, which both must give to the same element
    x = layout(rng.integers(0, 4, shape).astype(np.float32))
    ref = MaxPool2D(k, stride)
    dout = rng.standard_normal((shape[0], shape[1]) + ref.output_shape(shape[1:])[1:]).astype(np.float32)
    (y1, dx1), (y2, dx2) = run_both(ref, FastMaxPool2D(k, stride), x, dout)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    x = layout(rng.standard_normal(shape).astype(np.float32))
    (y1, dx1), (y2, dx2) = run_both(AvgPool2D(k, stride), FastAvgPool2D(k, stride), x, dout)
    np.testing.assert_allclose(y2, y1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-6, atol=1e-7)
    (y1, dx1), (y2, dx2) = run_both(GlobalAvgPool2D(), FastGlobalAvgPool2D(), x, dout[:, :, 0, 0])
    np.testing.assert_allclose(y2, y1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("shape,layout", [((16, 5), np.asarray), ((6, 5, 4, 3), np.asarray),
                                          ((6, 5, 4, 3), channels_last)],
                         ids=["2d", "4d", "4d-channels-last"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm(rng, dtype, rtol, shape, layout, training):
    ref, fast = BatchNorm(5, dtype=dtype), FastBatchNorm(5, dtype=dtype)
    gamma, beta = rng.uniform(0.5, 1.5, 5), rng.standard_normal(5)
    mean, var = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    for layer in (ref, fast):
        layer.params["gamma"][...], layer.params["beta"][...] = gamma, beta
        layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = mean, var
    x = layout((rng.standard_normal(shape) * 2 + 1).astype(dtype))
    dout = rng.standard_normal(shape).astype(dtype)
    (y1, dx1), (y2, dx2) = run_both(ref, fast, x, dout, training)
    np.testing.assert_allclose(y2, y1, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dx2, dx1, rtol=rtol, atol=rtol * np.abs(dx1).max())
    for name in ("gamma", "beta"):
        np.testing.assert_allclose(fast.grads[name], ref.grads[name], rtol=rtol, atol=rtol * 10)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(fast.buffers[name], ref.buffers[name], rtol=rtol)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-11), (np.float32, 1e-4)])
@pytest.mark.parametrize("algorithm,C,k,stride,padding", [("im2col", 1, 3, 1, 1), ("im2col", 3, 5, 2, 2),
                                                          ("winograd", 8, 3, 1, 1), ("winograd", 9, 3, 1, 0)])
@pytest.mark.parametrize("layout", [np.asarray, channels_last], ids=["nchw", "channels_last"])
def test_conv2d(rng, dtype, rtol, algorithm, C, k, stride, padding, layout):
    ref = Conv2D(C, 6, k, stride=stride, padding=padding, rng=np.random.default_rng(0), dtype=dtype)
    fast = FastConv2D(C, 6, k, stride=stride, padding=padding, rng=np.random.default_rng(0), dtype=dtype,
                      algorithm=algorithm)
    assert ref.params["W"].tobytes() == fast.params["W"].tobytes()   # the same initial weights
    ref.params["b"][...] = fast.params["b"][...] = rng.standard_normal(6)
    x = layout(rng.standard_normal((5, C, 11, 10)).astype(dtype))
    dout = rng.standard_normal((5,) + ref.output_shape(x.shape[1:])).astype(dtype)
    (y1, dx1), (y2, dx2) = run_both(ref, fast, x, dout)
    scale = np.abs(y1).max()
    np.testing.assert_allclose(y2, y1, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(dx2, dx1, rtol=rtol, atol=rtol * np.abs(dx1).max())
    for name in ("W", "b"):
        np.testing.assert_allclose(fast.grads[name], ref.grads[name], rtol=rtol,
                                   atol=rtol * np.abs(ref.grads[name]).max())
    y_eval = fast.forward(x, training=False)
    np.testing.assert_allclose(y_eval, y1, rtol=rtol, atol=rtol * scale)


CNN = [{"type": "conv2d", "out_channels": 8, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
       {"type": "conv2d", "out_channels": 8, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
       {"type": "maxpool2d"},
       {"type": "conv2d", "out_channels": 8}, {"type": "relu"}, {"type": "global_avgpool"},
       {"type": "dropout", "p": 0.2}, {"type": "dense", "units": 12}, {"type": "batchnorm"}, {"type": "relu"},
       {"type": "dense", "units": 5}]


def test_fast_model_trains_like_the_reference(rng):
    """The same seed builds the same weights; steps of training keep both models
    within float64 rounding of each other (gradients, running statistics,
    weights after updates) and so do their evaluation outputs."""
    ref = build_model(CNN, (1, 10, 10), np.random.default_rng(0), np.float64)
    fast = build_fast_model(CNN, (1, 10, 10), np.random.default_rng(0), np.float64)
    assert [type(a).__name__ for a in fast.layers] == [
        "FastConv2D", "FastBatchNorm", "FastReLU", "FastConv2D", "FastBatchNorm", "FastReLU", "FastMaxPool2D",
        "FastConv2D", "FastReLU", "FastGlobalAvgPool2D", "Dropout", "FastDense", "FastBatchNorm", "FastReLU",
        "FastDense"]
    assert fast.layers[3].algorithm == "winograd" and fast.layers[0].algorithm == "im2col"
    for (n1, p1, _), (n2, p2, _) in zip(ref.parameters(), fast.parameters()):
        assert n1 == n2 and p1.tobytes() == p2.tobytes()
    loss = SoftmaxCrossEntropy(0.1)
    for step in range(4):
        x, y = rng.random((9, 1, 10, 10)), rng.integers(0, 5, 9)
        for model in (ref, fast):   # the same dropout masks: equal generators, equal draws
            model.layers[10].rng = np.random.default_rng(step)
        l1, right1 = forward_backward(ref, loss, x, y)
        l2, right2 = forward_backward(fast, loss, x, y)
        assert l2 == pytest.approx(l1, rel=1e-12) and right1 == right2
        for (n, p1, g1), (_, p2, g2) in zip(ref.parameters(), fast.parameters()):
            np.testing.assert_allclose(g2, g1, rtol=1e-9, atol=1e-12 * max(1, np.abs(g1).max()), err_msg=n)
            p1 -= 0.1 * g1
            p2 -= 0.1 * g2
    for (n, b1), (_, b2) in zip(ref.buffers(), fast.buffers()):
        np.testing.assert_allclose(b2, b1, rtol=1e-11, err_msg=n)
    x = rng.random((20, 1, 10, 10))
    np.testing.assert_allclose(fast.predict_proba(x, 7), ref.predict_proba(x, 7), rtol=1e-5, atol=1e-7)


# -- evaluation with batch-norm folded and ReLU fused ------------------------------------------

FUSABLE = [  # conv+BN+ReLU (Winograd and im2col), conv+ReLU, conv+BN, dense+BN+ReLU, dense alone
    {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "algorithm": "winograd"},
    {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d"},
    {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "algorithm": "im2col"}, {"type": "relu"},
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "batchnorm"},
    {"type": "dense", "units": 12}, {"type": "batchnorm"}, {"type": "relu"}, {"type": "dropout", "p": 0.3},
    {"type": "dense", "units": 5},
]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("side", [16, 17])   # the Winograd conv's output even (pool fused) or odd
def test_fused_evaluation_equals_the_layers_one_by_one(dtype, rtol, side):
    rng = np.random.default_rng(3)
    model = build_fast_model(FUSABLE, input_shape=(1, side, side), rng=rng, dtype=dtype)
    assert model.layers[3].can_pool((8, side, side)) == (side == 16)
    for _ in range(3):   # running statistics away from (0, 1), gamma/beta away from (1, 0)
        model.forward(rng.random((10, 1, side, side)), training=True)
    for name, p, _ in model.parameters():
        if "gamma" in name or "beta" in name:
            p[...] = rng.uniform(0.5, 1.5, p.shape) if "gamma" in name else rng.normal(0, 0.3, p.shape)
    x = rng.random((7, 1, side, side)).astype(dtype)
    h = x
    for layer in model.layers:
        h = layer.forward(h, training=False)
    fused = model.forward(x, training=False)
    assert fused.dtype == dtype
    np.testing.assert_allclose(fused, h, rtol=rtol, atol=rtol * np.abs(h).max())


def test_fused_evaluation_skips_the_folded_layers(monkeypatch):
    model = build_fast_model(FUSABLE, input_shape=(1, 16, 16), rng=np.random.default_rng(0))
    called = []
    for cls in (FastBatchNorm, FastReLU, FastMaxPool2D):
        original = cls.forward
        monkeypatch.setattr(cls, "forward", lambda self, x, training=True, f=original:
                            called.append(self) or f(self, x, training))
    model.forward(np.zeros((2, 1, 16, 16), np.float32), training=False)
    # every BN and ReLU here follows a conv or dense; the pool follows a Winograd block
    assert called == []
    model.forward(np.zeros((2, 1, 16, 16), np.float32), training=True)
    assert len(called) == 9


def test_batchnorm_fold_is_the_affine_map_it_replaces():
    rng = np.random.default_rng(4)
    bn = FastBatchNorm(3, dtype=np.float64)
    bn.buffers["running_mean"][...] = rng.normal(size=3)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2, 3)
    bn.params["gamma"][...] = rng.uniform(0.5, 2, 3)
    bn.params["beta"][...] = rng.normal(size=3)
    x = rng.normal(size=(5, 4))
    W, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    W2, b2 = bn.fold(W, b)
    np.testing.assert_allclose(x @ W2 + b2, bn.forward(x @ W + b, training=False), rtol=1e-12)
    Wc = rng.normal(size=(3, 2, 3, 3))
    Wc2, _ = bn.fold(Wc, b)
    scale = bn.params["gamma"] / np.sqrt(bn.buffers["running_var"] + bn.eps)
    np.testing.assert_allclose(Wc2, Wc * scale[:, None, None, None], rtol=1e-12)


