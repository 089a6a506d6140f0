"""Winograd F(2x2, 3x3) convolution: the transforms, the layer, and the channels-last
layout it hands to the layers after it."""

import numpy as np
import pytest

from nnexp.nn.fast import build_fast_model as build_model
from nnexp.nn.fast import conv as conv_module
from nnexp.nn.fast import winograd
from nnexp.nn.fast.batchnorm import FastBatchNorm as BatchNorm
from nnexp.nn.fast.conv import FastConv2D as Conv2D
from nnexp.nn.fast.layers import FastFlatten as Flatten
from nnexp.nn.fast.layout import empty_nchw, is_channels_last
from nnexp.nn.fast.pooling import FastGlobalAvgPool2D as GlobalAvgPool2D
from nnexp.nn.fast.pooling import FastMaxPool2D as MaxPool2D
from nnexp.nn.gradcheck import check_layer_gradients

from test_nn_conv import assert_model_gradients, assert_small, naive_conv


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def one_sample_chunks(monkeypatch):
    """Make Winograd work through the batch one sample at a time (the chunk loop)."""
    monkeypatch.setattr(conv_module, "WINOGRAD_CHUNK_BYTES", 1)


def winograd_conv(C, O, padding, rng):
    layer = Conv2D(C, O, 3, padding=padding, rng=rng, dtype=np.float64, algorithm="winograd")
    layer.params["b"][:] = rng.standard_normal(O)
    return layer


# ---------------------------------------------------------------- the transforms


def test_f23_one_dimension_by_hand():
    """Two outputs of a 3-tap correlation from 4 inputs, with the matrices of the docstring."""
    BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
    AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)
    d, g = np.array([1.0, 2.0, -1.0, 3.0]), np.array([0.5, -2.0, 4.0])
    y = AT @ ((winograd._G @ g) * (BT @ d))
    np.testing.assert_allclose(y, [d[0:3] @ g, d[1:4] @ g])   # [-7.5, 15.0]


def _dot(a, b):
    return float(np.sum(a * b))


def test_transforms_and_their_adjoints(rng):
    """<T x, y> == <x, T* y> for each transform and the function named as its gradient:
    the backward pass is exactly the adjoint of the forward one."""
    N, C, th, tw = 2, 3, 3, 4
    W, dU = rng.standard_normal((5, C, 3, 3)), rng.standard_normal((16, C, 5))
    assert _dot(winograd.kernel_transform(W), dU) == pytest.approx(
        _dot(W, winograd.kernel_transform_grad(dU)), rel=1e-12)

    xs = rng.standard_normal((N, 2 * th + 2, 2, tw + 1, C))
    dV = rng.standard_normal((16, N, th, tw, C))
    V, dxs = np.empty_like(dV), np.empty_like(xs)
    winograd.input_transform(xs, V, np.empty((4, N, 2 * th + 2, tw, C)))
    winograd.input_transform_grad(dV, dxs, np.empty((4, N, 2 * th + 2, tw, C)))
    assert _dot(V, dV) == pytest.approx(_dot(xs, dxs), rel=1e-12)

    M, dys = rng.standard_normal((16, N, th, tw, C)), rng.standard_normal((N, 2 * th, 2, tw, C))
    ys, dM = np.empty_like(dys), np.empty_like(M)
    winograd.output_transform(M, ys, np.empty((4, 2, N, th, tw, C)))
    winograd.output_transform_grad(dys, dM, np.empty((4, 2, N, th, tw, C)))
    assert _dot(ys, dys) == pytest.approx(_dot(M, dM), rel=1e-12)


@pytest.mark.parametrize("offset,width", [((0, 0), 6), ((1, 1), 5), ((2, 1), 7), ((1, 2), 4)])
def test_split_and_join_columns(rng, offset, width):
    """split_columns puts padded column 2j + e at [e, j]; join_columns undoes it."""
    x = rng.standard_normal((2, 3, width, 4))
    J = (width + offset[1] + 2) // 2 + 1
    xs = np.zeros((2, 3 + offset[0] + 2, 2, J, 4))
    winograd.split_columns(x, xs, offset)
    padded = np.zeros((2, xs.shape[1], 2 * J, 4))
    padded[:, offset[0]:offset[0] + 3, offset[1]:offset[1] + width] = x
    np.testing.assert_array_equal(xs, padded.reshape(2, xs.shape[1], J, 2, 4).transpose(0, 1, 3, 2, 4))
    back = np.empty_like(x)
    winograd.join_columns(xs, back, offset)
    np.testing.assert_array_equal(back, x)


# ---------------------------------------------------------------- the layer


@pytest.mark.parametrize("H,W,padding", [(6, 6, 0), (5, 7, 1), (4, 4, 2), (7, 6, 0), (3, 3, 0)])
def test_winograd_matches_naive_loops(rng, H, W, padding, one_sample_chunks):
    layer = winograd_conv(3, 4, padding, rng)
    x = rng.standard_normal((3, 3, H, W))
    expected = naive_conv(x, layer.params["W"], layer.params["b"], 1, padding)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,W,padding", [(6, 6, 1), (5, 7, 0), (4, 5, 2)])
@pytest.mark.parametrize("chunks", ["whole batch", "one sample"])
def test_winograd_gradients(rng, monkeypatch, H, W, padding, chunks):
    if chunks == "one sample":
        monkeypatch.setattr(conv_module, "WINOGRAD_CHUNK_BYTES", 1)
    layer = winograd_conv(3, 2, padding, rng)
    assert_small(check_layer_gradients(layer, rng.standard_normal((3, 3, H, W)), rng),
                 {"x", "W", "b"})


@pytest.mark.parametrize("chunks", ["whole batch", "one sample"])
def test_evaluation_between_forward_and_backward_leaves_the_kept_input_alone(rng, monkeypatch, chunks):
    """Backward uses the transformed input V that the training forward kept; an
    evaluation pass in between (other values, same or larger batch: a
    validation step) must not touch it, and the gradients are then bit for
    bit those of a forward and backward alone."""
    if chunks == "one sample":
        monkeypatch.setattr(conv_module, "WINOGRAD_CHUNK_BYTES", 1)
    x = rng.standard_normal((3, 3, 6, 6))
    dout = rng.standard_normal((3, 2, 6, 6))
    alone, interrupted = winograd_conv(3, 2, 1, np.random.default_rng(1)), winograd_conv(3, 2, 1, np.random.default_rng(1))
    alone.forward(x)
    dx_alone = alone.backward(dout)
    interrupted.forward(x)
    for n in (3, 7):
        interrupted.forward(rng.standard_normal((n, 3, 6, 6)), training=False)
    dx = interrupted.backward(dout)
    assert dx.tobytes() == dx_alone.tobytes()
    for name in ("W", "b"):
        assert interrupted.grads[name].tobytes() == alone.grads[name].tobytes()


def test_winograd_gradients_with_rectangular_padding(rng):
    layer = Conv2D(2, 3, 3, padding=(1, 0), rng=rng, dtype=np.float64, algorithm="winograd")
    assert_small(check_layer_gradients(layer, rng.standard_normal((2, 2, 5, 6)), rng),
                 {"x", "W", "b"})


def test_winograd_agrees_with_im2col_in_float32(rng):
    """The shapes of configs/cnn.yaml's second layer, float32: the two algorithms
    round differently, but agree to float32 precision, in every output and gradient."""
    a = Conv2D(32, 32, 3, rng=np.random.default_rng(0), algorithm="im2col")
    b = Conv2D(32, 32, 3, rng=np.random.default_rng(0), algorithm="winograd")
    x = rng.standard_normal((6, 32, 26, 26)).astype(np.float32)
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_allclose(yb, ya, rtol=0, atol=2e-5 * np.abs(ya).max())
    dout = rng.standard_normal(ya.shape).astype(np.float32)
    dxa, dxb = a.backward(dout), b.backward(dout)
    np.testing.assert_allclose(dxb, dxa, rtol=0, atol=2e-5 * np.abs(dxa).max())
    for name in ("W", "b"):
        ga = a.grads[name]
        np.testing.assert_allclose(b.grads[name], ga, rtol=0, atol=2e-5 * np.abs(ga).max())


