"""Layers: small classes with a ``forward`` and a ``backward``.

Conventions (the same for every layer):

* ``x`` has the batch on axis 0: shape (N, *per_sample_shape).
* ``forward(x, training)`` caches what ``backward`` needs and returns ``y``.
* ``backward(dout)`` takes dL/dy (same shape as ``y``), writes dL/dparam into
  ``self.grads`` (overwriting, never accumulating: one forward, one backward)
  and returns dL/dx (same shape as ``x``).
* ``params`` and ``grads`` are dicts name -> ndarray with the same keys and
  shapes.  The arrays are created once and then only modified *in place*, so
  an optimizer can hold references to them.  ``buffers`` (usually empty) holds
  non-trained state that is saved with the weights (BatchNorm's running stats).
* No layer modifies the arrays it is given.

The float dtype is whatever the parameters were built with (float32 by
default).  Python float hyper-parameters keep float32 arrays float32 (NumPy 2
promotion rules); we convert every hyper-parameter with ``float()`` so that an
``np.float64`` scalar can never sneak in and upcast a whole batch to float64.
"""

from __future__ import annotations

import math

import numpy as np

from .init import INITS

__all__ = [
    "REQUIRED",
    "Layer",
    "Dense",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "Dropout",
]


class _Required:
    """Sentinel used as the default in the *_SPECS tables: the key must be given."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self):
        return (_Required, ())


REQUIRED = _Required()


def _check_float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_sizes_and_init(layer: str, init: str, **sizes) -> None:
    """ValueError naming the argument unless every size is a positive int and init is known."""
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{layer}: {name} must be a positive integer, got {v!r}")
    if init not in INITS:
        raise ValueError(f"{layer}: unknown init {init!r}; choose one of {sorted(INITS)}")


def is_channels_last(x: np.ndarray) -> bool:
    """True for an (N, C, H, W) array whose memory is (N, H, W, C): the layout
    Winograd convolutions produce (conv.py) and pass on as a transposed view."""
    return (x.ndim == 4 and x.shape[1] > 1 and x.strides[1] == x.itemsize
            and x.strides[3] == x.itemsize * x.shape[1])


def empty_nchw(shape: tuple, dtype, channels_last: bool) -> np.ndarray:
    """np.empty of an (N, C, H, W) shape, laid out (N, H, W, C) in memory when
    ``channels_last``.  Backward passes allocate their gradients in the layout
    of the forward activations: elementwise operations on arrays of two
    different layouts run several times slower in NumPy."""
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
    mask's layout).  The mask is converted to floats first: NumPy's loop for
    float times bool casts element by element and measured 2.5x slower than
    the conversion plus a float multiply.  The same values either way."""
    m = np.empty_like(mask, dtype=a.dtype)
    np.copyto(m, mask)
    return np.multiply(a, m, out=m if out is None else out)


