"""The fast engine's pooling: the same values as nnexp.nn.pooling's layers,
computed with a running maximum over strided slices, a special path for the
common 2x2 max-pool, and gradients in the input's memory layout."""

from __future__ import annotations

import numpy as np

from ..conv import window_output_size
from ..pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .conv import windows_at
from .layout import empty_nchw, is_channels_last
from .threads import small_ufunc_buffers

__all__ = ["FastMaxPool2D", "FastAvgPool2D", "FastGlobalAvgPool2D"]


class _FastPool:
    """What FastMaxPool2D and FastAvgPool2D share: dL/dx in the input's memory
    layout, and assignment instead of accumulation where the windows tile the input."""

    _channels_last = False   # the input's memory layout, for dx (see empty_nchw)

    def _geometry(self, x: np.ndarray) -> tuple[int, int]:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (N, C, H, W) input, got {x.shape}")
        self._channels_last = is_channels_last(x)
        return window_output_size(x.shape[1:], self.kernel_size, self.stride, (0, 0),
                                   type(self).__name__)

    def _tiles(self, x_shape: tuple, out_hw: tuple) -> bool:
        """True when the windows tile the input exactly (stride = kernel, no
        leftover rows/columns): every input pixel is in exactly one window, so
        backward can *assign* each offset's slice -- no zero fill, no adds."""
        (kh, kw), (OH, OW) = self.kernel_size, out_hw
        return self.stride == self.kernel_size and x_shape[2:] == (kh * OH, kw * OW)

    def _offsets(self):
        kh, kw = self.kernel_size
        return [(i, j) for i in range(kh) for j in range(kw)]

    def _empty_dx(self, dtype, zero: bool) -> np.ndarray:
        """dL/dx's array, in the input's memory layout; zeroed if ``zero``."""
        dx = empty_nchw(self.x_shape, dtype, self._channels_last)
        if zero:
            dx.fill(0)
        return dx


