"""Data augmentation: exact geometry on explicit transforms, statistics on random ones."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from nnexp.augment import (
    AUGMENT_SPECS,
    Augmenter,
    affine_matrices,
    elastic_displacement,
    gaussian_smooth,
    warp,
)

H = W = 28
ALL_ON = dict(rotate=15.0, scale=0.1, shift=2.5, shear=10.0, elastic_alpha=8.0, elastic_sigma=4.0)


def digit_like(h: int = H, w: int = W, dtype=np.float32) -> np.ndarray:
    """An MNIST-like "0": a soft elliptical stroke centred in the image, (1, 1, h, w) in [0, 1]."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    radius = np.sqrt(((xs - cx) / 5.0) ** 2 + ((ys - cy) / 7.5) ** 2)  # 1 on the stroke
    img = np.exp(-0.5 * ((radius - 1.0) / 0.22) ** 2)
    return img.astype(dtype)[None, None]


def random_images(n: int = 16, c: int = 1, dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, H, W)).astype(dtype)


def centre_of_mass(img: np.ndarray) -> np.ndarray:
    """(x, y) centre of mass of a 2-D image."""
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return np.array([(xs * img).sum(), (ys * img).sum()]) / img.sum()


def shift_matrix(dx: float, dy: float, size=(H, W)) -> np.ndarray:
    return affine_matrices([0.0], [1.0], [0.0], [[dx, dy]], size)


