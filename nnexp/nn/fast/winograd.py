"""Winograd's minimal filtering F(2x2, 3x3): 3x3, stride-1 convolution with 2.25x fewer multiplies.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016).  In
one dimension, two outputs of a 3-tap correlation y[k] = sum_i g[i] d[k + i]
from four inputs d[0..3] cost 4 multiplies instead of 6:

    y = A^T [(G g) * (B^T d)]          (* elementwise)

    B^T = [[1, 0, -1,  0],     G = [[ 1,    0,   0 ],     A^T = [[1, 1,  1,  0],
           [0, 1,  1,  0],          [ 1/2,  1/2, 1/2],            [0, 1, -1, -1]]
           [0, -1, 1,  0],          [ 1/2, -1/2, 1/2],
           [0, 1,  0, -1]]          [ 0,    0,   1 ]]

Nesting it gives a 2x2 output tile from a 4x4 input tile d and a 3x3 kernel g:
Y = A^T [(G g G^T) * (B^T d B)] A: 16 multiplies instead of 36.  Tiles step by
2 pixels, so neighbouring input tiles overlap by 2 rows/columns.

For a layer, the 16 elementwise products over channels are 16 matrix
products.  With T tiles (N * tiles per image), xi the position in the 4x4
transformed tile:

    V[xi] (T, C) = (B^T d B)[xi]     for every tile and input channel
    U[xi] (C, O) = (G g G^T)[xi]     for every kernel
    M[xi] (T, O) = V[xi] @ U[xi]
    Y tile       = A^T M A           for every tile and output channel

Backward is the chain rule through these four linear steps (each step's
adjoint uses the transposed matrices):

    dM = A dY A^T    (2x2 -> 4x4 per tile)
    dU[xi] = V[xi]^T @ dM[xi],   dV[xi] = dM[xi] @ U[xi]^T
    dg = G^T dU G    (4x4 -> 3x3 per kernel)
    dd = B dV B^T    (4x4 per tile, added into the overlapping input pixels)

Every transform is a handful of whole-array additions of strided slices
(B, A, G have entries 0, +-1, +-1/2): no loop over tiles or pixels.

Memory layout: channels last -- xp is (N, Hp, Wp, C), V (16, N, th, tw, C),
M (16, N, th, tw, O), y (N, OH, OW, O).  Every strided slice the transforms
take (every other row or column) then still moves whole runs of C contiguous
channels, and each of the 16 products is one (T, C) @ (C, O) GEMM over all
tiles of the batch, the orientation OpenBLAS runs fastest for these shapes
(73 vs 52 GFLOP/s on one core with C = O = 32, against channels first).
Conv2D hands the output on as an (N, O, OH, OW) view of the (N, OH, OW, O)
array.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kernel_transform", "kernel_transform_grad", "input_transform",
           "input_transform_grad", "join_columns", "output_transform", "output_transform_grad",
           "output_transform_max",
           "split_columns", "tiles"]

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def tiles(out_h: int, out_w: int) -> tuple[int, int]:
    """Number of 2x2 output tiles (rows, cols) covering an out_h x out_w output;
    an odd size gets a last tile half outside (the input is padded with zeros
    to 2*th + 2 rows and 2*tw + 2 columns, the extra outputs are dropped)."""
    return (out_h + 1) // 2, (out_w + 1) // 2


# -- kernels ------------------------------------------------------------------
#
# U = G W G^T and its adjoint dW = G^T dU G, in float64.  Every output is a sum
# of terms G[a, i] G[b, j] W[i, j] (resp. ... dU[a, b]), each exact (G's
# entries are 0, +-1/2 and 1), so only the order of the additions matters.
# They are added one at a time, (i, j) row by row for U and (a, b) row by row
# for dW: the order of np.einsum("ai,bj,...ij->...ab") (the same bits for
# finite values; the tests pin the order).  Terms with a zero coefficient add
# nothing and are left out (64 of 144), and step t adds the t-th term of
# every output that has one, all in one pass, fewer calls than an einsum.


def _term_steps(L: np.ndarray, R: np.ndarray) -> tuple:
    """Y[p, q] = sum over (r, s), r-major, of L[p, r] R[q, s] X[r, s] as steps:
    (order, [(coef, src), ...]).  The outputs are kept in ``order`` (most terms
    first), so step t, adding coef * X[src] (one term per output), covers the
    first len(src) of them -- those that have a t-th term."""
    P, Q, S = L.shape[0], R.shape[0], R.shape[1]
    terms = [[(L[p, r] * R[q, s], r * S + s) for r in range(L.shape[1]) for s in range(S)
              if L[p, r] * R[q, s] != 0] for p in range(P) for q in range(Q)]
    order = sorted(range(P * Q), key=lambda k: -len(terms[k]))
    steps = []
    for t in range(len(terms[order[0]])):
        rows = [k for k in order if len(terms[k]) > t]
        steps.append((np.array([terms[k][t][0] for k in rows])[:, None],
                      np.array([terms[k][t][1] for k in rows])))
    return np.array(order), steps


_U_STEPS = _term_steps(_G, _G)          # U[a, b] from W[i, j]
_DW_STEPS = _term_steps(_G.T, _G.T)     # dW[i, j] from dU[a, b]


def _sum_terms(steps: tuple, X: np.ndarray, dtype) -> np.ndarray:
    """The outputs of _term_steps for X (rows r * S + s, any columns) in float64,
    returned rounded to ``dtype``, rows p * Q + q."""
    order, terms = steps
    acc = np.zeros((len(order), X.shape[1]))
    term = np.empty_like(acc)
    for coef, src in terms:
        m = len(src)
        np.take(X, src, axis=0, out=term[:m])
        term[:m] *= coef
        acc[:m] += term[:m]
    out = np.empty(acc.shape, dtype)
    out[order] = acc
    return out


def kernel_transform(W: np.ndarray) -> np.ndarray:
    """U = G W G^T per kernel.   W (O, C, 3, 3) -> U (16, C, O), U[4a + b] = (G W G^T)[a, b]."""
    O, C = W.shape[:2]
    X = W.transpose(2, 3, 1, 0).reshape(9, C * O).astype(np.float64)   # X[3i + j] = W[:, :, i, j]^T
    return _sum_terms(_U_STEPS, X, W.dtype).reshape(16, C, O)


def kernel_transform_grad(dU: np.ndarray) -> np.ndarray:
    """dL/dW = G^T dU G per kernel (the adjoint of kernel_transform).   dU (16, C, O) -> (O, C, 3, 3)."""
    C, O = dU.shape[1:]
    dW = _sum_terms(_DW_STEPS, dU.reshape(16, C * O).astype(np.float64, copy=False), dU.dtype)
    return dW.reshape(3, 3, C, O).transpose(3, 2, 0, 1)


# -- the column-parity layout ---------------------------------------------------


def split_columns(x: np.ndarray, out: np.ndarray, offset: int) -> None:
    """Copy x (N, H, W, C) into out (N, Hp, 2, J, C) at rows/columns shifted by
    ``offset`` = (rows, cols): pixel column w + offset[1] = 2j + e goes to
    out[:, :, e, j].  (The rest of out is left as it is: zero padding.)

    Why: the transforms take every other column of a tile row; in this layout
    "every other column" is one contiguous slice, so NumPy moves long runs
    instead of runs of C channels."""
    H, W = x.shape[1:3]
    r, c = offset
    for e in (0, 1):
        w0 = (e - c) % 2                          # first column landing on parity e
        n = len(range(w0, W, 2))
        j0 = (w0 + c) // 2
        out[:, r:r + H, e, j0:j0 + n] = x[:, :, w0::2]


def join_columns(xs: np.ndarray, out: np.ndarray, offset: int) -> None:
    """The inverse of split_columns: out (N, H, W, C) = the pixels of xs
    (N, Hp, 2, J, C) at rows/columns shifted by ``offset``."""
    H, W = out.shape[1:3]
    r, c = offset
    for e in (0, 1):
        w0 = (e - c) % 2
        n = len(range(w0, W, 2))
        j0 = (w0 + c) // 2
        out[:, :, w0::2] = xs[:, r:r + H, e, j0:j0 + n]


def _tile_rows(T: np.ndarray) -> tuple:
    """T (16, ...), T[4a + b] = tile entry (a, b), as its four rows: (T[0:4],
    T[4:8], T[8:12], T[12:16]), row a being (4, ...) over the columns b.

    Views (splitting the first axis never copies), so they can be written.
    Why: a transform step then covers four entries in one NumPy call, which
    saves the calls' fixed cost."""
    return tuple(T.reshape(4, 4, *T.shape[1:]))


