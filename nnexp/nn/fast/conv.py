"""The fast engine's convolution: im2col in reused buffers, Winograd F(2x2, 3x3),
and a fused evaluation path.  Same conventions and results as nnexp.nn.conv's
Conv2D (up to float rounding; each variant is tested against it).

Everything loops in Python only over the k*k offsets inside a window, never
over samples or pixels: for a fixed offset (i, j) the input elements that
meet it form one strided slice

    x[:, :, i : i + s*OH : s, j : j + s*OW : s]        (N, C, OH, OW)

so "all windows, offset (i, j)" is one vectorised NumPy operation.
"""

from __future__ import annotations

import math

import numpy as np

from ..conv import Conv2D
from . import winograd
from .layout import empty_nchw, is_channels_last
from .threads import map_chunks, small_ufunc_buffers

__all__ = ["FastConv2D", "CONV_ALGORITHMS", "windows_at"]

#: Evaluation works through the batch in chunks whose column matrix fits in
#: this many bytes: small enough for the cache, and to give every core chunks.
EVAL_CHUNK_BYTES = 2 * 2**20

#: FastConv2D's ``algorithm`` choices; "auto" picks Winograd where it applies.
CONV_ALGORITHMS = ("auto", "im2col", "winograd")
#: "auto" uses Winograd from this many input channels up: its 16 products have
#: C as their inner dimension, tiny for a first layer of 1-4 channels, where
#: im2col (inner dimension 9*C) does as well.
WINOGRAD_MIN_CHANNELS = 8
#: Winograd works through the batch in chunks whose transformed tiles take
#: about this many bytes, so that they stay in a core's L2 cache.
WINOGRAD_CHUNK_BYTES = 1536 * 1024


def windows_at(x: np.ndarray, i: int, j: int, stride: tuple, out_hw: tuple) -> np.ndarray:
    """x[:, :, i + s*oh, j + s*ow] for all (oh, ow): the elements at offset (i, j) of
    every window, shape (N, C, OH, OW).  A view."""
    (sh, sw), (OH, OW) = stride, out_hw
    return x[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


class FastConv2D(Conv2D):
    """Conv2D computed for speed: by im2col in reused buffers, or by Winograd's
    F(2x2, 3x3) (winograd.py), with an evaluation path that folds in the next
    batch-norm and fuses the ReLU and a 2x2 max-pool.

    ``algorithm``: "im2col", "winograd" (3x3 kernels, stride 1), or "auto":
    Winograd where it applies from WINOGRAD_MIN_CHANNELS input channels up.

    im2col here builds the column matrix as (K, M) (one window per column):
    copying into it moves whole image rows, even for a one-channel first
    layer.  The product W2 @ cols (O, M) then needs a transpose to
    (N, O, OH, OW), done while the bias is added.

    Memory: in training ``cols`` (K*M floats) is kept for backward in a buffer
    reused from step to step, and backward overwrites it with dL/dcols: one
    backward per training forward.  Evaluation goes through the batch in
    chunks of at most EVAL_CHUNK_BYTES, in other buffers, so an evaluation
    between a forward and its backward is safe.  Backward after an
    evaluation-mode forward is an error.
    """

    def __init__(self, *args, algorithm: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)   # Conv2D's arguments
        self.use_algorithm(algorithm)

    def use_algorithm(self, algorithm: str) -> None:
        """Compute by ``algorithm`` from now on, with empty buffers."""
        self.algorithm = self._choose_algorithm(algorithm)
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
        # (strided passes: small ufunc buffers walk them in place, threads.py)
        with small_ufunc_buffers():
            np.add(prod.reshape(O, N, -1).transpose(1, 0, 2), self.params["b"][:, None],
                   out=y.reshape(N, O, -1))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if not training:
            return self.infer(x)
        x, (OH, OW) = self.checked_input(x)
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
        folded in (FastBatchNorm.fold) and ``relu=True`` when a ReLU follows: the
        ReLU then runs on each chunk of the output while it is still in
        cache, instead of as two more passes over the whole activation.
        ``pool=True`` (only where can_pool says so) returns the 2x2, stride-2
        max-pool of the output instead: Winograd's 2x2 output tiles are the
        pooling windows, and the maximum commutes with the bias and the ReLU
        (both monotone per channel), so they run on a quarter of the values."""
        x, (OH, OW) = self.checked_input(x)
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
        # reads fastest.  The chunks are shared among the cores like Winograd's (threads.py).
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
        # (small): OpenBLAS runs that orientation faster.
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
        # order, the order of dcols's rows (faster than straight into
        # (N, C, H, W)); then one transposing copy (always a copy: dxp is a
        # scratch buffer that the next backward reuses).
        dxp = self._buffer("dxp", (C, N, H + 2 * ph, W + 2 * pw))
        dxp.fill(0)
        d6 = dcols.reshape(C, kh, kw, N, OH, OW)
        for i in range(kh):
            for j in range(kw):
                windows_at(dxp, i, j, self.stride, (OH, OW))[...] += d6[:, i, j]
        dx = dxp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)  # drop the padding
        return dx.copy(order="C")

    # -- Winograd F(2x2, 3x3) (see winograd.py) -------------------------------
    #
    # The batch goes through in chunks of a few samples whose transformed
    # tiles (16 x the tiles' pixels x channels) fit in a core's L2 cache: the
    # ~40 whole-array passes of the transforms then run in cache instead of
    # streaming the whole batch from memory each time.  Chunks are
    # independent, so they are shared among the cores (threads.py); each
    # worker thread has its own scratch buffers, named "...@k".

    def _winograd_forward(self, x: np.ndarray, out_hw: tuple, W: np.ndarray, b: np.ndarray,
                          keep: bool, relu: bool = False, pool: bool = False) -> np.ndarray:
        """y = conv(x) + b through F(2x2, 3x3).  Returns an (N, O, OH, OW) view of
        an (N, OH, OW, O) array: channels last, the layout the tiles produce,
        passed on as it is (elementwise layers keep it, the next Winograd conv
        wants it).  ``keep`` (training) keeps U and the transformed input V
        (4x the input's size, in a buffer reused from step to step) for
        backward, which then need not transform each chunk again.  ``relu``
        and ``pool`` as in infer."""
        (N, C), O, (OH, OW) = x.shape[:2], self.out_channels, out_hw
        th, tw = winograd.tiles(OH, OW)
        U = winograd.kernel_transform(W)
        y = np.empty((N, th, tw, O) if pool else (N, OH, OW, O), dtype=self.dtype)
        xt = x.transpose(0, 2, 3, 1)                       # (N, H, W, C), a view
        step = self._winograd_chunk_size((th, tw))

        kept = self._buffer("wino_V_kept", (16, N, th, tw, C)) if keep else None  # V for backward
        # b for every pixel of a sample: the bias goes on as one long row per
        # sample (faster than NumPy's broadcast over short rows of O values)
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

    def __repr__(self) -> str:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={k}, "
                f"algorithm={self.algorithm!r}, "
                f"stride={s}, padding={p}, init={self.init!r})")