def roll_zero(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """np.roll of the last two axes with zero fill instead of wrap-around."""
    out = np.roll(img, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


# ----------------------------------------------------------------------------- API


def test_specs_match_the_constructor():
    params = inspect.signature(Augmenter).parameters
    assert list(AUGMENT_SPECS) == list(params)
    for name, (typ, default) in AUGMENT_SPECS.items():
        assert typ is float
        assert params[name].default == default
        assert getattr(Augmenter(), name) == default


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_and_range_preserved(dtype):
    x = random_images(32, c=2, dtype=dtype)
    y = Augmenter(**ALL_ON)(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == dtype
    assert y is not x
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert not np.allclose(y, x)


def test_same_seed_same_output_different_seed_different_output():
    x = random_images()
    aug = Augmenter(**ALL_ON)
    a = aug(x, np.random.default_rng(7))
    b = aug(x, np.random.default_rng(7))
    c = aug(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs", [{}, {"p": 0.0, **ALL_ON}])
def test_identity_when_off(kwargs):
    x = random_images()
    aug = Augmenter(**kwargs)
    assert aug.is_identity
    y = aug(x, np.random.default_rng(0))
    assert y is not x
    np.testing.assert_array_equal(y, x)


def test_is_identity_false_when_any_strength_is_on():
    for name in ("rotate", "scale", "shift", "shear", "elastic_alpha", "hflip"):
        assert not Augmenter(**{name: 0.5}).is_identity
    assert Augmenter(elastic_sigma=9.0).is_identity  # sigma alone distorts nothing


def test_hflip_mirrors_exactly_that_fraction_of_images():
    x = random_images(400)
    y = Augmenter(hflip=1.0)(x, np.random.default_rng(0))
    np.testing.assert_allclose(y, x[..., ::-1], atol=1e-6)  # integer sample points: exact mirror
    y = Augmenter(hflip=0.5)(x, np.random.default_rng(1))
    mirrored = np.all(np.abs(y - x[..., ::-1]) < 1e-6, axis=(1, 2, 3))
    unchanged = np.all(y == x, axis=(1, 2, 3))
    assert np.all(mirrored ^ unchanged) and 0.4 < mirrored.mean() < 0.6


def test_hflip_off_keeps_the_random_stream_of_older_configs():
    x = random_images(8)
    a = Augmenter(rotate=10, shift=2)(x, np.random.default_rng(3))
    b = Augmenter(rotate=10, shift=2, hflip=0.0)(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_p_augments_about_that_fraction_and_leaves_the_rest_untouched():
    x = random_images(400)
    y = Augmenter(rotate=20, shift=2, p=0.3)(x, np.random.default_rng(0))
    same = np.all(y == x, axis=(1, 2, 3))
    assert 0.2 < 1 - same.mean() < 0.4


def test_input_is_never_modified():
    for kwargs in (ALL_ON, {**ALL_ON, "p": 0.5}, {}):
        x = random_images(8)
        before = x.copy()
        Augmenter(**kwargs)(x, np.random.default_rng(0))
        np.testing.assert_array_equal(x, before)
    disp = np.ones((8, 2, H, W), np.float32)
    disp_before = disp.copy()
    warp(x, shift_matrix(1, 1).repeat(8, axis=0), disp)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(disp, disp_before)


def test_channels_share_the_grid():
    x = np.repeat(random_images(4), 3, axis=1)
    y = Augmenter(**ALL_ON)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(y[:, 0], y[:, 1])
    np.testing.assert_array_equal(y[:, 0], y[:, 2])


# ----------------------------------------------------------------------------- exact geometry


def test_scale_one_shift_zero_is_identity():
    x = random_images(4, dtype=np.float64)
    m = affine_matrices(np.zeros(4), np.ones(4), np.zeros(4), np.zeros((4, 2)), (H, W))
    np.testing.assert_allclose(m, np.tile([[1.0, 0, 0], [0, 1, 0]], (4, 1, 1)))
    np.testing.assert_allclose(warp(x, m), x, atol=1e-12)


@pytest.mark.parametrize("dx, dy", [(2, 0), (0, 3), (-4, 1), (5, -2), (-1, -1)])
def test_integer_shift_is_roll_with_zero_fill(dx, dy):
    """Positive dx moves the content right, positive dy down."""
    x = random_images(2)
    y = warp(x, shift_matrix(dx, dy).repeat(2, axis=0))
    np.testing.assert_allclose(y, roll_zero(x, dx, dy), atol=1e-6)


def test_shift_out_of_the_image_gives_zeros():
    x = random_images(1)
    for dx, dy in [(W, 0), (0, -H), (1000, 1000), (-W - 0.5, 3)]:
        assert np.all(warp(x, shift_matrix(dx, dy)) == 0)


def test_half_pixel_shift_averages_neighbours():
    x = random_images(1, dtype=np.float64)
    y = warp(x, shift_matrix(0.5, 0))
    expected = 0.5 * (x[..., :, 1:] + x[..., :, :-1])  # output column j reads input column j - 0.5
    np.testing.assert_allclose(y[..., :, 1:], expected, atol=1e-12)
    np.testing.assert_allclose(y[..., :, 0], 0.5 * x[..., :, 0], atol=1e-12)  # half off the edge


@pytest.mark.parametrize("angle, k", [(90, 1), (-90, -1), (180, 2), (270, 3)])
def test_right_angle_rotation_is_rot90(angle, k):
    """Positive angles turn counter-clockwise as displayed, like np.rot90."""
    x = random_images(3)
    y = warp(x, affine_matrices([angle] * 3, 1.0, 0.0, (0, 0), (H, W)))
    np.testing.assert_allclose(y, np.rot90(x, k, axes=(2, 3)), atol=1e-6)


def test_half_turn_of_a_non_square_image_turns_about_its_centre():
    x = np.random.default_rng(0).random((2, 1, 10, 17)).astype(np.float32)
    y = warp(x, affine_matrices([180, 180], 1.0, 0.0, (0, 0), (10, 17)))
    np.testing.assert_allclose(y, x[:, :, ::-1, ::-1], atol=1e-6)


def test_shear_moves_rows_by_tan_times_offset_from_centre():
    # A shear of 45 degrees moves row y by (y - centre_y) pixels; centre row 3 of 7 stays put.
    x = np.random.default_rng(0).random((1, 1, 7, 16))
    y = warp(x, affine_matrices([0], [1], [45], [(0, 0)], (7, 16)))
    for row in range(7):
        expected = roll_zero(x[0, 0, row:row + 1], row - 3, 0)  # one row, as a (1, W) image
        np.testing.assert_allclose(y[0, 0, row:row + 1], expected, atol=1e-9)


def test_scale_enlarges_about_the_centre_and_scales_mass_by_area():
    blob = digit_like(dtype=np.float64)
    for factor in (0.9, 1.1):
        y = warp(blob, affine_matrices([0], [factor], [0], [(0, 0)], (H, W)))[0, 0]
        assert y.sum() == pytest.approx(factor**2 * blob.sum(), rel=0.02)
        np.testing.assert_allclose(centre_of_mass(y), [(W - 1) / 2, (H - 1) / 2], atol=1e-6)


# ----------------------------------------------------------------------------- random transforms


def test_small_random_transforms_keep_mass_and_centre():
    x = np.repeat(digit_like(), 64, axis=0)
    mass = x[0, 0].sum()
    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    # Rotations and scales about the centre keep a centred digit's centre of mass put.
    y = Augmenter(rotate=15, scale=0.1)(x, np.random.default_rng(0))
    for img in y[:, 0]:
        assert np.linalg.norm(centre_of_mass(img) - centre) < 0.25
    # Rotation, shift and shear keep the area, so the ink; scale 0.04 changes it
    # by at most 1.04**2 - 1 = 8.2%.
    y = Augmenter(rotate=10, scale=0.04, shift=2, shear=5)(x, np.random.default_rng(1))
    np.testing.assert_allclose(y.sum(axis=(1, 2, 3)), mass, rtol=0.10)


def test_shift_moves_the_centre_of_mass_by_at_most_the_shift():
    x = np.repeat(digit_like(), 64, axis=0)
    y = Augmenter(shift=3)(x, np.random.default_rng(0))
    moves = np.array([centre_of_mass(img) for img in y[:, 0]]) - [(W - 1) / 2, (H - 1) / 2]
    assert np.abs(moves).max() <= 3 + 1e-3
    assert np.abs(moves).max() > 2  # the range is used, not just tiny shifts


# ----------------------------------------------------------------------------- elastic


def test_gaussian_smooth_is_a_zero_padded_convolution_along_each_axis():
    field = np.random.default_rng(0).uniform(-1, 1, (3, 16, 20))
    sigma = 1.5
    taps = np.arange(-6, 7)  # 4 sigma, as the module truncates
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    expected = np.apply_along_axis(np.convolve, 2, field, kernel, mode="same")
    expected = np.apply_along_axis(np.convolve, 1, expected, kernel, mode="same")
    np.testing.assert_allclose(gaussian_smooth(field, sigma), expected, atol=1e-12)


def test_elastic_field_is_smooth_and_scaled_by_alpha():
    d = elastic_displacement(np.random.default_rng(0), 32, (H, W), alpha=34.0, sigma=4.0)
    assert d.shape == (32, 2, H, W)
    step = max(np.abs(np.diff(d, axis=2)).max(), np.abs(np.diff(d, axis=3)).max())
    assert step < 0.3 * np.abs(d).max()  # neighbours move together
    # Smoothing uniform(-1, 1) noise with a 2-D Gaussian divides its RMS by about
    # 2 sqrt(pi) sigma (less near the zero-padded border): ~1.4 px for alpha 34.
    rms = np.sqrt(np.mean(d[:, :, 8:-8, 8:-8] ** 2))
    assert rms == pytest.approx(34 / (2 * math.sqrt(math.pi) * 4) / math.sqrt(3), rel=0.25)


def test_elastic_changes_the_image_a_little():
    x = np.repeat(digit_like(), 16, axis=0)
    y = Augmenter(elastic_alpha=8.0, elastic_sigma=4.0)(x, np.random.default_rng(0))
    diff = np.abs(y - x).mean(axis=(1, 2, 3))
    assert np.all(diff > 0)
    assert diff.mean() < 0.05  # the mean pixel of this digit is ~0.17
    # The field stretches and squeezes locally, so the ink changes a little
    # (a few percent on average at alpha 8; up to ~40% at Simard's alpha 34).
    mass_change = np.abs(y.sum(axis=(1, 2, 3)) / x[0].sum() - 1)
    assert mass_change.mean() < 0.05


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("name, value", [
    ("rotate", -1.0), ("rotate", 181.0), ("rotate", math.inf),
    ("scale", -0.1), ("scale", 1.0),
    ("shift", -2.0), ("shift", math.nan),
    ("shear", -1.0), ("shear", 90.0),
    ("elastic_alpha", -8.0),
    ("elastic_sigma", 0.0), ("elastic_sigma", -1.0),
    ("p", -0.1), ("p", 1.5), ("hflip", -0.5), ("hflip", 2.0),
    ("rotate", "10"), ("p", True), ("shift", None),
])
def test_invalid_arguments_raise_value_error_naming_them(name, value):
    with pytest.raises(ValueError, match=name):
        Augmenter(**{name: value})


@pytest.mark.parametrize("x", [
    np.zeros((2, 28, 28), np.float32),  # no channel axis
    np.zeros((2, 1, 28, 28), np.uint8),  # not floating point
])
def test_bad_batches_raise_value_error(x):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Augmenter(rotate=5)(x, np.random.default_rng(0))
