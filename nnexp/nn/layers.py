"""The layer protocol, and the layers that are not convolutional: Dense, Flatten, Dropout.

Conventions (the same for every layer of nnexp.nn):

* ``x`` has the batch on axis 0: shape (N, *per_sample_shape).
* ``forward(x, training)`` remembers what ``backward`` needs and returns ``y``.
* ``backward(dout)`` takes dL/dy (the shape of ``y``), writes dL/dparam into
  ``self.grads`` and returns dL/dx (the shape of ``x``).
* ``params`` and ``grads`` map a name to an array; the arrays are made once
  and then only changed in place (``a[...] = ...``), so an optimizer can keep
  references to them.  ``buffers`` holds state that is saved with the weights
  but not trained (BatchNorm's running statistics).
* ``output_shape(shape)`` maps a per-sample input shape to the per-sample
  output shape (model building checks the sizes with it).

The float dtype is the parameters' (float32 by default, float64 for gradient
checks).  Hyper-parameters are Python floats, which NumPy applies to a
float32 array without making it float64.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import array_module
from .init import INITS

__all__ = ["Layer", "Dense", "Flatten", "Dropout", "check_float_dtype", "check_sizes_and_init"]


def check_float_dtype(dtype) -> np.dtype:
    """np.dtype(dtype), which must be float32 or float64."""
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


class Layer:
    """Base class: no parameters, output shape = input shape."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """Fully connected layer  y = x W + b.

    Shapes:  x (N, in)   W (in, out)   b (out,)   y (N, out)

    Backward, with G = dL/dy (N, out):
        dL/dW = x^T G          (in, out)
        dL/db = sum_n G[n]     (out,)
        dL/dx = G W^T          (N, in)

    W is stored (in, out), so the forward pass is one matrix product with no
    transpose.  Initial weights: ``init`` from nnexp/nn/init.py with
    fan_in = in, fan_out = out.
    """

    def __init__(self, in_features: int, out_features: int, init: str = "he",
                 rng: np.random.Generator | None = None, dtype=np.float32) -> None:
        super().__init__()
        check_sizes_and_init("Dense", init, in_features=in_features, out_features=out_features)
        self.dtype = check_float_dtype(dtype)
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init
        rng = np.random.default_rng() if rng is None else rng
        W, b = INITS[init](self.in_features, self.out_features, rng, self.dtype)
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.x: np.ndarray | None = None

    def checked_input(self, x: np.ndarray) -> np.ndarray:
        """x in the layer's dtype (pixels may come as uint8 or float64), or ValueError."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects input of shape (N, {self.in_features}), got {x.shape}")
        return x.astype(self.dtype, copy=False)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.x = self.checked_input(x)
        return self.x @ self.params["W"] + self.params["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.x is None:
            raise RuntimeError("Dense.backward called before forward")
        self.grads["W"][...] = self.x.T @ dout
        self.grads["b"][...] = dout.sum(axis=0)
        return dout @ self.params["W"].T

    def output_shape(self, input_shape: tuple) -> tuple:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"Dense({self.in_features}, {self.out_features}) cannot take "
                             f"per-sample input of shape {tuple(input_shape)}")
        return (self.out_features,)

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, init={self.init!r})"


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...).  Backward reshapes dL/dy back to x's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.x_shape: tuple | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.x_shape = x.shape
        # the size written out rather than -1, so that an empty batch (N = 0) works too
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.x_shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        return (math.prod(input_shape),)


class Dropout(Layer):
    """Inverted dropout with drop probability p.

    Training:    y = x * m,   m_i = [u_i >= p] / (1 - p),   u_i ~ U[0, 1)
    Evaluation:  y = x

    E[m_i] = 1, so the expected output in training equals the evaluation
    output and evaluation needs no rescaling.  Backward: dL/dx = dL/dy * m.
    The masks come from ``rng``, so a seeded run is reproducible bit for bit.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if not training or self.p == 0.0:
            self.mask = None
            return x
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        # drawn on the host from the layer's generator: a seed gives the same masks on every device
        keep = self.rng.random(x.shape, dtype=dtype) >= self.p
        self.mask = array_module(x).asarray(keep.astype(dtype) * dtype.type(1.0 / (1.0 - self.p)))
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self.mask is None else dout * self.mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
