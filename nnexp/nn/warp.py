"""Resampling images through a geometric map: bilinear interpolation by inverse mapping.

Every output pixel asks where it came from in the input and reads that point
by bilinear interpolation (zero outside the image).  Pixel centres sit at
integer coordinates; ``x`` is the column, ``y`` the row (down).  The
augmentation (``nnexp.augment``) and the deskewing layer (``deskew.py``)
both warp images through it.
"""

from __future__ import annotations

import numpy as np

from .arrays import array_module

__all__ = ["warp", "bilinear"]


def warp(x: np.ndarray, matrices: np.ndarray, displacement: np.ndarray | None = None) -> np.ndarray:
    """Resample each image through its inverse-mapping matrix (bilinear, zero outside).

    Args:
        x: (N, C, H, W) floating images; channels share the sampling grid.
        matrices: (N, 2, 3) output ``(x, y, 1)`` -> input ``(x, y)``, as from
            ``nnexp.augment.affine_matrices``.
        displacement: optional (N, 2, H, W) offsets ``(dx, dy)`` in pixels, added
            to the input positions after the affine map (elastic distortion).

    Returns:
        A new (N, C, H, W) array of ``x``'s dtype.  Values stay within the range
        of ``x`` extended to 0 (the fill value): bilinear weights are a convex
        combination, and the final clip only removes float rounding.
    """
    n, c, h, w = x.shape
    xp = array_module(x)
    # Coordinates in the image's precision (float32 for float32 images): a few
    # 1e-6 px of rounding is harmless, and the time here goes mostly into
    # allocating and touching big temporaries, which float32 halves.
    ct = np.result_type(x.dtype, np.float32)
    m = xp.asarray(matrices).astype(ct, copy=False)
    xs, ys = xp.arange(w, dtype=ct), xp.arange(h, dtype=ct)[:, None]
    # Source coordinates of every output pixel for the whole batch, (N, H, W):
    # the x- and y-terms are small (N, 1, W) and (N, H, 1) arrays, and one
    # broadcast add makes the full grid.
    a = m[:, :, :, None, None]  # (N, 2, 3, 1, 1)
    sx = (a[:, 0, 0] * xs + a[:, 0, 2]) + a[:, 0, 1] * ys
    sy = (a[:, 1, 0] * xs + a[:, 1, 2]) + a[:, 1, 1] * ys
    if displacement is not None:
        displacement = xp.asarray(displacement)
        sx += displacement[:, 0]
        sy += displacement[:, 1]
    out = bilinear(x, sx, sy)
    # Rounding in the weights can overshoot by an ulp; keep the range promise exact.
    lo, hi = (min(float(x.min()), 0.0), max(float(x.max()), 0.0)) if x.size else (0.0, 0.0)  # range of x and 0
    return xp.clip(out, lo, hi, out=out)


def bilinear(x: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Sample (N, C, H, W) images at (N, H, W) source positions; zero outside.

    ``sx`` and ``sy`` are clipped in place.  The image sits in a zero border,
    one pixel wide at the top/left and two at the bottom/right; positions are
    clipped to [-1, W] x [-1, H], so all four neighbours are valid indices, a
    position far outside lands on the border with weight 1 (reads 0), and one
    just outside still blends with the edge pixel, as bilinear interpolation should.
    """
    n, c, h, w = x.shape
    xp = array_module(x)
    ph, pw = h + 3, w + 3
    padded = xp.zeros((n, c, ph, pw), dtype=x.dtype)
    padded[:, :, 1:h + 1, 1:w + 1] = x
    flat = padded.ravel()

    xp.clip(sx, -1, w, out=sx)
    xp.clip(sy, -1, h, out=sy)
    x0, y0 = xp.floor(sx), xp.floor(sy)
    fx = (sx - x0).astype(x.dtype, copy=False)[:, None]  # fractional parts, (N, 1, H, W)
    fy = (sy - y0).astype(x.dtype, copy=False)[:, None]
    # Flat index of the top-left neighbour: its image/channel plane, then padded
    # (row, col) = (y0 + 1, x0 + 1).  Integer arithmetic: exact for any image size.
    index = y0.astype(np.intp)
    index *= pw
    index += x0.astype(np.intp)
    plane = (xp.arange(n * c) * (ph * pw) + (pw + 1)).reshape(n, c, 1, 1)
    top_left = index[:, None] + plane  # (N, C, H, W): channels share the grid

    # Lerp along x on both rows, then along y; in place to spare temporaries.
    top, bottom = flat.take(top_left), flat.take(top_left + pw)
    top += fx * (flat.take(top_left + 1) - top)
    bottom += fx * (flat.take(top_left + (pw + 1)) - bottom)
    top += fy * (bottom - top)
    return top
