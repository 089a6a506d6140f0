"""Random data augmentation for image batches: affine warps and elastic distortion.

Each image gets its own random affine transform -- scale, shear, rotation about
the image centre, then a shift -- composed into one 2x3 matrix, plus optionally
an elastic distortion (Simard, Steinkraus & Platt 2003): a random uniform(-1, 1)
displacement field per image, smoothed by a Gaussian of standard deviation
``elastic_sigma`` pixels and multiplied by ``elastic_alpha``.  The warp is done
by inverse mapping: every output pixel asks where it came from in the input and
reads that point with bilinear interpolation (zero outside the image).

Conventions used throughout:

* pixel centres sit at integer coordinates; ``x`` is the column, ``y`` the row
  (down); the centre of an ``H x W`` image is ``((W-1)/2, (H-1)/2)``;
* a positive angle rotates counter-clockwise as the image is displayed, so a
  +90 degree rotation of a square image equals ``np.rot90(img)``;
* a positive shift ``(dx, dy)`` moves the content right and down;
* scale > 1 enlarges the content about the centre.

With ``elastic_alpha = 34, elastic_sigma = 4`` (Simard's MNIST setting) the
smoothed field moves pixels by about 1.4 px RMS per axis; the displacement is
roughly ``alpha / (2 * sqrt(pi) * sigma) / sqrt(3)`` px RMS, because smoothing
white noise with a normalised 2-D Gaussian divides its standard deviation by
``2 * sqrt(pi) * sigma``.  So ``alpha = 8, sigma = 4`` is a mild wobble
(about 0.3 px RMS, 1.4 px at most on a 28x28 image).  Elastic fields are not
area-preserving: they stretch and squeeze strokes locally, so the ink of a
digit changes by a few percent at alpha 8 and by up to ~40% at alpha 34.

Everything is batched: there is no Python loop over images or pixels.
"""

from __future__ import annotations

import math

import numpy as np

from .nn.arrays import array_module
from .nn.warp import warp

__all__ = [
    "AUGMENT_SPECS",
    "Augmenter",
    "affine_matrices",
    "elastic_displacement",
    "gaussian_smooth",
    "warp",
]

#: option -> (python type, default); what a config's ``augment`` section may hold.
AUGMENT_SPECS: dict[str, tuple[type, float]] = {
    "rotate": (float, 0.0),  # max degrees; angle uniform in [-rotate, rotate]
    "scale": (float, 0.0),  # factor uniform in [1 - scale, 1 + scale]
    "shift": (float, 0.0),  # max pixels; uniform in [-shift, shift] per axis
    "shear": (float, 0.0),  # max horizontal shear angle in degrees
    "elastic_alpha": (float, 0.0),  # elastic strength (Simard's alpha); 0 = off
    "elastic_sigma": (float, 4.0),  # Gaussian sigma (pixels) smoothing the field
    "hflip": (float, 0.0),  # probability of a left-right mirror (clothes, not digits)
    "p": (float, 1.0),  # probability that an image is augmented at all
}

# Gaussian kernels are cut at this many sigmas (as scipy.ndimage does by default).
_TRUNCATE = 4.0


# --------------------------------------------------------------------------- geometry


