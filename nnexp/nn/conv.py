"""2-D convolution by im2col and one matrix product.

Images are (N, C, H, W): batch, channels, rows, columns.  A window of size k,
stride s, padding p on an input of size H gives (floor mode, as PyTorch)

    OH = (H + 2p - k) // s + 1
"""

from __future__ import annotations

import numpy as np

from .arrays import array_module
from .init import INITS
from .layers import Layer, check_float_dtype, check_sizes_and_init

__all__ = ["Conv2D", "im2col", "col2im", "pair", "window_output_size"]


def pair(v, name: str, layer: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (rows, cols), each >= minimum; ValueError otherwise."""
    values = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(values) != 2 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= minimum for d in values
    ):
        raise ValueError(f"{layer}: {name} must be an integer >= {minimum} (or a pair of them), got {v!r}")
    return int(values[0]), int(values[1])


def window_output_size(shape: tuple, kernel: tuple, stride: tuple, padding: tuple,
                       layer: str) -> tuple[int, int]:
    """(OH, OW) for a per-sample (C, H, W) input; ValueError if the window does not fit."""
    if len(shape) != 3:
        raise ValueError(f"{layer} needs a (channels, height, width) input, got shape {tuple(shape)}")
    _, H, W = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(f"{layer}: a {kh}x{kw} window does not fit the {H}x{W} input"
                         + (f" (padded to {H + 2 * ph}x{W + 2 * pw})" if ph or pw else ""))
    return (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def im2col(xp: np.ndarray, kernel: tuple, stride: tuple) -> np.ndarray:
    """The windows of the padded images xp (N, C, Hp, Wp) as rows of a matrix.

    Returns cols (N*OH*OW, C*kh*kw): row (n, oh, ow) holds the window that
    output pixel (oh, ow) of image n sees,

        cols[(n, oh, ow), (c, i, j)] = xp[n, c, s*oh + i, s*ow + j]

    ordered (c, i, j) like the trailing axes of a (O, C, kh, kw) kernel.
    """
    (kh, kw), (sh, sw) = kernel, stride
    # windows[n, c, oh, ow, i, j] = xp[n, c, sh*oh + i, sw*ow + j]: a view, no copy yet
    sliding = array_module(xp).lib.stride_tricks.sliding_window_view
    windows = sliding(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    N, C, OH, OW = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(N * OH * OW, C * kh * kw)


def col2im(dcols: np.ndarray, xp_shape: tuple, kernel: tuple, stride: tuple,
           out_hw: tuple) -> np.ndarray:
    """The adjoint of im2col: every entry of dcols (N*OH*OW, C*kh*kw) is added
    to the padded pixel it was read from.  A pixel seen by several windows
    collects one term per window.  Returns dxp of shape xp_shape."""
    (kh, kw), (sh, sw), (OH, OW) = kernel, stride, out_hw
    N, C = xp_shape[:2]
    d = dcols.reshape(N, OH, OW, C, kh, kw)
    dxp = array_module(dcols).zeros(xp_shape, dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            # all windows at once for the offset (i, j): a strided slice of dxp
            dxp[:, :, i:i + sh * OH:sh, j:j + sw * OW:sw] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library).

        y[n, o, oh, ow] = b[o] + sum_{c,i,j} W[o, c, i, j] * xp[n, c, s*oh + i, s*ow + j]

    xp is x zero-padded by ``padding`` on each side.

    Shapes:  x (N, C, H, W)   W (O, C, kh, kw)   b (O,)   y (N, O, OH, OW)

    im2col turns the convolution into one matrix product.  With
    cols = im2col(xp) (M = N*OH*OW rows, K = C*kh*kw columns) and the kernel
    as a matrix W2 = W.reshape(O, K):

        Y = cols W2^T + b        (M, O), then reshaped to (N, O, OH, OW)

    Backward is the Dense layer's, with G = dL/dY (M, O):

        dL/dW2   = G^T cols      (O, K)
        dL/db    = sum_m G[m]    (O,)
        dL/dcols = G W2          (M, K), and dL/dx = col2im(dL/dcols), unpadded

    Initial weights: ``init`` with fan_in = C*kh*kw and fan_out = O
    (``he``: N(0, sqrt(2 / (C*kh*kw)))); biases start at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 init: str = "he", rng: np.random.Generator | None = None, dtype=np.float32) -> None:
        super().__init__()
        check_sizes_and_init("Conv2D", init, in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D", 1)
        self.stride = pair(stride, "stride", "Conv2D", 1)
        self.padding = pair(padding, "padding", "Conv2D", 0)
        self.init = init
        self.dtype = check_float_dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        kh, kw = self.kernel_size
        # the initialisers make a (fan_in, fan_out) matrix; its transpose is W2 (O, K)
        W2T, b = INITS[init](self.in_channels * kh * kw, self.out_channels, rng, self.dtype)
        W = np.ascontiguousarray(W2T.T).reshape(self.out_channels, self.in_channels, kh, kw)
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.cols: np.ndarray | None = None
        self.xp_shape: tuple | None = None

    def checked_input(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """x in the layer's dtype and the output's (OH, OW), or ValueError for a wrong shape."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2D expects input of shape (N, {self.in_channels}, H, W), got {x.shape}")
        out_hw = window_output_size(x.shape[1:], self.kernel_size, self.stride, self.padding, "Conv2D")
        return x.astype(self.dtype, copy=False), out_hw

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x, (OH, OW) = self.checked_input(x)
        ph, pw = self.padding
        xp = array_module(x).pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        self.cols, self.xp_shape = im2col(xp, self.kernel_size, self.stride), xp.shape
        W2 = self.params["W"].reshape(self.out_channels, -1)
        Y = self.cols @ W2.T + self.params["b"]                       # (N*OH*OW, O)
        return Y.reshape(len(x), OH, OW, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.cols is None:
            raise RuntimeError("Conv2D.backward called before forward")
        O, OH, OW = dout.shape[1:]
        G = dout.transpose(0, 2, 3, 1).reshape(-1, O)                 # (N*OH*OW, O)
        W2 = self.params["W"].reshape(O, -1)
        self.grads["W"][...] = (G.T @ self.cols).reshape(self.params["W"].shape)
        self.grads["b"][...] = G.sum(axis=0)
        dxp = col2im(G @ W2, self.xp_shape, self.kernel_size, self.stride, (OH, OW))
        (ph, pw), (Hp, Wp) = self.padding, self.xp_shape[2:]
        return dxp[:, :, ph:Hp - ph, pw:Wp - pw]

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ValueError(f"Conv2D({self.in_channels}, {self.out_channels}) needs a "
                             f"({self.in_channels}, H, W) input, got shape {input_shape}")
        OH, OW = window_output_size(input_shape, self.kernel_size, self.stride, self.padding, "Conv2D")
        return (self.out_channels, OH, OW)

    def __repr__(self) -> str:
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, init={self.init!r})")
