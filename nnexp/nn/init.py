"""Weight initialisers for Dense layers.

Each initialiser is a function ``init(fan_in, fan_out, rng, dtype) -> (W, b)``
with ``W`` of shape (fan_in, fan_out) and ``b`` of shape (fan_out,).

Random numbers are always drawn in float64 and then cast, so a float32 and a
float64 model built from the same seed start from the same weights (up to
rounding) -- handy when comparing against a float64 gradient check.

================  ==========================================  ============
name              weights                                     biases
================  ==========================================  ============
``he``            N(0, std = sqrt(2 / fan_in))                zero
``xavier``        U(-a, a), a = sqrt(6 / (fan_in + fan_out))  zero
``small_normal``  N(0, std = 0.01)                            zero
``uniform``       U(-0.5, 0.5)                                U(-0.5, 0.5)
================  ==========================================  ============

``he`` (He et al. 2015) keeps the activation variance constant through ReLU
layers; ``xavier`` (Glorot & Bengio 2010) is the classic choice for tanh and
sigmoid.  ``small_normal`` is the "small random weights" of many tutorials
(fine for shallow nets, it makes deep ones start with vanishing signals), and
``uniform`` reproduces the popular Kaggle "784-10-10 from scratch" notebook,
which initialises with ``np.random.rand(...) - 0.5`` -- biases included.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INITS", "he", "xavier", "small_normal", "uniform"]


def he(fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32):
    """He/Kaiming normal: W ~ N(0, sqrt(2/fan_in)), b = 0."""
    std = math.sqrt(2.0 / fan_in)
    W = (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype)
    return W, np.zeros(fan_out, dtype=dtype)


def xavier(fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32):
    """Glorot/Xavier uniform: W ~ U(-a, a), a = sqrt(6/(fan_in+fan_out)), b = 0."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    W = rng.uniform(-a, a, size=(fan_in, fan_out)).astype(dtype)
    return W, np.zeros(fan_out, dtype=dtype)


def small_normal(fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32):
    """Small random weights: W ~ N(0, 0.01) (std 0.01), b = 0."""
    W = (rng.standard_normal((fan_in, fan_out)) * 0.01).astype(dtype)
    return W, np.zeros(fan_out, dtype=dtype)


def uniform(fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32):
    """U(-0.5, 0.5) for weights AND biases, like ``np.random.rand(...) - 0.5``."""
    W = (rng.random((fan_in, fan_out)) - 0.5).astype(dtype)
    b = (rng.random(fan_out) - 0.5).astype(dtype)
    return W, b


INITS = {
    "he": he,
    "xavier": xavier,
    "small_normal": small_normal,
    "uniform": uniform,
}
