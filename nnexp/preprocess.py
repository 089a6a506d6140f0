"""Turn a user's picture of a digit into an MNIST-like 28x28 input.

MNIST digits are bright ink on a black background, scaled so the longer side
of the ink fits a 20x20 box (anti-aliased, so edges are grey) and pasted into
a 28x28 field so that the pixels' centre of mass sits at the centre. A model
trained on MNIST only works on other pictures if they look the same, so
:func:`to_mnist` repeats those steps:

1. polarity  - make the digit bright on a dark background;
2. contrast  - background -> 0, ink -> 1, faint paper noise -> 0;
3. crop      - to the bounding box of the ink;
4. resize    - longer side to 20 px, keeping the aspect ratio (NumPy only);
5. centre    - paste into 28x28 with the centre of mass at (14, 14).

Everything that can go wrong with a user's file is raised as
:class:`~nnexp.errors.DataError`, so the CLI prints one clean line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# Pillow is a hard dependency of matplotlib, so it is always installed with us.
from PIL import Image, ImageOps

from nnexp.errors import DataError

MAX_SIDE = 4096  # larger inputs are almost surely not a digit; refuse to decode them
CANVAS = 28  # MNIST image side
BOX = 20  # longer side of the ink after scaling, as in MNIST
MIN_CONTRAST = 0.1  # ink must differ from the background by 10% of full range
NOISE_LEVEL = 0.15  # after normalising, values below this are paper/sensor noise

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"


# --------------------------------------------------------------------------- reading


def read_image(path) -> np.ndarray:
    """Read an image file as grayscale.

    Handles whatever Pillow decodes (PNG first of all): gray, gray+alpha, RGB,
    RGBA, palette (with or without transparency), 1-, 8- and 16-bit. Alpha is
    composited over white, so a dark digit on a transparent canvas becomes a
    dark digit on white paper.

    Returns:
        (H, W) float32 array in [0, 1], 0 = black, 1 = white.

    Raises:
        DataError: missing file, not an image, truncated/corrupt data, empty
            image, or larger than 4096x4096. The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        # Escalate Pillow's decompression-bomb warning so a huge image is refused
        # before its pixels are decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(path, img.size)
                img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
                gray = _to_gray(img)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: image is too large (limit {MAX_SIDE}x{MAX_SIDE})") from exc
    except Exception as exc:  # noqa: BLE001
        # Pillow's decoders fail with a zoo of types (UnidentifiedImageError,
        # OSError "truncated", SyntaxError "broken PNG", ValueError, EOFError,
        # zlib.error, struct.error...). Whatever it is, the file is at fault.
        raise DataError(f"{path}: cannot read image ({_describe(exc)})") from exc
    return gray


def _check_size(path: Path, size: tuple[int, int]) -> None:
    """Refuse empty or oversized images before decoding them. size = (W, H)."""
    width, height = size
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: image is empty ({width}x{height} pixels)")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise DataError(
            f"{path}: image is too large ({width}x{height}; limit {MAX_SIDE}x{MAX_SIDE})"
        )


def _to_gray(img: Image.Image) -> np.ndarray:
    """Decode a Pillow image to a (H, W) float32 gray array in [0, 1]."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_gray(np.asarray(img), mode)
    has_alpha = "A" in mode or "a" in mode or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return _composite(rgba[..., :3] @ _LUMA, rgba[..., 3])
    if mode != "L":
        img = img.convert("L")  # RGB, palette, 1-bit, CMYK, YCbCr...
    return np.asarray(img, dtype=np.float32) / 255.0


def _high_depth_to_gray(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit ("I;16*"), 32-bit integer ("I") or float ("F") gray to [0, 1].

    Pillow decodes 16-bit gray PNGs as "I;16" or "I" depending on version; both
    use the full 0..65535 range. Other sources (TIFF) may exceed it, in which
    case the image's own maximum is used as white.
    """
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    arr = np.clip(arr, 0.0, None)
    if mode == "F":
        white = max(1.0, float(arr.max(initial=0.0)))
    else:
        white = max(65535.0, float(arr.max(initial=0.0)))
    return (arr / white).astype(np.float32)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite (H, W) gray with (H, W) alpha over white, both in [0, 1].

    A white digit drawn on a transparent canvas vanishes over white; if that
    leaves no contrast while the alpha channel has some, composite over black
    instead, so the shape carried by alpha is kept.
    """
    over_white = gray * alpha + (1.0 - alpha)
    if np.ptp(over_white) < MIN_CONTRAST <= np.ptp(alpha):
        return (gray * alpha).astype(np.float32)
    return over_white.astype(np.float32)


def _describe(exc: Exception) -> str:
    """One-line description of a decoding error for the user."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


# ------------------------------------------------------------------- MNIST-ification