def test_algorithm_choice_and_errors():
    assert Conv2D(8, 4, 3).algorithm == "winograd"             # auto: 3x3, stride 1, >= 8 channels
    assert Conv2D(1, 4, 3).algorithm == "im2col"               # a first layer
    assert Conv2D(8, 4, 3, stride=2).algorithm == "im2col"
    assert Conv2D(8, 4, 5).algorithm == "im2col"
    assert Conv2D(1, 4, 3, algorithm="winograd").algorithm == "winograd"
    assert Conv2D(8, 4, 3, algorithm="im2col").algorithm == "im2col"
    with pytest.raises(ValueError, match="needs kernel_size 3 and stride 1"):
        Conv2D(8, 4, 3, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        Conv2D(8, 4, 3, algorithm="fft")
    with pytest.raises(ValueError, match=r"layer 1 \(conv2d\): Conv2D: algorithm must be one of .*'fft'"):
        build_model([{"type": "conv2d", "out_channels": 2},
                     {"type": "conv2d", "out_channels": 2, "algorithm": "fft"}], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"layer 0 \(conv2d\):.*needs kernel_size 3"):
        build_model([{"type": "conv2d", "out_channels": 2, "kernel_size": 5, "algorithm": "winograd"}],
                    input_shape=(1, 8, 8))


# ---------------------------------------------------------------- channels last downstream


def test_winograd_output_is_a_channels_last_view(rng):
    layer = winograd_conv(3, 4, 1, rng)
    y = layer.forward(rng.standard_normal((2, 3, 6, 6)))
    assert y.shape == (2, 4, 6, 6) and is_channels_last(y)
    assert not is_channels_last(np.zeros((2, 4, 6, 6))) and not is_channels_last(np.zeros((2, 4)))
    z = empty_nchw((2, 4, 3, 5), np.float32, True)
    assert z.shape == (2, 4, 3, 5) and is_channels_last(z)


@pytest.mark.parametrize("layer", [MaxPool2D(2), MaxPool2D(3, 1), GlobalAvgPool2D(), Flatten(),
                                   BatchNorm(4, dtype=np.float64)],
                         ids=["maxpool2x2", "maxpool3s1", "gap", "flatten", "batchnorm"])
def test_layers_keep_the_channels_last_layout(rng, layer):
    """Same values and gradients for a channels-last input as for the same input in
    NCHW memory, and dL/dx comes back in the input's layout."""
    x = rng.standard_normal((3, 4, 6, 6))
    x_last = empty_nchw(x.shape, np.float64, True)
    x_last[...] = x
    y = layer.forward(x)
    dout = rng.standard_normal(y.shape)
    dx = layer.backward(dout)
    y_last = layer.forward(x_last)
    dx_last = layer.backward(dout)
    np.testing.assert_allclose(y_last, y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx_last, dx, rtol=1e-13, atol=1e-13)
    assert is_channels_last(dx_last) and not is_channels_last(dx)


def test_whole_winograd_cnn_gradients(rng, one_sample_chunks):
    """A model whose 3x3 convs run Winograd (channels-last activations through
    batch-norm, ReLU, both poolings and flatten) against finite differences."""
    specs = [{"type": "conv2d", "out_channels": 3, "padding": 1, "algorithm": "winograd"},
             {"type": "tanh"}, {"type": "batchnorm"},
             {"type": "conv2d", "out_channels": 4, "algorithm": "winograd"}, {"type": "tanh"},
             {"type": "maxpool2d"},
             {"type": "conv2d", "out_channels": 3, "padding": 1, "algorithm": "winograd"},
             {"type": "relu"}, {"type": "avgpool2d"},
             {"type": "flatten"}, {"type": "dense", "units": 4}]
    assert_model_gradients(specs, (3, 2, 6, 6), rng, build_model)


def test_output_transform_max_is_the_max_of_each_tile():
    rng = np.random.default_rng(7)
    n, th, tw, O = 2, 3, 4, 5
    M = rng.standard_normal((16, n, th, tw, O))
    ys = np.empty((n, 2 * th, 2, tw, O))
    winograd.output_transform(M, ys, np.empty((4, 2, n, th, tw, O)))
    y = np.empty((n, 2 * th, 2 * tw, O))
    winograd.join_columns(ys, y, (0, 0))
    pooled = np.empty((n, th, tw, O))
    winograd.output_transform_max(M, pooled, np.empty((4, 2, n, th, tw, O)), np.empty_like(pooled))
    expected = y.reshape(n, th, 2, tw, 2, O).max(axis=(2, 4))
    np.testing.assert_allclose(pooled, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------- the order of operations (bit for bit)
#
# Stored runs reproduce bit for bit only while every float operation keeps its
# order.  These pin the order down against plain formulas, so that a faster
# rewrite of a transform that changes a last bit fails here, not in a re-run.


def _extreme(rng, shape, dtype):
    """Values spread over 2^-58 .. 2^58 with signed zeros: sums of them round, so
    adding the same terms in another order gives other bits."""
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-40, 40, shape))
    x[rng.random(shape) < 0.1] = -0.0
    x[rng.random(shape) < 0.1] = 0.0
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_transforms_add_their_terms_in_order(dtype):
    """U[a, b]: the terms G[a, i] G[b, j] W[i, j] added one at a time, (i, j) row
    by row, in float64; dW[i, j] likewise over (a, b).  That is the order
    np.einsum used when it computed these (checked against NumPy 2.4's einsum
    when it was replaced), so stored runs keep their bits."""
    rng = np.random.default_rng(3)
    G = winograd._G
    for O, C in [(1, 1), (5, 3), (8, 7)]:
        W = _extreme(rng, (O, C, 3, 3), dtype)
        U = np.zeros((4, 4, C, O))
        for i in range(3):
            for j in range(3):
                U += np.multiply.outer(np.outer(G[:, i], G[:, j]), W[:, :, i, j].T.astype(np.float64))
        got = winograd.kernel_transform(W)
        assert got.dtype == dtype and got.flags.c_contiguous
        assert got.tobytes() == U.reshape(16, C, O).astype(dtype).tobytes()

        dU = _extreme(rng, (16, C, O), dtype)
        dW = np.zeros((3, 3, C, O))
        for a in range(4):
            for b in range(4):
                dW += np.multiply.outer(np.outer(G[a], G[b]), dU[4 * a + b].astype(np.float64))
        got = winograd.kernel_transform_grad(dU)
        assert got.dtype == dtype and got.shape == (O, C, 3, 3)
        assert np.ascontiguousarray(got).tobytes() == dW.transpose(3, 2, 0, 1).astype(dtype).tobytes()