class FastMaxPool2D(_FastPool, MaxPool2D):
    """MaxPool2D (same values, same tie rule: the first maximum in window order).

    The maximum is a running np.maximum over the kh*kw strided slices of the
    input (NumPy reduces over short strided axes slowly).  Where the windows
    tile the input, backward assigns instead of accumulating (see _tiles).

    In training mode the forward also records, per offset, which windows take
    their maximum there (kh*kw boolean masks of y's shape: 1 byte per input
    pixel); it is cheaper here, while x is still in cache, than in backward.

    The common 2x2, stride 2 pool on an even-sized input has its own path
    (_forward_2x2): the max of each pair of columns, for both rows of a window
    at once, then the max of the two rows, remembering with one comparison per
    step which side won.
    """

    # MaxPool2D's constructor; what a forward keeps starts as these
    _winner: np.ndarray | None = None
    _right: np.ndarray | None = None   # 2x2 path: the masks it keeps
    _bottom: np.ndarray | None = None

    def _is_2x2(self, x_shape: tuple, out_hw: tuple) -> bool:
        return self.kernel_size == (2, 2) and self._tiles(x_shape, out_hw)

    def _forward_2x2(self, x: np.ndarray, training: bool) -> np.ndarray:
        """2x2 windows tiling x (N, C, 2*OH, 2*OW) -> y (N, C, OH, OW).

        x6[n, c, oh, i, ow, j] = x[n, c, 2*oh + i, 2*ow + j] (a view).  Ties go
        to the first maximum in window order, as in the general path: a strict
        ">" keeps the left column, then the top row, when the values are equal.
        """
        N, C, H, W = x.shape
        x6 = x.reshape(N, C, H // 2, 2, W // 2, 2)
        rows = np.maximum(x6[..., 0], x6[..., 1])         # (N, C, OH, 2, OW): max per row
        y = np.maximum(rows[:, :, :, 0], rows[:, :, :, 1])  # (N, C, OH, OW)
        if training:
            self._right = x6[..., 1] > x6[..., 0]               # right column won, per row
            self._bottom = rows[:, :, :, 1] > rows[:, :, :, 0]  # bottom row won
            self._winner, self.x_shape = None, x.shape
        return y

    def _backward_2x2(self, dout: np.ndarray) -> np.ndarray:
        """dL/dx for _forward_2x2: dout to the winning row, then to the winning
        column of that row (x - x*1 = 0 and x - x*0 = x exactly)."""
        N, C, OH, OW = dout.shape
        if self._channels_last:
            drows = np.empty((N, OH, 2, OW, C), dtype=dout.dtype).transpose(0, 4, 1, 2, 3)
        else:
            drows = np.empty((N, C, OH, 2, OW), dtype=dout.dtype)
        dx = self._empty_dx(dout.dtype, zero=False)
        dx6 = dx.reshape(N, C, OH, 2, OW, 2)
        with small_ufunc_buffers():   # strided passes (threads.py)
            np.multiply(dout, self._bottom, out=drows[:, :, :, 1])
            np.subtract(dout, drows[:, :, :, 1], out=drows[:, :, :, 0])
            np.multiply(drows, self._right, out=dx6[..., 1])
            np.subtract(drows, dx6[..., 1], out=dx6[..., 0])
        return dx

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        out_hw = self._geometry(x)
        if self._is_2x2(x.shape, out_hw):
            return self._forward_2x2(x, training)
        offsets = self._offsets()
        y = windows_at(x, *offsets[0], self.stride, out_hw).copy()
        for i, j in offsets[1:]:
            np.maximum(y, windows_at(x, i, j, self.stride, out_hw), out=y)
        if not training:
            return y
        # winner[o]: windows whose maximum is at offset o.  Offsets are visited
        # in window order and a window, once claimed, is out, so on a tie only
        # the first maximum wins.
        winner = np.empty((len(offsets),) + y.shape, dtype=bool)
        unclaimed = np.ones(y.shape, dtype=bool)
        for o, (i, j) in enumerate(offsets):
            np.equal(windows_at(x, i, j, self.stride, out_hw), y, out=winner[o])
            winner[o] &= unclaimed
            unclaimed ^= winner[o]
        self._winner, self.x_shape, self._right = winner, x.shape, None
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        winner, x_shape = self._winner, self.x_shape
        if winner is None and self._right is not None:
            return self._backward_2x2(dout)
        if winner is None:
            raise RuntimeError("MaxPool2D.backward needs a forward with training=True before it")
        out_hw = dout.shape[2:]
        tiles = self._tiles(x_shape, out_hw)
        dx = self._empty_dx(dout.dtype, zero=not tiles)
        for o, (i, j) in enumerate(self._offsets()):
            target = windows_at(dx, i, j, self.stride, out_hw)
            if tiles:
                np.multiply(dout, winner[o], out=target)   # dL/dy to the winner, 0 elsewhere
            else:
                target += dout * winner[o]
        return dx


class FastAvgPool2D(_FastPool, AvgPool2D):
    """AvgPool2D as a running sum over the kh*kw strided slices."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        out_hw = self._geometry(x)
        dt = x.dtype if x.dtype.kind == "f" else np.float64
        offsets = self._offsets()
        y = windows_at(x, *offsets[0], self.stride, out_hw).astype(dt)  # a copy
        for i, j in offsets[1:]:
            y += windows_at(x, i, j, self.stride, out_hw)
        y *= 1.0 / len(offsets)
        self.x_shape = x.shape
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_shape, out_hw = self.x_shape, dout.shape[2:]
        offsets = self._offsets()
        share = dout * (1.0 / len(offsets))  # each element's part of dL/dy
        if self._tiles(x_shape, out_hw):
            dx = self._empty_dx(dout.dtype, zero=False)
            for i, j in offsets:
                windows_at(dx, i, j, self.stride, out_hw)[...] = share
        else:
            dx = self._empty_dx(dout.dtype, zero=True)
            for i, j in offsets:
                windows_at(dx, i, j, self.stride, out_hw)[...] += share
        return dx


class FastGlobalAvgPool2D(GlobalAvgPool2D):
    """GlobalAvgPool2D with dL/dx in the input's memory layout."""

    _channels_last = False

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool2D expects (N, C, H, W) input, got {x.shape}")
        self.x_shape, self._channels_last = x.shape, is_channels_last(x)
        N, C = x.shape[:2]
        return x.reshape(N, C, -1).mean(axis=2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        H, W = self.x_shape[2:]
        dx = empty_nchw(self.x_shape, dout.dtype, self._channels_last)
        dx[...] = (dout * (1.0 / (H * W)))[:, :, None, None]  # broadcast over (h, w)
        return dx
