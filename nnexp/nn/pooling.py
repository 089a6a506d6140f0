"""Pooling: max and average over k x k windows, and the global average.

Images are (N, C, H, W).  Windows of size k with stride s (default k, so
they tile the image) give OH = (H - k) // s + 1 outputs per column (and
likewise OW); rows or columns that no window reaches are ignored.
"""

from __future__ import annotations

import numpy as np

from .arrays import array_module
from .conv import pair, window_output_size
from .layers import Layer

__all__ = ["MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "pool_windows"]


def pool_windows(x: np.ndarray, kernel: tuple, stride: tuple) -> np.ndarray:
    """The windows of x (N, C, H, W) as a view (N, C, OH, OW, kh*kw): entry
    (n, c, oh, ow, i*kw + j) is x[n, c, s*oh + i, s*ow + j]."""
    kh, kw = kernel
    windows = array_module(x).lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride[0], ::stride[1]]
    return windows.reshape(*windows.shape[:4], kh * kw)


class _Pool2D(Layer):
    """What MaxPool2D and AvgPool2D share: the window geometry."""

    def __init__(self, kernel_size=2, stride=None) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name, 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name, 1)
        self.x_shape: tuple | None = None
        self.xp = np   # the array module of the last input

    def out_hw(self, x: np.ndarray) -> tuple[int, int]:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (N, C, H, W) input, got {x.shape}")
        return window_output_size(x.shape[1:], self.kernel_size, self.stride, (0, 0), type(self).__name__)

    def scatter(self, per_offset, out_hw: tuple, dtype) -> np.ndarray:
        """dL/dx from per_offset(o) = each window's dL/d(its element o), (N, C, OH, OW):
        summed into the input pixels the windows read (a pixel may be in several)."""
        (kh, kw), (sh, sw), (OH, OW) = self.kernel_size, self.stride, out_hw
        dx = self.xp.zeros(self.x_shape, dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * OH:sh, j:j + sw * OW:sw] += per_offset(i * kw + j)
        return dx

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        OH, OW = window_output_size(input_shape, self.kernel_size, self.stride, (0, 0), type(self).__name__)
        return (input_shape[0], OH, OW)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2D(_Pool2D):
    """y[n, c, oh, ow] = max of x over the window.   x (N, C, H, W) -> y (N, C, OH, OW).

    Backward: each window passes dL/dy to the element that is its maximum
    and 0 to the others.  On a tie the first maximum in window order (row by
    row) takes it, so exactly one element per window does, as in PyTorch.
    """

    def __init__(self, kernel_size=2, stride=None) -> None:
        super().__init__(kernel_size, stride)
        self.argmax: np.ndarray | None = None   # (N, C, OH, OW): offset of each window's maximum

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.out_hw(x)
        windows = pool_windows(x, self.kernel_size, self.stride)
        self.x_shape, self.argmax, self.xp = x.shape, windows.argmax(axis=-1), array_module(x)
        return self.xp.take_along_axis(windows, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.argmax is None:
            raise RuntimeError("MaxPool2D.backward called before forward")
        return self.scatter(lambda o: dout * (self.argmax == o), dout.shape[2:], dout.dtype)


class AvgPool2D(_Pool2D):
    """y[n, c, oh, ow] = mean of x over the window.   x (N, C, H, W) -> y (N, C, OH, OW).

    Backward: every element of a window gets dL/dy / (kh*kw), summed over the
    windows it belongs to.
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.out_hw(x)
        self.x_shape, self.xp = x.shape, array_module(x)
        dtype = x.dtype if x.dtype.kind == "f" else np.float64
        return pool_windows(x, self.kernel_size, self.stride).mean(axis=-1, dtype=dtype)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        share = dout / (self.kernel_size[0] * self.kernel_size[1])
        return self.scatter(lambda o: share, dout.shape[2:], dout.dtype)


class GlobalAvgPool2D(Layer):
    """y[n, c] = mean over (h, w) of x[n, c].   x (N, C, H, W) -> y (N, C).

    Backward: dL/dx[n, c, h, w] = dL/dy[n, c] / (H*W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.x_shape: tuple | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool2D expects (N, C, H, W) input, got {x.shape}")
        self.x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        H, W = self.x_shape[2:]
        return array_module(dout).broadcast_to((dout / (H * W))[:, :, None, None], self.x_shape).copy()

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAvgPool2D needs a (channels, height, width) input, "
                             f"got shape {tuple(input_shape)}")
        return (input_shape[0],)