def load_digit(path) -> np.ndarray:
    """Read an image file and make it MNIST-like: (28, 28) float32 in [0, 1]."""
    img = read_image(path)  # its errors already name the file
    try:
        return to_mnist(img)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def to_mnist(img: np.ndarray) -> np.ndarray:
    """Make a grayscale picture of one digit look like an MNIST sample.

    Args:
        img: (H, W) grayscale in [0, 1], either polarity.

    Returns:
        (28, 28) float32 in [0, 1]: bright digit on black, longer side of the
        ink 20 px, centre of mass at pixel (14, 14).

    Raises:
        DataError: not a non-empty 2-D image, or no digit (too little contrast).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2 or img.size == 0:
        raise DataError(f"expected a non-empty 2-D grayscale image, got shape {img.shape}")
    img = np.clip(np.nan_to_num(img, nan=0.0), 0.0, 1.0)
    ink = normalise_contrast(to_light_on_dark(img))
    patch = resize_longer_side(crop_to_ink(ink), BOX)
    # Tiny or thin strokes get diluted by the anti-aliasing; MNIST ink peaks at
    # full white, so restore the peak.
    patch /= patch.max()
    return paste_centred(patch, CANVAS).astype(np.float32)


def _border(img: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels of a (H, W) image, flattened."""
    return np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])


def to_light_on_dark(img: np.ndarray) -> np.ndarray:
    """Invert (H, W) img if it is dark ink on light paper.

    The border is mostly background, so its median is the background level; if
    that is nearer the bright end of the image's range, the ink is dark.
    """
    background = np.median(_border(img))
    if background > (img.min() + img.max()) / 2:
        return 1.0 - img
    return img


def normalise_contrast(img: np.ndarray) -> np.ndarray:
    """Map background to 0 and ink to 1 in a light-on-dark (H, W) image.

    The ink level is a high percentile of the clearly-bright pixels rather than
    the maximum, so one hot pixel cannot leave the whole digit faint. Values
    below NOISE_LEVEL are dropped so paper texture does not count as ink.

    Raises:
        DataError: the image is (nearly) uniform, i.e. no digit.
    """
    background = np.median(_border(img))
    peak = img.max()
    if peak - background < MIN_CONTRAST:
        raise DataError("no digit found (the image is blank or has almost no contrast)")
    bright = img[img > background + 0.5 * (peak - background)]
    ink_level = np.percentile(bright, 90)
    scaled = (img - background) / (ink_level - background)
    return np.clip((scaled - NOISE_LEVEL) / (1.0 - NOISE_LEVEL), 0.0, 1.0)


def crop_to_ink(img: np.ndarray) -> np.ndarray:
    """Crop (H, W) img to the bounding box of its non-zero pixels -> (h, w)."""
    rows = np.flatnonzero(img.any(axis=1))
    cols = np.flatnonzero(img.any(axis=0))
    if rows.size == 0:
        raise DataError("no digit found (nothing stands out from the background)")
    return img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def resize_longer_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize (h, w) img so max(h, w) becomes `size`, keeping the aspect ratio.

    Returns:
        (h', w') array with max(h', w') == size and min side >= 1.
    """
    h, w = img.shape
    scale = size / max(h, w)
    out_h = max(1, int(round(h * scale)))
    out_w = max(1, int(round(w * scale)))
    # Separable filter: rows then columns, each a small matrix product.
    return _resample_matrix(h, out_h) @ img @ _resample_matrix(w, out_w).T


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a 1-D anti-aliased linear resample.

    A tent filter centred on each output pixel (in input coordinates). When
    shrinking, the tent is widened to the output pixel spacing so every input
    pixel contributes (no aliasing); when enlarging it is plain linear
    interpolation. Rows are normalised to sum to 1, which also clamps the edges.
    """
    step = n_in / n_out
    half_width = max(step, 1.0)
    out_centres = (np.arange(n_out) + 0.5) * step
    in_centres = np.arange(n_in) + 0.5
    distance = np.abs(in_centres[None, :] - out_centres[:, None]) / half_width
    weights = np.clip(1.0 - distance, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def paste_centred(patch: np.ndarray, size: int) -> np.ndarray:
    """Paste (h, w) patch into a (size, size) zero canvas, centre of mass centred.

    The centre is pixel index size/2 (14 for MNIST) on both axes. The shift is
    rounded to whole pixels (as MNIST did); whatever would fall off the canvas
    is clipped.
    """
    centre = size / 2
    h, w = patch.shape
    total = patch.sum()
    com_y = patch.sum(axis=1) @ np.arange(h) / total
    com_x = patch.sum(axis=0) @ np.arange(w) / total
    top = int(np.floor(centre - com_y + 0.5))
    left = int(np.floor(centre - com_x + 0.5))

    canvas = np.zeros((size, size), dtype=patch.dtype)
    y0, y1 = max(top, 0), min(top + h, size)
    x0, x1 = max(left, 0), min(left + w, size)
    canvas[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas
