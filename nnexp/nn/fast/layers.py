"""Fast variants of Dense, Flatten and ReLU: the same values as the reference
layers, computed with fewer passes and in the activations' memory layout."""

from __future__ import annotations

import numpy as np

from ..activations import ReLU
from ..layers import Dense, Flatten
from .layout import empty_nchw, from_rows, is_channels_last, per_sample_rows, times_mask

__all__ = ["FastDense", "FastFlatten", "FastReLU"]


class FastDense(Dense):
    """Dense with results written into the gradient arrays, no dL/dx for the
    first layer, and an evaluation path with a batch-norm folded in."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.x = self.checked_input(x)
        y = self.x @ self.params["W"]
        y += self.params["b"]
        return y

    def infer(self, x: np.ndarray, W: np.ndarray, b: np.ndarray, relu: bool = False) -> np.ndarray:
        """Evaluation-mode x W + b with other weights (a batch-norm folded in,
        see FastBatchNorm.fold), and max(., 0) in place when ``relu``."""
        y = self.checked_input(x) @ W
        y += b
        return np.maximum(y, 0, out=y) if relu else y

    def backward(self, dout: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """As Dense.backward; ``need_input_grad=False`` (the first layer, whose
        input is the data) skips the (N, in) product for dL/dx and returns None."""
        if self.x is None:
            raise RuntimeError("Dense.backward called before forward")
        np.matmul(self.x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        return dout @ self.params["W"].T if need_input_grad else None


class FastFlatten(Flatten):
    """Flatten whose backward hands dL/dx back in the input's memory layout."""

    channels_last = False

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.channels_last = is_channels_last(x)
        return super().forward(x, training)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if not self.channels_last:
            return dout.reshape(self.x_shape)
        dx = empty_nchw(self.x_shape, dout.dtype, True)
        dx[...] = dout.reshape(self.x_shape)
        return dx


class FastReLU(ReLU):
    """ReLU over the activation's memory as one row per sample, in its layout.

    max(x, 0) is taken against a row of zeros one sample long (NumPy's maximum
    against an array is faster than against the scalar 0, with the same
    values, -0.0 and NaN included).  Training keeps the mask; evaluation keeps
    x and makes the mask only if a backward asks for it.
    """

    x: np.ndarray | None = None
    zeros = np.zeros(0)   # replaced, never written into: a row of zeros for the current shape

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.positive, self.x = (x > 0, None) if training else (None, x)
        found = per_sample_rows(x) if x.dtype.kind == "f" else None
        if found is None:
            return np.maximum(x, 0)
        rows, order = found
        if self.zeros.shape != rows.shape[1:] or self.zeros.dtype != x.dtype:
            self.zeros = np.zeros(rows.shape[1:], x.dtype)
        return from_rows(np.maximum(rows, self.zeros), x.shape, order)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        mask = self.x > 0 if self.positive is None else self.positive
        return times_mask(dout, mask)
