"""Deskewing: straighten each image's slant before the network sees it.

A handwritten digit leans; its slant shows in the second moments of the ink.
With the ink's intensity as mass, centre of mass (cx, cy), vertical variance
var_y and covariance cov_xy, the horizontal shear

    x' - c = (x - cx) - alpha (y - cy),   y' - c = y - cy,   alpha = cov_xy / var_y

makes the covariance of the output zero (cov' = cov_xy - alpha var_y) and puts
the centre of mass at the image centre c. It is the classic MNIST
preprocessing (LeCun et al.'s table lists deskewed variants; Ciresan et al.
2012 train committee members on differently normalised inputs). Here it is a
parameter-free first layer, so every path that runs the model (training,
evaluation, `nnexp predict`, ensembles) applies it the same way, and a model
trained on deskewed digits differs in its mistakes from one trained on the
raw ones: that is what an ensemble needs.
"""

from __future__ import annotations

import numpy as np

from .warp import warp
from .arrays import array_module
from .layers import Layer

#: |alpha| beyond this is not a slant but a degenerate image (a thin
#: horizontal stroke has var_y ~ 0); such images are only recentred.
MAX_SHEAR = 1.0


def skew_matrices(x: np.ndarray) -> np.ndarray:
    """Inverse-mapping matrices (output (x, y, 1) -> input (x, y)) that deskew
    and recentre each image.

    Args:
        x: (N, C, H, W) non-negative images; the channels' sum is the mass.

    Returns:
        (N, 2, 3) float64 matrices for :func:`~nnexp.nn.warp.warp`. An empty
        image (no mass) gets the identity.
    """
    n, _, h, w = x.shape
    xp = array_module(x)
    mass_map = x.sum(axis=1, dtype=xp.float64)                         # (N, H, W)
    mass = mass_map.sum(axis=(1, 2))
    safe = xp.where(mass > 0, mass, 1.0)
    xs, ys = xp.arange(w, dtype=xp.float64), xp.arange(h, dtype=xp.float64)
    col, row = mass_map.sum(axis=1), mass_map.sum(axis=2)               # (N, W), (N, H)
    cx, cy = col @ xs / safe, row @ ys / safe
    dx, dy = xs[None, :] - cx[:, None], ys[None, :] - cy[:, None]       # (N, W), (N, H)
    var_y = xp.einsum("nh,nh->n", row, dy * dy) / safe
    cov = xp.einsum("nhw,nh,nw->n", mass_map, dy, dx) / safe
    slanted = var_y > 1e-6
    alpha = xp.where(slanted, cov / xp.where(slanted, var_y, 1.0), 0.0)
    alpha[xp.abs(alpha) > MAX_SHEAR] = 0.0
    empty = mass <= 0
    cx[empty], cy[empty] = (w - 1) / 2, (h - 1) / 2
    # Inverse map: y = y' - c_y + cy, x = x' - c_x + cx + alpha (y' - c_y).
    c_x, c_y = (w - 1) / 2, (h - 1) / 2
    m = xp.zeros((n, 2, 3))
    m[:, 0, 0] = 1.0
    m[:, 0, 1] = alpha
    m[:, 0, 2] = cx - c_x - alpha * c_y
    m[:, 1, 1] = 1.0
    m[:, 1, 2] = cy - c_y
    return m


class Deskew(Layer):
    """(N, C, H, W) -> (N, C, H, W): each image sheared upright and its centre
    of mass moved to the centre (bilinear resampling, zero outside).

    A fixed transform of the data, not a learned one: it has no parameters
    and no backward. It must come before every layer with parameters, where
    :class:`~nnexp.nn.model.Sequential` never asks for an input gradient.
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        return warp(x, skew_matrices(x))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise RuntimeError("deskew has no backward: it must come before every layer with parameters")

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"deskew needs (channels, height, width) images, got shape {input_shape}")
        return tuple(input_shape)