def _tile_columns(T: np.ndarray) -> tuple:
    """T (16, ...) as its four columns: column b = T[b::4], (4, ...) over the rows a."""
    return tuple(T.reshape(4, 4, *T.shape[1:]).swapaxes(0, 1))


# -- inputs -------------------------------------------------------------------


def _bt_combine(s0, s1, s2, s3, out0, out1, out2, out3) -> None:
    """(out0..out3) = B^T (s0..s3): the four rows of B^T applied to four slices."""
    np.subtract(s0, s2, out=out0)
    np.add(s1, s2, out=out1)
    np.subtract(s2, s1, out=out2)
    np.subtract(s1, s3, out=out3)


def input_transform(xs: np.ndarray, V: np.ndarray, cols: np.ndarray) -> None:
    """V = B^T d B for every 4x4 tile d of the padded input.

    xs (N, 2*th + 2, 2, tw + 1, C) -- the padded input, channels last, its
    columns split by parity (split_columns); V (16, N, th, tw, C) is written,
    V[4a + b] = entry (a, b) of every tile; cols (4, N, 2*th + 2, tw, C) is
    scratch.  Tile (a, b) starts at pixel (2a, 2b): its column k is padded
    column 2b + k, i.e. xs[:, :, k % 2, b + k // 2]."""
    th, tw = V.shape[2:4]
    _bt_combine(*[xs[:, :, k % 2, k // 2:k // 2 + tw] for k in range(4)], *cols)  # columns
    _bt_combine(*[cols[:, :, k:k + 2 * th:2] for k in range(4)], *_tile_rows(V))  # rows


def input_transform_grad(dV: np.ndarray, dxs: np.ndarray, cols: np.ndarray) -> None:
    """dxs = sum over tiles of B dV B^T, at each tile's pixels (the adjoint of
    input_transform; overlapping tiles add).

    dV (16, N, th, tw, C); dxs (N, 2*th + 2, 2, tw + 1, C) is written, all of
    it; cols (4, N, 2*th + 2, tw, C) is scratch.  B = (B^T)^T: entry 0 = v0,
    1 = v1 - v2 + v3, 2 = v1 + v2 - v0, 3 = -v3.  Entries 0 and 1 of tile t
    land on positions 2t, 2t + 1 (one tile each: assigned), entries 2 and 3 on
    2t + 2, 2t + 3 (shared with tile t + 1: added)."""
    th, tw = dV.shape[2:4]
    cols[:, :, 2 * th:] = 0              # rows first (the adjoint runs backwards)
    _b_place(*_tile_rows(dV), *[cols[:, :, k:k + 2 * th:2] for k in range(4)])
    at = [dxs[:, :, k % 2, k // 2:k // 2 + tw] for k in range(4)]
    dxs[:, :, :, tw] = 0
    _b_place(*cols, *at)


def _b_place(v0, v1, v2, v3, at0, at1, at2, at3) -> None:
    """at0, at1 = B's entries 0, 1 (assigned); at2, at3 += entries 2, 3.  at2/at3
    overlap at0/at1 shifted by one tile, hence the order."""
    np.copyto(at0, v0)
    np.subtract(v1, v2, out=at1)
    at1 += v3
    at2 += v1
    at2 += v2
    at2 -= v0
    at3 -= v3


# -- outputs ------------------------------------------------------------------


def _times_a(M: np.ndarray, cols: np.ndarray) -> None:
    """First half of A^T M A, along the tile columns: cols[a, l] = (M[a, :] A)[l]."""
    m0, m1, m2, m3 = _tile_columns(M)
    np.add(m0, m1, out=cols[:, 0])
    cols[:, 0] += m2
    np.subtract(m1, m2, out=cols[:, 1])
    cols[:, 1] -= m3


def output_transform(M: np.ndarray, ys: np.ndarray, cols: np.ndarray) -> None:
    """ys = A^T M A for every tile.

    M (16, N, th, tw, O); ys (N, 2*th, 2, tw, O) is written: output pixel
    (2a + k, 2b + l) is entry (k, l) of tile (a, b) and lands in
    ys[:, 2a + k, l, b] (columns split by parity, as split_columns);
    cols (4, 2, N, th, tw, O) is scratch."""
    _times_a(M, cols)
    for l in range(2):  # along the tile rows
        c0, c1, c2, c3 = cols[:, l]
        top, bottom = ys[:, 0::2, l], ys[:, 1::2, l]
        np.add(c0, c1, out=top)
        top += c2
        np.subtract(c1, c2, out=bottom)
        bottom -= c3


def output_transform_max(M: np.ndarray, y: np.ndarray, cols: np.ndarray, tmp: np.ndarray) -> None:
    """y = the maximum of each tile's four outputs A^T M A: a 2x2, stride-2
    max-pool of the convolution, whose windows are exactly the output tiles
    (evaluation only: no record of which output won).

    M (16, N, th, tw, O); y (N, th, tw, O) is written; cols (4, 2, N, th, tw, O)
    and tmp (N, th, tw, O) are scratch."""
    _times_a(M, cols)
    for l in range(2):  # the tile's top and bottom output of column l, into the running max
        c0, c1, c2, c3 = cols[:, l]
        top = y if l == 0 else tmp
        np.add(c0, c1, out=top)
        top += c2
        if l == 1:
            np.maximum(y, tmp, out=y)
        np.subtract(c1, c2, out=tmp)
        tmp -= c3
        np.maximum(y, tmp, out=y)


def output_transform_grad(dys: np.ndarray, dM: np.ndarray, cols: np.ndarray) -> None:
    """dM = A dy A^T per tile (the adjoint of output_transform).

    dys (N, 2*th, 2, tw, O), columns split by parity; dM (16, N, th, tw, O) is
    written; cols (4, 2, N, th, tw, O) is scratch.  A = (A^T)^T has rows
    [1, 0], [1, 1], [1, -1], [0, -1]."""
    for l in range(2):  # along the tile rows: cols[a, l] = (A dy)[a, l]
        top, bottom = dys[:, 0::2, l], dys[:, 1::2, l]
        np.copyto(cols[0, l], top)
        np.add(top, bottom, out=cols[1, l])
        np.subtract(top, bottom, out=cols[2, l])
        np.negative(bottom, out=cols[3, l])
    left, right = cols[:, 0], cols[:, 1]  # along the tile columns, all four rows a at once
    d0, d1, d2, d3 = _tile_columns(dM)
    np.copyto(d0, left)
    np.add(left, right, out=d1)
    np.subtract(left, right, out=d2)
    np.negative(right, out=d3)
