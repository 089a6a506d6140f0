"""Tests for nnexp.preprocess: user PNG -> MNIST-like 28x28 input."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from nnexp.errors import DataError
from nnexp.preprocess import load_digit, read_image, to_mnist

# ----------------------------------------------------------------------- helpers


def ring_digit(height: int, width: int) -> np.ndarray:
    """A thick elliptical "0", off-centre, as a (H, W) bool mask (True = ink).

    Off-centre and with a blank margin so cropping and centring have work to do.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(float) + 0.5
    cy, cx = 0.45 * height, 0.55 * width
    ry, rx = 0.3 * height, 0.2 * width
    r = np.hypot((yy - cy) / ry, (xx - cx) / rx)
    return (r > 0.6) & (r < 1.0)


def one_digit(height: int, width: int) -> np.ndarray:
    """A thick "1" with a flag, as a (H, W) bool mask. Tall and thin."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float) + 0.5
    stem = (np.abs(xx - 0.5 * width) < 0.08 * width) & (np.abs(yy - 0.5 * height) < 0.4 * height)
    flag = (np.abs((yy - 0.1 * height) + (xx - 0.5 * width)) < 0.06 * height) & (
        xx < 0.5 * width
    ) & (yy < 0.3 * height)
    return stem | flag


def save_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """Save a uint8 (H, W) or (H, W, C) array as PNG with Pillow."""
    Image.fromarray(np.ascontiguousarray(pixels), mode=mode).save(path)
    return path


def render(mask: np.ndarray, style: str) -> tuple[np.ndarray, str | None]:
    """Render a (H, W) ink mask in one of several colour styles -> (uint8 pixels, mode)."""
    ink = mask[..., None]
    if style == "light_on_dark":
        return np.where(mask, 255, 0).astype(np.uint8), None
    if style == "dark_on_light":
        return np.where(mask, 0, 255).astype(np.uint8), None
    if style == "rgb":  # blue ballpoint on cream paper
        return np.where(ink, [30, 40, 160], [250, 240, 220]).astype(np.uint8), None
    if style == "rgba":  # dark ink on a transparent canvas; hidden RGB must not matter
        rgba = np.where(ink, [20, 20, 20, 255], [0, 0, 0, 0]).astype(np.uint8)
        return rgba, "RGBA"
    if style == "rgba_white_ink":  # white ink on transparent: composite over white is blank
        rgba = np.where(ink, [255, 255, 255, 255], [255, 255, 255, 0]).astype(np.uint8)
        return rgba, "RGBA"
    raise ValueError(style)


def check_mnist_like(out: np.ndarray) -> None:
    """Assert the MNIST conventions on a (28, 28) result."""
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() == pytest.approx(1.0)
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    longer = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert abs(longer - 20) <= 1
    yy, xx = np.mgrid[0:28, 0:28]
    com = np.array([(out * yy).sum(), (out * xx).sum()]) / out.sum()
    assert np.all(np.abs(com - 14.0) <= 1.0), com


# ------------------------------------------------------------------ happy paths

STYLES = ["light_on_dark", "dark_on_light", "rgb", "rgba", "rgba_white_ink"]
SIZES = [(400, 300), (12, 9), (300, 400)]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", [ring_digit, one_digit])
def test_load_digit_is_mnist_like_and_style_independent(tmp_path, style, size, shape):
    mask = shape(*size)
    pixels, mode = render(mask, style)
    out = load_digit(save_png(tmp_path / f"{style}.png", pixels, mode))
    check_mnist_like(out)

    reference = to_mnist(mask.astype(np.float32))  # white-on-black floats, no file
    assert np.abs(out - reference).max() < 0.05


def test_dark_on_light_equals_light_on_dark(tmp_path):
    mask = ring_digit(120, 90)
    light = load_digit(save_png(tmp_path / "a.png", *render(mask, "light_on_dark")))
    dark = load_digit(save_png(tmp_path / "b.png", *render(mask, "dark_on_light")))
    np.testing.assert_allclose(light, dark, atol=1e-6)


def test_to_mnist_ignores_paper_noise():
    rng = np.random.default_rng(0)
    clean = 1.0 - ring_digit(200, 150)  # dark on white
    noisy = np.clip(clean - rng.uniform(0, 0.08, clean.shape), 0, 1)  # greyish speckle
    np.testing.assert_allclose(to_mnist(noisy), to_mnist(clean), atol=0.05)


def test_to_mnist_keeps_faint_thin_strokes_bright():
    img = np.full((400, 400), 0.8)  # grey paper
    img[50:350, 198:201] = 0.6  # faint 3 px pencil line
    out = to_mnist(img)
    check_mnist_like(out)


def test_to_mnist_rejects_non_2d():
    with pytest.raises(DataError):
        to_mnist(np.zeros((3, 4, 5)))
    with pytest.raises(DataError):
        to_mnist(np.zeros((0, 4)))


# ------------------------------------------------------------------ read_image modes


def test_read_image_8bit_gray_and_rgb(tmp_path):
    gray = np.array([[0, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(read_image(save_png(tmp_path / "g.png", gray)), gray / 255, atol=1e-6)
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(
        read_image(save_png(tmp_path / "c.png", rgb)), [[0.299, 0.587, 1.0]], atol=0.01
    )


def test_read_image_16bit(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)  # Pillow writes mode I;16 as 16-bit PNG
    out = read_image(path)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]], atol=1e-3)


def test_read_image_gray_alpha_composites_over_white(tmp_path):
    la = np.array([[[0, 255], [0, 0], [0, 128]]], dtype=np.uint8)  # black: opaque, clear, half
    out = read_image(save_png(tmp_path / "la.png", la, "LA"))
    np.testing.assert_allclose(out, [[0.0, 1.0, 127 / 255]], atol=0.01)


def test_read_image_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * 759)
    img.putdata([0, 1, 2])
    img.save(tmp_path / "p.png")
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), [[0.0, 1.0, 0.299]], atol=0.01)

    img.save(tmp_path / "pt.png", transparency=0)  # black index becomes transparent
    np.testing.assert_allclose(read_image(tmp_path / "pt.png"), [[1.0, 1.0, 0.299]], atol=0.01)


def test_read_image_1bit(tmp_path):
    img = Image.new("1", (2, 1))
    img.putdata([0, 255])
    img.save(tmp_path / "b.png")
    np.testing.assert_allclose(read_image(tmp_path / "b.png"), [[0.0, 1.0]])


# ------------------------------------------------------------------ failures


def test_blank_image_is_rejected(tmp_path):
    path = save_png(tmp_path / "blank.png", np.full((50, 40), 255, dtype=np.uint8))
    with pytest.raises(DataError, match="no digit found") as info:
        load_digit(path)
    assert "blank.png" in str(info.value)


def test_almost_blank_image_is_rejected():
    with pytest.raises(DataError, match="no digit found"):
        to_mnist(np.full((30, 30), 0.5) + np.eye(30) * 0.03)


def test_text_file_named_png_is_rejected(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(DataError, match="notes.png.*cannot read image"):
        load_digit(path)


def test_truncated_png_is_rejected(tmp_path):
    rng = np.random.default_rng(0)
    full = save_png(tmp_path / "full.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        load_digit(cut)


def test_empty_and_missing_files_are_rejected(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(DataError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="not a file"):
        read_image(tmp_path)


def test_huge_image_is_rejected(tmp_path):
    path = save_png(tmp_path / "wide.png", np.zeros((1, 4097), dtype=np.uint8))
    with pytest.raises(DataError, match="too large"):
        read_image(path)


# ------------------------------------------------------------------ property test

small_images = st.integers(1, 60).flatmap(
    lambda h: st.integers(1, 60).flatmap(
        lambda w: st.sampled_from([(h, w), (h, w, 3)]).flatmap(
            lambda shape: arrays(np.uint8, shape)
        )
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pixels=small_images)
def test_any_small_png_gives_28x28_or_data_error(pixels):
    with tempfile.TemporaryDirectory() as tmp:
        path = save_png(Path(tmp) / "x.png", pixels)
        try:
            out = load_digit(path)
        except DataError:
            return
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