class Layer:
    """Base class. params/grads: dicts name -> ndarray (same keys, same shapes).

    ``buffers``: state that is saved with the weights but not trained (no
    gradient, never seen by an optimizer), e.g. BatchNorm's running
    statistics.  Name -> ndarray, updated in place like params.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """Per-sample output shape (no batch dimension) for a per-sample input shape."""
        return tuple(input_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------


class Dense(Layer):
    """Fully connected layer  y = x @ W + b.

    Shapes:  x (N, in_features)  W (in_features, out_features)
             b (out_features,)   y (N, out_features)

    Backward, with G = dL/dy of shape (N, out):
        dL/dW = x.T @ G            (in, out)
        dL/db = G.sum(axis=0)      (out,)
        dL/dx = G @ W.T            (N, in)

    ``W`` is stored (in, out) so that the forward pass is a single row-major
    matmul ``x @ W`` with no transpose.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        check_sizes_and_init("Dense", init, in_features=in_features, out_features=out_features)
        self.dtype = _check_float_dtype(dtype)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.init = init
        rng = np.random.default_rng() if rng is None else rng
        W, b = INITS[init](self.in_features, self.out_features, rng, self.dtype)
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self._x: np.ndarray | None = None

    def _checked(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Dense expects input of shape (N, {self.in_features}), got {x.shape}"
            )
        # No-op when x already has our dtype; otherwise (uint8 pixels, float64
        # data) convert once here instead of letting every op upcast.
        return x.astype(self.dtype, copy=False)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = self._checked(x)
        self._x = x
        y = x @ self.params["W"]
        y += self.params["b"]  # broadcast over the batch, in place
        return y

    def infer(self, x: np.ndarray, W: np.ndarray, b: np.ndarray, relu: bool = False) -> np.ndarray:
        """Evaluation-mode x @ W + b with other weights (a batch-norm folded in,
        see BatchNorm.fold), and max(., 0) in place when ``relu``."""
        y = self._checked(x) @ W
        y += b
        return np.maximum(y, 0, out=y) if relu else y

    def backward(self, dout: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Fill grads["W"], grads["b"]; return dL/dx.

        ``need_input_grad=False`` skips the (N, in) matmul for dL/dx and returns
        None: Sequential uses it for the first layer, whose input is the data.
        """
        x = self._x
        if x is None:
            raise RuntimeError("Dense.backward called before forward")
        # Written straight into the persistent grad arrays (no temporaries).
        np.matmul(x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        if not need_input_grad:
            return None
        return dout @ self.params["W"].T

    def output_shape(self, input_shape: tuple) -> tuple:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Dense({self.in_features}, {self.out_features}) cannot take "
                f"per-sample input of shape {tuple(input_shape)}"
            )
        return (self.out_features,)

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, init={self.init!r})"


# --------------------------------------------------------------------------
# Activations (element-wise, no parameters; output shape = input shape)
# --------------------------------------------------------------------------


class ReLU(Layer):
    """y = max(x, 0).   dL/dx = dL/dy * [x > 0]   (any shape).

    The gradient at exactly x = 0 is taken to be 0 (the kink).
    """

    def __init__(self) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None
        self._x: np.ndarray | None = None
        self._zeros = np.zeros(0)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        # Training keeps the mask (bool, 1 byte per element: cheaper to keep
        # than x).  Evaluation keeps x and makes the mask only if a backward
        # asks for it: one pass less over every activation at inference.
        self._mask, self._x = (x > 0, None) if training else (None, x)
        return self._max0(x)

    def _max0(self, x: np.ndarray) -> np.ndarray:
        """max(x, 0), in x's memory layout.  Taken against a row of zeros, one
        sample long, over x's memory seen as one row per sample: NumPy's
        maximum against the scalar 0 measured 2-3x slower than against an
        array (the same values, -0.0 and NaN included)."""
        found = per_sample_rows(x) if x.dtype.kind == "f" else None
        if found is None:
            return np.maximum(x, 0)
        rows, order = found
        if self._zeros.shape != rows.shape[1:] or self._zeros.dtype != x.dtype:
            self._zeros = np.zeros(rows.shape[1:], x.dtype)
        y = np.maximum(rows, self._zeros)
        return from_rows(y, x.shape, order)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        mask = self._x > 0 if self._mask is None else self._mask
        return times_mask(dout, mask)


class LeakyReLU(Layer):
    """y = x if x > 0 else alpha * x.   dL/dx = dL/dy * (1 if x > 0 else alpha)."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        alpha = float(alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"LeakyReLU: alpha must be a finite number >= 0, got {alpha}")
        self.alpha = alpha
        self._slope: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        # slope = 1 where x > 0, alpha elsewhere; then y = slope * x and
        # dL/dx = slope * dL/dy.  (Arithmetic on the mask is much faster than
        # np.where / masked copies, which do not vectorise on random masks.)
        dt = x.dtype if x.dtype.kind == "f" else np.float64
        slope = (x > 0).astype(dt)
        slope *= 1.0 - self.alpha
        slope += self.alpha
        self._slope = slope
        return x * slope

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self._slope

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)).   dL/dx = dL/dy * y * (1 - y).

    Computed as 0.5 * (1 + tanh(x / 2)), which is the same function but never
    overflows (exp(-x) does for x < -88 in float32).
    """

    def __init__(self) -> None:
        super().__init__()
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y = np.multiply(x, 0.5)
        np.tanh(y, out=y)
        y += 1
        y *= 0.5
        self._y = y
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y = self._y
        dx = 1 - y
        dx *= y
        dx *= dout
        return dx


class Tanh(Layer):
    """y = tanh(x).   dL/dx = dL/dy * (1 - y**2)."""

    def __init__(self) -> None:
        super().__init__()
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y = self._y
        dx = y * y
        np.subtract(1, dx, out=dx)
        dx *= dout
        return dx


# --------------------------------------------------------------------------
# Shape and regularisation layers
# --------------------------------------------------------------------------


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...).  Backward reshapes back (a view, no
    copy, unless the input was a channels-last image batch: then a copy in that
    layout)."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple | None = None
        self._channels_last = False

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._shape, self._channels_last = x.shape, is_channels_last(x)
        # explicit size rather than -1, so that an empty batch (N = 0) works too
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if not self._channels_last:
            return dout.reshape(self._shape)
        dx = empty_nchw(self._shape, dout.dtype, True)   # the input's layout (see empty_nchw)
        dx[...] = dout.reshape(self._shape)
        return dx

    def output_shape(self, input_shape: tuple) -> tuple:
        return (math.prod(input_shape),)


class Dropout(Layer):
    """Inverted dropout.

    Training:  y = x * m,  m_i = [u_i >= p] / (1 - p),  u_i ~ U[0, 1)
    so E[y] = x and evaluation needs no rescaling.  dL/dx = dL/dy * m.
    Evaluation (training=False) or p == 0: identity.

    The mask is drawn from ``rng`` (an ``np.random.Generator``), so a run is
    reproducible bit for bit given the seed.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        p = float(p)
        if not (0.0 <= p < 1.0):
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        u = self.rng.random(x.shape, dtype=dt)
        keep = u >= self.p
        # Reuse u's memory for the mask: 1/(1-p) where kept, 0 where dropped.
        np.multiply(keep, 1.0 / (1.0 - self.p), out=u, dtype=dt)
        self._mask = u
        return x * u

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._mask is None:  # last forward was the identity
            return dout
        return dout * self._mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
