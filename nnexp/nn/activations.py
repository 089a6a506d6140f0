"""Element-wise activations: y = f(x) and dL/dx = dL/dy * f'(x), any shape, no parameters."""

from __future__ import annotations

import numpy as np

from .arrays import array_module
from .layers import Layer

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh"]


class ReLU(Layer):
    """y = max(x, 0).   dL/dx = dL/dy * [x > 0].

    At x = 0 (the kink) the gradient is taken to be 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.positive: np.ndarray | None = None   # [x > 0], a boolean mask

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.positive = x > 0
        return array_module(x).maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.positive


class LeakyReLU(Layer):
    """y = x if x > 0 else alpha * x.   dL/dx = dL/dy * (1 if x > 0 else alpha)."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        alpha = float(alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"LeakyReLU: alpha must be a finite number >= 0, got {alpha}")
        self.alpha = alpha
        self.slope: np.ndarray | None = None   # f'(x): 1 or alpha

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
        self.slope = array_module(x).where(x > 0, dtype.type(1.0), dtype.type(self.alpha))
        return x * self.slope

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.slope

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)).   dL/dx = dL/dy * y (1 - y).

    Computed as (1 + tanh(x / 2)) / 2, the same function, which never
    overflows (exp(-x) does for x < -88 in float32).
    """

    def __init__(self) -> None:
        super().__init__()
        self.y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.y = 0.5 * (1 + array_module(x).tanh(0.5 * x))
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * ((1 - self.y) * self.y)


class Tanh(Layer):
    """y = tanh(x).   dL/dx = dL/dy * (1 - y^2)."""

    def __init__(self) -> None:
        super().__init__()
        self.y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.y = array_module(x).tanh(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.y * self.y)