def _bt(t0, t1, t2, t3):
    return [t0 - t2, t1 + t2, t2 - t1, t1 - t3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_transform_order_of_operations(dtype):
    """V = B^T d B: B^T along the tile's columns first, then along its rows."""
    rng = np.random.default_rng(4)
    n, th, tw, C = 2, 3, 2, 5
    xs = _extreme(rng, (n, 2 * th + 2, 2, tw + 1, C), dtype)
    x = np.empty((n, 2 * th + 2, 2 * tw + 2, C), dtype)
    winograd.join_columns(xs, x, (0, 0))
    V = np.empty((16, n, th, tw, C), dtype)
    winograd.input_transform(xs, V, np.empty((4, n, 2 * th + 2, tw, C), dtype))
    for i in range(th):
        for j in range(tw):
            d = x[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4]             # (n, 4, 4, C)
            cols = _bt(*[d[:, :, k] for k in range(4)])           # B^T over the columns, per row
            for b in range(4):
                rows = _bt(*[cols[b][:, k] for k in range(4)])
                for a in range(4):
                    assert V[4 * a + b, :, i, j].tobytes() == rows[a].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_transforms_order_of_operations(dtype):
    """y = A^T M A: A along the tile's columns first ((m0 + m1) + m2, (m1 - m2) - m3),
    then along its rows; dM = A dy A^T: rows first, then columns."""
    rng = np.random.default_rng(5)
    n, th, tw, O = 2, 2, 3, 4
    M = _extreme(rng, (16, n, th, tw, O), dtype)
    ys = np.empty((n, 2 * th, 2, tw, O), dtype)
    winograd.output_transform(M, ys, np.empty((4, 2, n, th, tw, O), dtype))
    dys = _extreme(rng, ys.shape, dtype)
    dM = np.empty_like(M)
    winograd.output_transform_grad(dys, dM, np.empty((4, 2, n, th, tw, O), dtype))
    for i in range(th):
        for j in range(tw):
            m = M[:, :, i, j].reshape(4, 4, n, O)
            c = [[(m[a, 0] + m[a, 1]) + m[a, 2], (m[a, 1] - m[a, 2]) - m[a, 3]] for a in range(4)]
            for l in range(2):
                assert ys[:, 2 * i, l, j].tobytes() == ((c[0][l] + c[1][l]) + c[2][l]).tobytes()
                assert ys[:, 2 * i + 1, l, j].tobytes() == ((c[1][l] - c[2][l]) - c[3][l]).tobytes()
            top, bottom = dys[:, 2 * i, :, j], dys[:, 2 * i + 1, :, j]      # (n, 2, O): columns l
            rows = [top, top + bottom, top - bottom, -bottom]
            for a in range(4):
                left, right = rows[a][:, 0], rows[a][:, 1]
                for b, v in enumerate([left, left + right, left - right, -right]):
                    assert dM[4 * a + b, :, i, j].tobytes() == v.tobytes()


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
def test_an_empty_batch_gives_an_empty_output(algorithm):
    layer = Conv2D(8, 4, 3, padding=1, rng=np.random.default_rng(0), algorithm=algorithm)
    x = np.zeros((0, 8, 6, 6), np.float32)
    assert layer.infer(x).shape == (0, 4, 6, 6)
    assert layer.infer(x, relu=True, pool=algorithm == "winograd").shape[0] == 0