def affine_matrices(angle, scale, shear, shift, size: tuple[int, int], mirror=None) -> np.ndarray:
    """Inverse-mapping matrices for a batch of explicit affine transforms.

    The forward transform applied to the content is: scale by ``scale``, shear
    horizontally by ``shear`` degrees, rotate by ``angle`` degrees (all three
    about the image centre), then shift by ``shift``.  Returned is its inverse,
    which is what :func:`warp` needs: for an output pixel ``(x, y)``,
    ``M @ (x, y, 1)`` is the input position it is read from.

    Args:
        angle: (N,) degrees, counter-clockwise as displayed.
        scale: (N,) scale factors (> 0).
        shear: (N,) shear angles in degrees (x += tan(shear) * y).
        shift: (N, 2) shifts ``(dx, dy)`` in pixels (right, down).
        size: ``(H, W)`` of the images.
        mirror: optional (N,) booleans: mirror those images left-right (about
            the vertical centre line) before everything else.

    Scalars are broadcast over the batch (N = 1 when all are scalars).

    Returns:
        (N, 2, 3) float64 matrices mapping output ``(x, y, 1)`` to input ``(x, y)``.
    """
    angle, scale, shear = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (angle, scale, shear)))
    n = angle.shape[0]
    angle, shear = np.radians(angle), np.radians(shear)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n, 2))
    h, w = size
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])

    # Forward linear part L = R @ Sh @ S, built per image as (N, 2, 2).  With y
    # pointing down, a counter-clockwise (as displayed) rotation is [[c, s], [-s, c]].
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    shr = np.zeros((n, 2, 2))
    shr[:, 0, 0] = shr[:, 1, 1] = 1.0
    shr[:, 0, 1] = np.tan(shear)
    lin = (rot @ shr) * scale[:, None, None]  # scale is isotropic, so it commutes
    if mirror is not None:  # L @ diag(-1, 1): x -> -x about the centre, first
        lin[:, :, 0] *= np.where(np.broadcast_to(mirror, (n,)), -1.0, 1.0)[:, None]

    # Forward: dst = L (src - c) + c + t  =>  inverse: src = L^-1 (dst - c - t) + c.
    inv = np.linalg.inv(lin)
    offset = centre - np.einsum("nij,nj->ni", inv, centre + shift)
    return np.concatenate([inv, offset[:, :, None]], axis=2)


# --------------------------------------------------------------------------- elastic


def _gaussian_matrix(length: int, sigma: float) -> np.ndarray:
    """(length, length) matrix K with ``K @ v`` = ``v`` convolved with a Gaussian.

    Same result as ``np.convolve(v, kernel, mode="same")`` with a normalised
    kernel truncated at 4 sigma (zero padding at the ends); as a banded matrix
    the convolution runs over a whole batch of images as a stacked matmul.
    """
    radius = int(math.ceil(_TRUNCATE * sigma))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    offsets = np.arange(length)[:, None] - np.arange(length)[None, :]  # i - j
    inside = np.abs(offsets) <= radius
    return np.where(inside, kernel[np.clip(offsets + radius, 0, 2 * radius)], 0.0)


def gaussian_smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes, zero padding at the borders.

    Args:
        field: (..., H, W) floating array.
        sigma: standard deviation in pixels (> 0).

    Returns:
        A new (..., H, W) array (float32 stays float32, anything else becomes
        float64): the field convolved along H and along W.
    """
    shape = field.shape
    h, w = shape[-2:]
    dtype = np.result_type(field.dtype, np.float32)
    k_h = _gaussian_matrix(h, sigma).astype(dtype)
    k_w = _gaussian_matrix(w, sigma).astype(dtype)
    planes = np.asarray(field, dtype=dtype).reshape(-1, h, w)
    # K_h @ plane smooths every column, plane @ K_w every row (K is symmetric).
    # Stacked small matmuls on purpose: one big (rows, W) @ (W, W) product is
    # large enough for OpenBLAS to wake its threads, which costs more than the
    # work itself.
    return np.matmul(np.matmul(k_h, planes), k_w).reshape(shape)


def elastic_displacement(rng: np.random.Generator, n: int, size: tuple[int, int],
                         alpha: float, sigma: float) -> np.ndarray:
    """Random smooth displacement fields (Simard et al. 2003).

    Args:
        rng: the source of randomness.
        n: number of fields.
        size: ``(H, W)``.
        alpha: multiplies the smoothed uniform(-1, 1) field, giving pixels.
        sigma: Gaussian smoothing in pixels (> 0).

    Returns:
        (N, 2, H, W) float32 offsets ``(dx, dy)`` in pixels.
    """
    h, w = size
    # float32 throughout: half the memory traffic, and 1e-7 relative is plenty here.
    noise = rng.random((n, 2, h, w), dtype=np.float32)
    noise *= 2
    noise -= 1  # uniform(-1, 1)
    field = gaussian_smooth(noise, sigma)
    field *= alpha
    return field


# --------------------------------------------------------------------------- augmenter


def _check(name: str, value, lo: float, hi: float, *, lo_open=False, hi_open=False) -> float:
    """Return ``value`` as a float, or raise ValueError naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"augment: {name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= lo if lo_open else value < lo
    too_high = value >= hi if hi_open else value > hi
    if not math.isfinite(value) or too_low or too_high:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        hi_text = "inf" if math.isinf(hi) else f"{hi:g}"
        raise ValueError(f"augment: {name} must be in {left}{lo:g}, {hi_text}{right}, got {value!r}")
    return value


