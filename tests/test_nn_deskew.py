"""Deskewing: the moments it removes, the images it leaves alone, its place in a model."""

import numpy as np
import pytest

from nnexp.augment import warp
from nnexp.config import validate
from nnexp.errors import ConfigError
from nnexp.nn import build_model
from nnexp.nn.deskew import Deskew, skew_matrices
from nnexp.nn.gradcheck import check_model_gradients
from nnexp.nn.losses import SoftmaxCrossEntropy

H = W = 28
C = (W - 1) / 2


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def moments(img: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, cov_xy / var_y) of one (H, W) image, straight from the definitions."""
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    m = img.sum()
    cx, cy = (xs * img).sum() / m, (ys * img).sum() / m
    return cx, cy, ((xs - cx) * (ys - cy) * img).sum() / ((ys - cy) ** 2 * img).sum()


def bar(x0=14, y0=14, half_height=8, half_width=1.5) -> np.ndarray:
    """An upright bar (a '1'), as a (1, 1, H, W) float64 image."""
    img = np.zeros((H, W))
    img[y0 - half_height:y0 + half_height + 1, round(x0 - half_width):round(x0 + half_width) + 1] = 1.0
    return img[None, None]


def shear(x: np.ndarray, alpha: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """x' = x + alpha (y - C) + dx, y' = y + dy, as warp's inverse mapping:
    y = y' - dy, x = x' - dx - alpha (y' - dy - C)."""
    m = np.array([[[1.0, -alpha, alpha * (C + dy) - dx], [0.0, 1.0, -dy]]])
    return warp(x, m)


@pytest.mark.parametrize("alpha, dx, dy", [(0.3, 0, 0), (-0.4, 2, -1), (0.2, -3, 2)])
def test_a_sheared_shifted_bar_comes_out_upright_and_centred(alpha, dx, dy):
    slanted = shear(bar(), alpha, dx, dy)
    assert abs(moments(slanted[0, 0])[2] - alpha) < 0.05   # the test image really leans
    out = Deskew().forward(slanted)
    cx, cy, a = moments(out[0, 0])
    assert abs(a) < 0.02 and abs(cx - C) < 0.05 and abs(cy - C) < 0.05
    # upright again: each row's ink is centred on the same column
    rows = out[0, 0].sum(axis=1) > 0.5
    centres = (out[0, 0][rows] * np.arange(W)).sum(axis=1) / out[0, 0][rows].sum(axis=1)
    assert np.ptp(centres) < 0.6


def test_the_matrix_removes_the_covariance_it_measures(rng):
    x = np.zeros((5, 1, H, W))                              # blotchy ink, off centre,
    x[:, :, 4:20, 6:18] = rng.random((5, 1, 16, 12)) ** 4  # away from the border
    out = warp(x, skew_matrices(x))
    for img in out[:, 0]:
        cx, cy, a = moments(img)
        # bilinear resampling and the zero border blur the moments slightly
        assert abs(a) < 0.03 and abs(cx - C) < 0.1 and abs(cy - C) < 0.1


def test_an_upright_centred_symmetric_image_is_left_as_it_is():
    img = bar(x0=C, y0=14)                                  # columns 12..15: centre 13.5
    img = img + img[:, :, ::-1, :]                          # and symmetric about row 13.5
    m = skew_matrices(img)
    np.testing.assert_allclose(m[0], [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(Deskew().forward(img), img, atol=1e-12)


def test_empty_and_degenerate_images_are_safe():
    x = np.zeros((3, 1, H, W), dtype=np.float32)
    x[1, 0, 20, 3:10] = 1.0                                  # one horizontal stroke: var_y = 0
    m = skew_matrices(x)
    np.testing.assert_array_equal(m[0], [[1, 0, 0], [0, 1, 0]])   # empty: identity
    assert m[1, 0, 1] == 0.0                                  # no shear from a zero variance
    out = Deskew().forward(x)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], 0.0)
    cx, cy = moments(out[1, 0])[:2]
    assert abs(cx - C) < 1e-4 and abs(cy - C) < 1e-4         # only recentred
    assert out[2].max() == 0.0


def test_channels_share_one_transform_and_values_stay_in_range(rng):
    x = rng.random((4, 3, H, W)).astype(np.float32)
    out = Deskew().forward(x)
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= x.max()
    single = Deskew().forward(x[:, :1] + x[:, 1:2] + x[:, 2:])   # the mass is the channels' sum
    np.testing.assert_allclose(out.sum(axis=1, keepdims=True), single, rtol=1e-5, atol=1e-5)


def test_a_deskewing_model_puts_the_layer_first_and_its_gradients_check(rng):
    specs = [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2},
             {"type": "relu"}, {"type": "dense", "units": 4}]
    model = build_model(specs, input_shape=(1, 9, 9), rng=rng, dtype=np.float64, deskew=True)
    assert isinstance(model.layers[0], Deskew)
    assert [n for n, _, _ in model.parameters()] == ["1.W", "1.b", "4.W", "4.b"]
    x, y = rng.random((3, 1, 9, 9)), rng.integers(0, 4, 3)
    errors = check_model_gradients(model, SoftmaxCrossEntropy(), x, y)
    assert max(errors.values()) < 1e-6, errors
    with pytest.raises(RuntimeError, match="before every layer with parameters"):
        model.layers[0].backward(np.zeros((3, 1, 9, 9)))


def test_the_config_key():
    base = {"model": {"layers": [{"type": "dense", "units": 10}]}}
    assert validate(base)["model"]["deskew"] is False
    assert validate({"model": {**base["model"], "deskew": True}})["model"]["deskew"] is True
    with pytest.raises(ConfigError, match="deskew"):
        validate({"model": {**base["model"], "deskew": "yes"}})
