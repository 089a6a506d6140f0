"""Convolution, pooling and batch normalisation layers (NCHW).

Same conventions as layers.py: ``forward(x, training)`` caches what
``backward(dout)`` needs, ``backward`` overwrites ``self.grads`` and returns
dL/dx, and ``output_shape`` maps a per-sample shape to a per-sample shape.
Images are (N, C, H, W): batch, channels, rows, columns.

Output size of a window of size k, stride s, padding p on an input of size H
(floor mode, as PyTorch):

    OH = (H + 2p - k) // s + 1

Everything here loops in Python only over the k*k offsets inside a window,
never over samples or pixels: for a fixed offset (i, j) the input elements
that meet it form one strided slice

    x[:, :, i : i + s*OH : s, j : j + s*OW : s]        (N, C, OH, OW)

so "all windows, offset (i, j)" is one vectorised NumPy operation.
"""

from __future__ import annotations

import math

import numpy as np

from . import winograd
from .threads import map_chunks, small_ufunc_buffers
from .init import INITS
from .layers import Layer, _check_float_dtype, check_sizes_and_init, empty_nchw, is_channels_last

__all__ = ["Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "BatchNorm"]

#: In evaluation mode Conv2D works through the batch in chunks whose column
#: matrix fits in this many bytes (an eval batch of 2000 MNIST images would
#: otherwise need a 0.9 GB matrix for a 16-channel 3x3 layer), shared among the cores
EVAL_CHUNK_BYTES = 2 * 2**20   # small enough for the cache, and to give every core chunks

#: Conv2D's ``algorithm`` choices; "auto" picks Winograd where it applies.
CONV_ALGORITHMS = ("auto", "im2col", "winograd")
#: "auto" uses Winograd from this many input channels up: its 16 products have
#: C as their inner dimension, and with 1-4 channels (a first layer) they are
#: tiny, so im2col (inner dimension 9*C) is as fast there.
WINOGRAD_MIN_CHANNELS = 8
#: Winograd works through the batch in chunks whose transformed tiles take
#: about this many bytes (they should stay in a core's L2 cache; see Conv2D).
WINOGRAD_CHUNK_BYTES = 1536 * 1024


def _pair(v, name: str, layer: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (rows, cols), each >= minimum."""
    pair = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(pair) != 2 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= minimum
        for d in pair
    ):
        raise ValueError(f"{layer}: {name} must be an integer >= {minimum} "
                         f"(or a pair of them), got {v!r}")
    return int(pair[0]), int(pair[1])


def _window_output_size(shape: tuple, kernel: tuple, stride: tuple, padding: tuple,
                        layer: str) -> tuple[int, int]:
    """(OH, OW) for a per-sample (C, H, W) input; ValueError if the window does not fit."""
    if len(shape) != 3:
        raise ValueError(f"{layer} needs a (channels, height, width) input, got shape {tuple(shape)}")
    _, H, W = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(
            f"{layer}: a {kh}x{kw} window does not fit the {H}x{W} input"
            + (f" (padded to {H + 2 * ph}x{W + 2 * pw})" if ph or pw else "")
        )
    return (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def _windows_at(x: np.ndarray, i: int, j: int, stride: tuple, out_hw: tuple) -> np.ndarray:
    """x[:, :, i + s*oh, j + s*ow] for all (oh, ow): the elements at offset (i, j) of
    every window, shape (N, C, OH, OW).  A view."""
    (sh, sw), (OH, OW) = stride, out_hw
    return x[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


# --------------------------------------------------------------------------
# Conv2D
# --------------------------------------------------------------------------


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every DL library) by im2col + one GEMM.

        y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] * xp[n, c, s*oh + i, s*ow + j]

    with xp the input zero-padded by ``padding`` on each side.

    Shapes:  x (N, C, H, W)    W (O, C, kh, kw)  [PyTorch's layout]
             b (O,)            y (N, O, OH, OW)

    im2col.  Write K = C*kh*kw (one window's values) and M = N*OH*OW (number of
    windows).  The column matrix ``cols`` (K, M) holds in column m the window
    that produces output pixel m, its rows ordered (c, i, j) -- the same order
    as W's trailing axes, so W.reshape(O, K) is W's matrix with no copy.  Then
    the whole layer is one matrix product:

        Y = W2 @ cols           W2 = W.reshape(O, K),  Y (O, M) = (O, N, OH, OW)

    Backward, with G = dL/dY (O, M) -- dout with its first two axes swapped:
        dL/dW2   = G @ cols.T          (O, K)
        dL/db    = G.sum(axis=1)       (O,)
        dL/dcols = W2.T @ G            (K, M)
    and dL/dx is dL/dcols scattered back: every column entry came from one
    input pixel, so col2im *adds* it there (a pixel shared by overlapping
    windows collects one term per window).

    Why (K, M) and not (M, K): with this layout the copy into ``cols`` moves
    image rows (for offset (i, j) and channel c, the N*OH*OW windows are one
    strided slice of the input, copied in OW-long runs), even for the
    1-channel first layer; the (M, K) layout writes runs of C elements, which
    measured 5x slower (13 vs 2.6 ms, 32 channels, 14x14, batch 128).  Both
    give one large GEMM (~200 GFLOP/s in float32 on the 2-core box); the price
    is a transpose of the small output (O, N, ...) -> (N, O, ...), fused with
    the bias add.  One GEMM per sample on an (N, K, OH*OW) layout, which needs
    no transposes, measured 1.4-1.6x slower for forward+backward on the
    16- and 32-channel layers (small GEMMs; dL/dW becomes a sum of N products).

    Memory.  In training mode ``cols`` (K*M floats, 4 bytes each: 58 MB for a
    16->32 3x3 layer on a batch of 128 MNIST images) is kept for backward, in
    a buffer reused from step to step (a fresh allocation this size costs page
    faults every time), and backward overwrites it with dL/dcols.  So: one
    backward per training forward.  In evaluation mode nothing is kept and the
    batch is processed in chunks of at most EVAL_CHUNK_BYTES, in a separate
    buffer, so an evaluation pass between a forward and its backward is safe.
    Backward after an evaluation-mode forward is an error.

    Weights: ``init`` as for Dense, with fan_in = C*kh*kw and fan_out = O
    (``he``: N(0, sqrt(2 / (C*kh*kw)))); biases start at zero.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype=np.float32,
        algorithm: str = "auto",
    ) -> None:
        super().__init__()
        check_sizes_and_init("Conv2D", init, in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2D", 1)
        self.stride = _pair(stride, "stride", "Conv2D", 1)
        self.padding = _pair(padding, "padding", "Conv2D", 0)
        self.init = init
        self.dtype = _check_float_dtype(dtype)
        self.algorithm = self._choose_algorithm(algorithm)
        rng = np.random.default_rng() if rng is None else rng
        kh, kw = self.kernel_size
        K = self.in_channels * kh * kw
        # INITS make a (fan_in, fan_out) matrix; its transpose is W2 (O, K).
        W, b = INITS[init](K, self.out_channels, rng, self.dtype)
        W = np.ascontiguousarray(W.T).reshape(self.out_channels, self.in_channels, kh, kw)
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self._scratch: dict[str, np.ndarray] = {}
        self._cols: np.ndarray | None = None   # (K, M), valid from forward to backward
        self._x_shape: tuple | None = None
        self._wino: tuple | None = None          # Winograd: (U, V), forward to backward
        self._x_channels_last = False

    def _choose_algorithm(self, algorithm: str) -> str:
        """Resolve "auto"; refuse "winograd" where F(2x2, 3x3) does not apply."""
        if algorithm not in CONV_ALGORITHMS:
            raise ValueError(f"Conv2D: algorithm must be one of {list(CONV_ALGORITHMS)}, "
                             f"got {algorithm!r}")
        fits = self.kernel_size == (3, 3) and self.stride == (1, 1)
        if algorithm == "winograd" and not fits:
            raise ValueError("Conv2D: algorithm 'winograd' needs kernel_size 3 and stride 1, "
                             f"got kernel_size {self.kernel_size}, stride {self.stride}")
        if algorithm == "auto":
            use = fits and self.in_channels >= WINOGRAD_MIN_CHANNELS
            return "winograd" if use else "im2col"
        return algorithm

    # -- buffers ------------------------------------------------------------

    def _buffer(self, name: str, shape: tuple) -> np.ndarray:
        """A scratch array of ``shape``, a view into a flat buffer kept between calls
        and grown when too small (batch sizes vary: the last batch, evaluation)."""
        size = math.prod(shape)
        buf = self._scratch.get(name)
        if buf is None or buf.size < size:
            buf = self._scratch[name] = np.empty(size, dtype=self.dtype)
        return buf[:size].reshape(shape)

    def _padded(self, x: np.ndarray, name: str = "padded") -> np.ndarray:
        """x zero-padded by (ph, pw) on each side; x itself when there is no padding.

        The padded array is kept and reused while the input shape stays the
        same: its border is still zero, only the interior is copied."""
        ph, pw = self.padding
        if ph == 0 and pw == 0:
            return x
        N, C, H, W = x.shape
        xp = self._scratch.get(name)
        if xp is None or xp.shape != (N, C, H + 2 * ph, W + 2 * pw):
            xp = self._scratch[name] = np.zeros((N, C, H + 2 * ph, W + 2 * pw), self.dtype)
        xp[:, :, ph:ph + H, pw:pw + W] = x
        return xp

    # -- forward ------------------------------------------------------------

    def _im2col(self, x: np.ndarray, cols: np.ndarray, out_hw: tuple, padded: str = "padded") -> None:
        """Fill cols (K, M) with the windows of x (N, C, H, W) (see the class
        docstring), padding x in the scratch buffer named ``padded``."""
        (kh, kw), (sh, sw), (OH, OW) = self.kernel_size, self.stride, out_hw
        N, C = x.shape[:2]
        xp = self._padded(x, padded)
        # windows[n, c, oh, ow, i, j] = xp[n, c, sh*oh + i, sw*ow + j]: a view, no copy
        windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
        windows = windows[:, :, ::sh, ::sw]  # keep every s-th window: (N, C, OH, OW, kh, kw)
        # cols[(c, i, j), (n, oh, ow)]: one copy, with the axes put in that order
        np.copyto(cols.reshape(C, kh, kw, N, OH, OW), windows.transpose(1, 4, 5, 0, 2, 3))

    def _gemm_bias(self, cols: np.ndarray, y: np.ndarray) -> None:
        """y (N, O, OH, OW) = W2 @ cols + b, through a scratch (O, M) product."""
        N, O = y.shape[:2]
        W2 = self.params["W"].reshape(O, -1)
        prod = self._buffer("prod", (O, cols.shape[1]))
        np.matmul(W2, cols, out=prod)
        # (O, N, P) -> (N, O, P), adding the bias during the transposing copy
        # (strided: 2x faster with small ufunc buffers, threads.py)
        with small_ufunc_buffers():
            np.add(prod.reshape(O, N, -1).transpose(1, 0, 2), self.params["b"][:, None],
                   out=y.reshape(N, O, -1))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if not training:
            return self.infer(x)
        x, (OH, OW) = self._checked(x)
        if self.algorithm == "winograd":
            return self._winograd_forward(x, (OH, OW), self.params["W"], self.params["b"], keep=True)
        N, K = x.shape[0], self.params["W"][0].size
        y = np.empty((N, self.out_channels, OH, OW), dtype=self.dtype)
        cols = self._buffer("cols", (K, N * OH * OW))
        self._im2col(x, cols, (OH, OW))
        self._gemm_bias(cols, y)
        self._cols, self._x_shape = cols, x.shape
        return y

    def infer(self, x: np.ndarray, W: np.ndarray | None = None, b: np.ndarray | None = None,
              relu: bool = False, pool: bool = False) -> np.ndarray:
        """Evaluation-mode output, optionally with other weights, max(., 0) and
        a 2x2 max-pool fused.

        Sequential's evaluation passes the weights with the next batch-norm
        folded in (BatchNorm.fold) and ``relu=True`` when a ReLU follows: the
        ReLU then runs on each chunk of the output while it is still in
        cache, instead of as two more passes over the whole activation.
        ``pool=True`` (only where can_pool says so) returns the 2x2, stride-2
        max-pool of the output instead: Winograd's 2x2 output tiles are the
        pooling windows, and the maximum commutes with the bias and the ReLU
        (both monotone per channel), so they run on a quarter of the values."""
        x, (OH, OW) = self._checked(x)
        W = self.params["W"] if W is None else W
        b = self.params["b"] if b is None else b
        if pool and not self.can_pool(x.shape[1:]):
            raise ValueError(f"{self!r} cannot fuse a 2x2 max-pool for input {x.shape[1:]}")
        if self.algorithm == "winograd":
            return self._winograd_forward(x, (OH, OW), W, b, keep=False, relu=relu, pool=pool)
        # Nothing to keep, so go through the batch in chunks whose column
        # matrix stays small (and reuse one buffer for all of them).  The
        # product is taken as cols^T @ W2^T (M, O): the output channels last,
        # with no transposing copy, and the layout a following Winograd layer
        # reads fastest (15% less time for a 32 -> 32 layer at 28x28).
        # The chunks are shared among the cores like Winograd's (threads.py).
        N, O, K = x.shape[0], self.out_channels, W[0].size
        W2T = W.reshape(O, K).T
        y = np.empty((N, OH, OW, O), dtype=self.dtype)
        step = max(1, EVAL_CHUNK_BYTES // (K * OH * OW * self.dtype.itemsize))

        def chunk(start: int, k: int) -> None:
            xs, ys = x[start:start + step], y[start:start + step].reshape(-1, O)
            cols = self._buffer(f"eval_cols@{k}", (K, len(xs) * OH * OW))
            self._im2col(xs, cols, (OH, OW), padded=f"eval_padded@{k}")
            np.matmul(cols.T, W2T, out=ys)
            ys += b
            if relu:
                np.maximum(ys, 0, out=ys)

        map_chunks(chunk, list(range(0, N, step)))
        return y.transpose(0, 3, 1, 2)

    def can_pool(self, input_shape: tuple) -> bool:
        """Whether infer(pool=True) works for (C, H, W) inputs: a Winograd layer
        with an even output size."""
        OH, OW = self.output_shape(input_shape)[1:]
        return self.algorithm == "winograd" and OH % 2 == 0 and OW % 2 == 0

    def _checked(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """x in our dtype and the output's (OH, OW), or ValueError for a wrong shape."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2D expects input of shape (N, {self.in_channels}, H, W), got {x.shape}"
            )
        out_hw = _window_output_size(x.shape[1:], self.kernel_size, self.stride,
                                     self.padding, "Conv2D")
        return x.astype(self.dtype, copy=False), out_hw

    # -- backward -----------------------------------------------------------

    def backward(self, dout: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Fill grads["W"], grads["b"]; return dL/dx (N, C, H, W).

        ``need_input_grad=False`` skips dL/dcols and col2im (the larger half of
        the work) and returns None: Sequential uses it for the first layer.
        """
        if self._wino is not None:
            return self._winograd_backward(dout, need_input_grad)
        cols = self._cols
        if cols is None:
            raise RuntimeError("Conv2D.backward needs a forward with training=True before "
                               "it (and runs once per forward: it overwrites the cached columns)")
        self._cols = None
        N, C, H, W = self._x_shape
        O, OH, OW = dout.shape[1:]
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        W2 = self.params["W"].reshape(O, -1)

        # G = dL/dY as (O, M): dout with N and O swapped, copied once.
        G = self._buffer("G", (O, N * OH * OW))
        np.copyto(G.reshape(O, N, OH, OW), dout.transpose(1, 0, 2, 3))
        # dL/dW2 = G cols^T, computed as its transpose cols G^T (K, O) and copied
        # (small): OpenBLAS runs that orientation 1.3-1.5x faster here (10.6 vs
        # 16.3 ms for 32->32 channels at 28x28, batch 128).
        dW2T = self._buffer("dW2T", (cols.shape[0], O))
        np.matmul(cols, G.T, out=dW2T)
        self.grads["W"].reshape(O, -1)[...] = dW2T.T
        np.sum(G, axis=1, out=self.grads["b"])                       # dL/db
        if not need_input_grad:
            return None

        dcols = np.matmul(W2.T, G, out=cols)   # (K, M); cols is no longer needed
        # col2im: dcols[(c, i, j), (n, oh, ow)] belongs to padded pixel
        # (n, c, s*oh + i, s*ow + j).  Loop over the kh*kw offsets; for each,
        # all windows at once.  The sum is accumulated in (C, N, H, W) memory
        # order, the order of dcols's rows, which measured 25% faster than
        # accumulating straight into (N, C, H, W); then one transposing copy
        # (always a copy: dxp is a scratch buffer that the next backward reuses).
        dxp = self._buffer("dxp", (C, N, H + 2 * ph, W + 2 * pw))
        dxp.fill(0)
        d6 = dcols.reshape(C, kh, kw, N, OH, OW)
        for i in range(kh):
            for j in range(kw):
                _windows_at(dxp, i, j, self.stride, (OH, OW))[...] += d6[:, i, j]
        dx = dxp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)  # drop the padding
        return dx.copy(order="C")

    # -- Winograd F(2x2, 3x3) (see winograd.py) -------------------------------
    #
    # The batch goes through in chunks of a few samples whose transformed
    # tiles (16 x the tiles' pixels x channels) fit in a core's L2 cache: the
    # ~40 whole-array passes of the transforms then run in cache (one pass over
    # the whole batch at once measured 2x slower, memory-bound).  Chunks are
    # independent, so they are shared among the cores (threads.py); each
    # worker thread has its own scratch buffers, named "...@k".

    def _winograd_forward(self, x: np.ndarray, out_hw: tuple, W: np.ndarray, b: np.ndarray,
                          keep: bool, relu: bool = False, pool: bool = False) -> np.ndarray:
        """y = conv(x) + b through F(2x2, 3x3).  Returns an (N, O, OH, OW) view of
        an (N, OH, OW, O) array: channels last, the layout the tiles produce,
        passed on as it is (elementwise layers keep it, the next Winograd conv
        wants it).  ``keep`` (training) keeps U and the transformed input V
        (4x the input's size, in a buffer reused from step to step) for
        backward; transforming each chunk again there instead measured 2-3%
        slower per training step (benchmark net, 2 shards).  ``relu`` and
        ``pool`` as in infer."""
        (N, C), O, (OH, OW) = x.shape[:2], self.out_channels, out_hw
        th, tw = winograd.tiles(OH, OW)
        U = winograd.kernel_transform(W)
        y = np.empty((N, th, tw, O) if pool else (N, OH, OW, O), dtype=self.dtype)
        xt = x.transpose(0, 2, 3, 1)                       # (N, H, W, C), a view
        step = self._winograd_chunk_size((th, tw))

        kept = self._buffer("wino_V_kept", (16, N, th, tw, C)) if keep else None  # V for backward
        # b for every pixel of a sample: the bias goes on as one long row per
        # sample (NumPy's broadcast over rows of O values measured 2-3x slower)
        bias_row = np.tile(b, math.prod(y.shape[1:3]))

        def chunk(s: int, k: int) -> None:
            n = min(step, N - s)
            V = self._transformed_input(xt[s:s + n], (th, tw), k,
                                        None if kept is None else kept[:, s:s + n])
            M = self._buffer(f"wino_M@{k}", (16, n, th, tw, O))
            np.matmul(V.reshape(16, -1, C), U, out=M.reshape(16, -1, O))
            out, cols = y[s:s + n], self._buffer(f"wino_out@{k}", (4, 2, n, th, tw, O))
            if pool:
                winograd.output_transform_max(M, out, cols, self._buffer(f"wino_max@{k}", out.shape))
            else:
                ys = self._buffer(f"wino_ys@{k}", (n, 2 * th, 2, tw, O))
                winograd.output_transform(M, ys, cols)
                winograd.join_columns(ys, out, (0, 0))
            rows = out.reshape(n, -1)
            np.add(rows, bias_row, out=rows)
            if relu:
                np.maximum(out, 0, out=out)

        map_chunks(chunk, list(range(0, N, step)))
        if keep:
            self._wino, self._x_shape = (U, kept), x.shape
            self._x_channels_last = is_channels_last(x)
        return y.transpose(0, 3, 1, 2)

    def _winograd_chunk_size(self, tiles: tuple) -> int:
        th, tw = tiles
        per_sample = 16 * th * tw * max(self.in_channels, self.out_channels) * self.dtype.itemsize
        return max(1, WINOGRAD_CHUNK_BYTES // per_sample)

    def _transformed_input(self, xt: np.ndarray, tiles: tuple, k: int,
                           V: np.ndarray | None = None) -> np.ndarray:
        """V (16, n, th, tw, C) of xt (n, H, W, C), into V or worker k's buffer:
        xt is zero-padded with its columns split by parity (split_columns; the
        padded buffer is kept, one per chunk size -- the last chunk is often
        smaller -- so its zero border is written once), then transformed."""
        (n, C), (th, tw) = (xt.shape[0], xt.shape[3]), tiles
        shape, name = (n, 2 * th + 2, 2, tw + 1, C), f"wino_xs@{k}:{n}"
        xs = self._scratch.get(name)
        if xs is None or xs.shape != shape:
            xs = self._scratch[name] = np.zeros(shape, self.dtype)
        winograd.split_columns(xt, xs, self.padding)
        if V is None:
            V = self._buffer(f"wino_V@{k}", (16, n, th, tw, C))
        winograd.input_transform(xs, V, self._buffer(f"wino_cols@{k}", (4, n, 2 * th + 2, tw, C)))
        return V

    def _winograd_backward(self, dout: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        """Backward of _winograd_forward (the chain rule in winograd.py's docstring),
        chunk by chunk like the forward; dL/dW sums the chunks' parts in chunk order."""
        (U, kept), self._wino = self._wino, None
        UT = np.ascontiguousarray(U.transpose(0, 2, 1))
        N, C, H, W = self._x_shape
        O, OH, OW = dout.shape[1:]
        th, tw = winograd.tiles(OH, OW)
        dyt = dout.transpose(0, 2, 3, 1)                    # (N, OH, OW, O), a view
        # dL/dx in the input's layout (see empty_nchw), viewed channels last
        dx = (empty_nchw(self._x_shape, self.dtype, self._x_channels_last).transpose(0, 2, 3, 1)
              if need_input_grad else None)
        step = self._winograd_chunk_size((th, tw))

        def chunk(s: int, k: int) -> np.ndarray:
            n = min(step, N - s)
            dys = self._buffer(f"wino_ys@{k}", (n, 2 * th, 2, tw, O))
            if (OH, OW) != (2 * th, 2 * tw):               # odd size: the extra outputs get 0
                dys.fill(0)
            winograd.split_columns(dyt[s:s + n], dys, (0, 0))
            dM = self._buffer(f"wino_M@{k}", (16, n, th, tw, O))
            winograd.output_transform_grad(dys, dM, self._buffer(f"wino_out@{k}", (4, 2, n, th, tw, O)))
            dM2 = dM.reshape(16, -1, O)
            V = kept[:, s:s + n].reshape(16, -1, C)
            dU = np.matmul(V.transpose(0, 2, 1), dM2)                  # V^T dM, per xi
            if dx is not None:
                dV = np.matmul(dM2, UT, out=V).reshape(16, n, th, tw, C)
                dxs = self._buffer(f"wino_dxs@{k}", (n, 2 * th + 2, 2, tw + 1, C))
                winograd.input_transform_grad(dV, dxs, self._buffer(f"wino_cols@{k}", (4, n, 2 * th + 2, tw, C)))
                winograd.join_columns(dxs, dx[s:s + n], self.padding)
            return dU

        dU = np.zeros((16, C, O), np.float64)
        for part in map_chunks(chunk, list(range(0, N, step))):
            dU += part
        self.grads["W"][...] = winograd.kernel_transform_grad(dU)
        np.sum(dout, axis=(0, 2, 3), out=self.grads["b"])
        return None if dx is None else dx.transpose(0, 3, 1, 2)

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ValueError(f"Conv2D({self.in_channels}, {self.out_channels}) needs a "
                             f"({self.in_channels}, H, W) input, got shape {input_shape}")
        OH, OW = _window_output_size(input_shape, self.kernel_size, self.stride,
                                     self.padding, "Conv2D")
        return (self.out_channels, OH, OW)

    def __repr__(self) -> str:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={k}, "
                f"algorithm={self.algorithm!r}, "
                f"stride={s}, padding={p}, init={self.init!r})")


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------


class _Pool2D(Layer):
    """Shared set-up of MaxPool2D and AvgPool2D: k x k windows, stride s (default k)."""

    def __init__(self, kernel_size=2, stride=None) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", name, 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", name, 1)
        self._x_shape: tuple | None = None
        self._channels_last = False   # the input's memory layout, for dx (see empty_nchw)

    def _geometry(self, x: np.ndarray) -> tuple[int, int]:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (N, C, H, W) input, got {x.shape}")
        self._channels_last = is_channels_last(x)
        return _window_output_size(x.shape[1:], self.kernel_size, self.stride, (0, 0),
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
        dx = empty_nchw(self._x_shape, dtype, self._channels_last)
        if zero:
            dx.fill(0)
        return dx

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        OH, OW = _window_output_size(input_shape, self.kernel_size, self.stride, (0, 0),
                                     type(self).__name__)
        return (input_shape[0], OH, OW)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride})"


class MaxPool2D(_Pool2D):
    """y[n, c, oh, ow] = max over the window of x.   x (N, C, H, W) -> y (N, C, OH, OW).

    dL/dx: each window passes dL/dy to the one element that is its maximum,
    zero to the others.  On a tie the first maximum in window order (row by
    row) gets it -- exactly one element, as PyTorch -- so the gradient still
    sums to dL/dy.

    The non-overlapping case (stride = kernel) needs no reshape trick: for a
    fixed offset (i, j) the strided slice is the same view that
    x.reshape(N, C, OH, kh, OW, kw)[:, :, :, i, :, j] would give, and a running
    np.maximum over the kh*kw slices measured 20x faster than
    reshape(...).max(axis=(3, 5)) (NumPy reduces over short strided axes slowly).
    What the non-overlapping case does gain is a backward that assigns instead
    of accumulating (see _tiles).

    In training mode the forward also records, per offset, which windows take
    their maximum there (kh*kw boolean masks of y's shape: 1 byte per input
    pixel); it is cheaper here, while x is still in cache, than in backward.

    The common 2x2, stride 2 pool on an even-sized input has its own path
    (_forward_2x2, 1.8x faster forward): the max of each pair of columns, for
    both rows of a window at once, then the max of the two rows, remembering
    with one comparison per step which side won.
    """

    def __init__(self, kernel_size=2, stride=None) -> None:
        super().__init__(kernel_size, stride)
        self._winner: np.ndarray | None = None
        self._right: np.ndarray | None = None   # 2x2 path: the masks it keeps
        self._bottom: np.ndarray | None = None

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
            self._winner, self._x_shape = None, x.shape
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
        with small_ufunc_buffers():   # strided passes: 1.2-1.5x faster at 28x28 (threads.py)
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
        y = _windows_at(x, *offsets[0], self.stride, out_hw).copy()
        for i, j in offsets[1:]:
            np.maximum(y, _windows_at(x, i, j, self.stride, out_hw), out=y)
        if not training:
            return y
        # winner[o]: windows whose maximum is at offset o.  Offsets are visited
        # in window order and a window, once claimed, is out, so on a tie only
        # the first maximum wins.
        winner = np.empty((len(offsets),) + y.shape, dtype=bool)
        unclaimed = np.ones(y.shape, dtype=bool)
        for o, (i, j) in enumerate(offsets):
            np.equal(_windows_at(x, i, j, self.stride, out_hw), y, out=winner[o])
            winner[o] &= unclaimed
            unclaimed ^= winner[o]
        self._winner, self._x_shape, self._right = winner, x.shape, None
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        winner, x_shape = self._winner, self._x_shape
        if winner is None and self._right is not None:
            return self._backward_2x2(dout)
        if winner is None:
            raise RuntimeError("MaxPool2D.backward needs a forward with training=True before it")
        out_hw = dout.shape[2:]
        tiles = self._tiles(x_shape, out_hw)
        dx = self._empty_dx(dout.dtype, zero=not tiles)
        for o, (i, j) in enumerate(self._offsets()):
            target = _windows_at(dx, i, j, self.stride, out_hw)
            if tiles:
                np.multiply(dout, winner[o], out=target)   # dL/dy to the winner, 0 elsewhere
            else:
                target += dout * winner[o]
        return dx


class AvgPool2D(_Pool2D):
    """y[n, c, oh, ow] = mean over the window of x.   x (N, C, H, W) -> y (N, C, OH, OW).

    dL/dx: every element of a window gets dL/dy / (kh*kw) (summed over the
    windows it belongs to).  Rows/columns that no window reaches get zero.
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        out_hw = self._geometry(x)
        dt = x.dtype if x.dtype.kind == "f" else np.float64
        offsets = self._offsets()
        y = _windows_at(x, *offsets[0], self.stride, out_hw).astype(dt)  # a copy
        for i, j in offsets[1:]:
            y += _windows_at(x, i, j, self.stride, out_hw)
        y *= 1.0 / len(offsets)
        self._x_shape = x.shape
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_shape, out_hw = self._x_shape, dout.shape[2:]
        offsets = self._offsets()
        share = dout * (1.0 / len(offsets))  # each element's part of dL/dy
        if self._tiles(x_shape, out_hw):
            dx = self._empty_dx(dout.dtype, zero=False)
            for i, j in offsets:
                _windows_at(dx, i, j, self.stride, out_hw)[...] = share
        else:
            dx = self._empty_dx(dout.dtype, zero=True)
            for i, j in offsets:
                _windows_at(dx, i, j, self.stride, out_hw)[...] += share
        return dx


class GlobalAvgPool2D(Layer):
    """y[n, c] = mean over (h, w) of x[n, c].   x (N, C, H, W) -> y (N, C).

    dL/dx[n, c, h, w] = dL/dy[n, c] / (H*W).
    """

    def __init__(self) -> None:
        super().__init__()
        self._x_shape: tuple | None = None
        self._channels_last = False

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool2D expects (N, C, H, W) input, got {x.shape}")
        self._x_shape, self._channels_last = x.shape, is_channels_last(x)
        N, C = x.shape[:2]
        return x.reshape(N, C, -1).mean(axis=2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        H, W = self._x_shape[2:]
        dx = empty_nchw(self._x_shape, dout.dtype, self._channels_last)
        dx[...] = (dout * (1.0 / (H * W)))[:, :, None, None]  # broadcast over (h, w)
        return dx

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAvgPool2D needs a (channels, height, width) input, "
                             f"got shape {tuple(input_shape)}")
        return (input_shape[0],)


# --------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------


class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015) per feature/channel.

    Input (N, C) -- statistics over N -- or (N, C, H, W) -- statistics over
    N, H, W, one mean and variance per channel.  With m = number of values per
    channel (N or N*H*W):

        mu  = mean(x),  var = mean((x - mu)**2)          (biased, as PyTorch)
        xhat = (x - mu) / sqrt(var + eps)
        y    = gamma * xhat + beta

    Backward (training mode; mu and var depend on x, hence the two correction
    terms), sums over the same axes as the statistics, G = dL/dy:

        dL/dbeta  = sum(G)
        dL/dgamma = sum(G * xhat)
        dL/dx     = gamma / sqrt(var + eps) * (G - dL/dbeta / m - xhat * dL/dgamma / m)

    Buffers (saved with the weights, never trained): running_mean starts at 0,
    running_var at 1, and every training forward updates them as PyTorch does

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    (the unbiased variance for the running estimate).  In evaluation mode
    (training=False) mu and var are replaced by the running statistics, which
    are constants, so there dL/dx = gamma / sqrt(running_var + eps) * G.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 dtype=np.float32) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"BatchNorm: num_features must be a positive integer, got {num_features!r}")
        momentum, eps = float(momentum), float(eps)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum}")
        if not (eps > 0.0 and math.isfinite(eps)):
            raise ValueError(f"BatchNorm: eps must be a finite number > 0, got {eps}")
        self.num_features, self.momentum, self.eps = int(num_features), momentum, eps
        self.dtype = _check_float_dtype(dtype)
        C = self.num_features
        self.params = {"gamma": np.ones(C, self.dtype), "beta": np.zeros(C, self.dtype)}
        self.grads = {"gamma": np.zeros(C, self.dtype), "beta": np.zeros(C, self.dtype)}
        self.buffers = {"running_mean": np.zeros(C, self.dtype),
                        "running_var": np.ones(C, self.dtype)}
        self._xc: np.ndarray | None = None   # x - mu (training) or x (evaluation)
        self._mu: np.ndarray | None = None   # None in training: xc is centred already
        self._inv_std: np.ndarray | None = None
        self._training = True
        self._image_shape: tuple | None = None   # set for a channels-last image batch
        self._groups = 1                          # W for a channels-last batch, else 1

    def _axes(self, x: np.ndarray) -> tuple:
        """The axes the statistics run over."""
        C = self.num_features
        if x.ndim == 2 and x.shape[1] == C * self._groups:
            return (0,)
        if x.ndim == 4 and x.shape[1] == C:
            return (0, 2, 3)
        raise ValueError(f"BatchNorm({C}) expects input of shape (N, {C}) or "
                         f"(N, {C}, H, W), got {x.shape}")

    @staticmethod
    def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """sum(a * b) per channel (axis 1), without the a * b temporary: einsum
        measured 3x faster than (a * b).sum(axes) on a (128, 16, 28, 28) batch."""
        N, C = a.shape[:2]
        return np.einsum("ncp,ncp->c", a.reshape(N, C, -1), b.reshape(N, C, -1))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """The per-channel normalisation below.  A channels-last image batch
        (is_channels_last) is normalised as the (N*H*W, C) matrix it is in
        memory -- the same statistics, over rows -- and handed back in its
        layout: NumPy reduces over contiguous rows much faster than over
        axes (0, 2, 3) of a transposed view."""
        self._image_shape = x.shape if is_channels_last(x) else None
        if self._image_shape is None:
            self._groups = 1
            return self._forward(x, training)
        N, C, H, W = self._image_shape
        self._groups = W
        y = self._forward(x.transpose(0, 2, 3, 1).reshape(N * H, W * C), training)
        return y.reshape(N, H, W, C).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._image_shape is None:
            return self._backward(dout)
        N, C, H, W = self._image_shape
        dx = self._backward(dout.transpose(0, 2, 3, 1).reshape(N * H, W * C))  # a copy unless channels last
        return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2)

    # A channels-last batch is handled as the matrix (N*H, W*C): each row holds
    # W groups of the C channels; _fold sums a per-column sum over the groups.
    # (NumPy reduces over the rows of a matrix fast, over axes (0, 2, 3) of a
    # transposed view slowly.)
    #
    # The elementwise passes (x - mu, * scale, + shift and backward's four) run
    # along one row per sample instead (_per_sample: (N, values per sample),
    # a view), with the per-channel vector written out once for a whole
    # sample (_spread): broadcasting a vector over rows of one image row (W*C
    # values) or over each channel's H*W values measured 1.7x slower per pass
    # than over rows of a whole sample.  Elementwise, so the same numbers.

    def _fold(self, v: np.ndarray) -> np.ndarray:
        return v if self._groups == 1 else v.reshape(self._groups, -1).sum(axis=0)

    def _per_sample(self, a: np.ndarray) -> np.ndarray:
        """a (the layout _forward and _backward work in) as (samples, values of
        one sample); a view when a is contiguous (a copy otherwise: read only)."""
        samples = a.shape[0] if self._image_shape is None else self._image_shape[0]
        return a.reshape(samples, -1)

    def _spread(self, v: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The per-channel vector v laid out like one row of _per_sample(a)."""
        if self._image_shape is not None:           # a sample is (H, W, C)
            H, W = self._image_shape[2:]
            return np.tile(v, H * W)
        if a.ndim == 4:                             # a sample is (C, H, W)
            return np.repeat(v, a.shape[2] * a.shape[3])
        return v

    def _per_channel(self, op, a: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """op(a, v) with v (C,) applied per channel, into out or a new array shaped like a."""
        if out is None:
            out = np.empty(a.shape, np.result_type(a, v))
        op(self._per_sample(a), self._spread(v, a), out=self._per_sample(out))
        return out

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """y = x * a + c per channel, with a = gamma / sqrt(var + eps) and
        c = beta - mu * a: two passes over the output (multiply, add) instead
        of materialising xhat.  Backward gets xhat back from what is kept:
        xc = x - mu (training) or x itself (evaluation), and inv_std."""
        axes = self._axes(x)
        x = x.astype(self.dtype, copy=False)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if training:
            m = x.size // self.num_features
            if m < 2:
                raise ValueError("BatchNorm needs more than one value per channel in "
                                 f"training mode, got input of shape {x.shape}")
            mu = x.mean(axis=axes) if self._groups == 1 else self._fold(x.sum(axis=axes)) / m
            xc = self._per_channel(np.subtract, x, mu)     # kept for backward
            var = self._fold(self._channel_dot(xc, xc)) / m   # biased: what normalises the batch
            inv_std = 1.0 / np.sqrt(var + self.eps)
            momentum = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= 1.0 - momentum                       # in place: the arrays stay the same
            rm += momentum * mu
            rv *= 1.0 - momentum
            rv += (momentum * m / (m - 1)) * var       # unbiased variance, as PyTorch
            scale, shift = gamma * inv_std, beta
            self._xc, self._mu = xc, None
        else:
            # running statistics: y is affine in x, and x itself is what we keep
            mu = self.buffers["running_mean"]
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            scale = gamma * inv_std
            shift = beta - mu * scale
            self._xc, self._mu = x, mu
        y = self._per_channel(np.multiply, self._xc, scale)
        self._per_channel(np.add, y, shift.astype(self.dtype, copy=False), out=y)
        self._inv_std, self._training = inv_std.astype(self.dtype, copy=False), training
        return y

    def _backward(self, dout: np.ndarray) -> np.ndarray:
        xc = self._xc
        if xc is None:
            raise RuntimeError("BatchNorm.backward called before forward")
        axes = self._axes(dout)
        inv_std = self._inv_std
        self.grads["beta"][...] = self._fold(np.sum(dout, axis=axes))   # dL/dbeta
        # dL/dgamma = sum(G * xhat), xhat = (xc - mu) * inv_std (mu = 0 in training:
        # xc is already centred), so it is inv_std * (sum(G * xc) - mu * sum(G))
        dgamma = self._fold(self._channel_dot(dout, xc))
        if self._mu is not None:
            dgamma -= self._mu * self.grads["beta"]
        self.grads["gamma"][...] = dgamma * inv_std
        scale = self.params["gamma"] * inv_std
        if not self._training:  # running statistics are constants: y is affine in x
            return self._per_channel(np.multiply, dout, scale)
        m = dout.size // self.num_features
        # dx = gamma/sqrt(var+eps) * (G - dbeta/m - xhat * dgamma/m)
        dx = self._per_channel(np.multiply, xc, -self.grads["gamma"] * inv_std / m)
        rows = self._per_sample(dx)
        rows += self._per_sample(dout)
        rows -= self._spread(self.grads["beta"] / m, dx)
        rows *= self._spread(scale, dx)
        return dx

    def fold(self, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights and bias of the preceding Conv2D (W (O, C, kh, kw)) or Dense
        (W (in, O)) with this layer's evaluation-mode affine map folded in:

            BN(x W + b) = (x W + b - mean) * s + beta = x (W s) + (b - mean) s + beta,
            s = gamma / sqrt(running_var + eps)  per output channel.

        Computed in float64, returned in W's dtype."""
        s = self.params["gamma"] / np.sqrt(self.buffers["running_var"].astype(np.float64) + self.eps)
        b2 = (b - self.buffers["running_mean"].astype(np.float64)) * s + self.params["beta"]
        W2 = W * (s.reshape(-1, *(1,) * (W.ndim - 1)) if W.ndim == 4 else s)
        return W2.astype(W.dtype), b2.astype(b.dtype)

    def __repr__(self) -> str:
        return f"BatchNorm({self.num_features}, momentum={self.momentum}, eps={self.eps})"