class Augmenter:
    """Random affine + elastic augmentation of (N, C, H, W) image batches.

    Args:
        rotate: max rotation in degrees, in [0, 180]; angle ~ U(-rotate, rotate).
        scale: max relative scale change, in [0, 1); factor ~ U(1 - scale, 1 + scale).
        shift: max shift in pixels (>= 0), drawn independently for x and y.
        shear: max horizontal shear angle in degrees, in [0, 90).
        elastic_alpha: elastic distortion strength (>= 0; 0 turns it off).
        elastic_sigma: smoothness of the elastic field in pixels (> 0).
        hflip: probability, in [0, 1], that an image is mirrored left-right.
        p: probability, in [0, 1], that a given image is augmented at all.

    Raises:
        ValueError: an argument is not a finite number in its range; the
            message names the argument.
    """

    def __init__(self, rotate=0.0, scale=0.0, shift=0.0, shear=0.0,
                 elastic_alpha=0.0, elastic_sigma=4.0, hflip=0.0, p=1.0):
        inf = math.inf
        self.rotate = _check("rotate", rotate, 0, 180)
        self.scale = _check("scale", scale, 0, 1, hi_open=True)  # factor must stay > 0
        self.shift = _check("shift", shift, 0, inf)
        self.shear = _check("shear", shear, 0, 90, hi_open=True)  # tan(90) is infinite
        self.elastic_alpha = _check("elastic_alpha", elastic_alpha, 0, inf)
        self.elastic_sigma = _check("elastic_sigma", elastic_sigma, 0, inf, lo_open=True)
        self.hflip = _check("hflip", hflip, 0, 1)
        self.p = _check("p", p, 0, 1)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in AUGMENT_SPECS)
        return f"Augmenter({opts})"

    @property
    def is_identity(self) -> bool:
        """True when no image can change: every strength is 0, or p == 0."""
        strengths = (self.rotate, self.scale, self.shift, self.shear, self.elastic_alpha, self.hflip)
        return self.p == 0 or not any(strengths)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a batch.

        Args:
            x: (N, C, H, W) float32 or float64 images, typically in [0, 1].
            rng: the only source of randomness (same seed -> same output).

        Returns:
            A new (N, C, H, W) array of ``x``'s dtype; ``x`` is not modified.
        """
        xp = array_module(x)   # the images may be on the GPU; the random draws stay on the host
        x = xp.asarray(x)
        if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"augment: expected (N, C, H, W) floating images, "
                             f"got shape {x.shape} dtype {x.dtype}")
        if self.is_identity:
            return x.copy()
        n, _, h, w = x.shape

        # Draw every parameter for every image, whatever p is, so the stream of
        # random numbers (and hence a seeded run) does not depend on the mask.
        chosen = rng.random(n) < self.p
        angle = rng.uniform(-self.rotate, self.rotate, n)
        factor = rng.uniform(1 - self.scale, 1 + self.scale, n)
        shear = rng.uniform(-self.shear, self.shear, n)
        shift = rng.uniform(-self.shift, self.shift, (n, 2))
        displacement = None
        if self.elastic_alpha > 0:
            displacement = elastic_displacement(rng, n, (h, w), self.elastic_alpha,
                                                self.elastic_sigma)
        # drawn last, and only when asked for: configs without hflip keep their stream
        mirror = rng.random(n) < self.hflip if self.hflip > 0 else np.zeros(n, dtype=bool)

        if chosen.all():  # the common p == 1 case: no fancy-index copies
            return warp(x, affine_matrices(angle, factor, shear, shift, (h, w), mirror), displacement)
        if not chosen.any():
            return x.copy()
        matrices = affine_matrices(angle[chosen], factor[chosen], shear[chosen],
                                   shift[chosen], (h, w), mirror[chosen])
        if displacement is not None:
            displacement = displacement[chosen]
        out, chosen = x.copy(), xp.asarray(chosen)
        out[chosen] = warp(x[chosen], matrices, displacement)
        return out
