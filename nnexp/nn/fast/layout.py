"""Memory layouts of image batches, and element-wise passes along them.

The fast engine keeps activations in the layout that produced them: a
Winograd convolution's output is (N, H, W, C) in memory, seen as an
(N, C, H, W) array.  Element-wise layers work on such arrays as one long row
per sample, and backward passes allocate gradients in the forward's layout.
The values never depend on the layout; the speed does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_channels_last", "empty_nchw", "per_sample_rows", "from_rows", "times_mask"]


def is_channels_last(x: np.ndarray) -> bool:
    """True for an (N, C, H, W) array whose memory is (N, H, W, C): the layout
    the Winograd convolution produces (conv.py) and passes on as a transposed view."""
    return (x.ndim == 4 and x.shape[1] > 1 and x.strides[1] == x.itemsize
            and x.strides[3] == x.itemsize * x.shape[1])


def empty_nchw(shape: tuple, dtype, channels_last: bool) -> np.ndarray:
    """np.empty of an (N, C, H, W) shape, laid out (N, H, W, C) in memory when
    ``channels_last``.  Backward passes allocate their gradients in the layout
    of the forward activations: NumPy's element-wise operations are slow on
    two arrays of different layouts."""
    if not channels_last:
        return np.empty(shape, dtype)
    N, C, H, W = shape
    return np.empty((N, H, W, C), dtype).transpose(0, 3, 1, 2)


def per_sample_rows(x: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
    """(rows, order): x's memory as a (samples, values per sample) view, and
    the axis order that memory is in (order[0] = 0), for elementwise work
    along long rows whatever the layout (channels-last included).  None when
    x is not one contiguous block with the samples outermost, or is empty."""
    if x.ndim == 0 or x.size == 0:
        return None
    order = [0] + sorted(range(1, x.ndim), key=lambda a: -x.strides[a])
    xt = x.transpose(order)
    return (xt.reshape(len(x), -1), order) if xt.flags.c_contiguous else None


def from_rows(rows: np.ndarray, shape: tuple, order: list[int]) -> np.ndarray:
    """The inverse of per_sample_rows: rows seen as an array of ``shape`` whose
    memory is in axis ``order``."""
    return rows.reshape([shape[a] for a in order]).transpose(np.argsort(order))


def times_mask(a: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a * mask for a boolean mask, in a's dtype (into out, or a new array in
    mask's layout).  The mask is converted to floats first, because NumPy's
    float-times-bool loop casts element by element (the same values either way)."""
    m = np.empty_like(mask, dtype=a.dtype)
    np.copyto(m, mask)
    return np.multiply(a, m, out=m if out is None else out)
