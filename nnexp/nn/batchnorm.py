"""Batch normalisation (Ioffe & Szegedy 2015)."""

from __future__ import annotations

import math

import numpy as np

from .arrays import array_module
from .layers import Layer, check_float_dtype

__all__ = ["BatchNorm"]


class BatchNorm(Layer):
    """Normalise each feature (or channel) over the batch, then scale and shift.

    Input (N, C), statistics over N, or (N, C, H, W), statistics over N, H
    and W: one mean and variance per channel.  With m values per channel:

        mu   = mean(x)                    var = mean((x - mu)^2)   (biased, as PyTorch)
        xhat = (x - mu) / sqrt(var + eps)
        y    = gamma * xhat + beta

    Backward, sums over the same axes as the statistics, G = dL/dy:

        dL/dbeta  = sum(G)
        dL/dgamma = sum(G * xhat)
        dL/dx     = gamma / sqrt(var + eps) * (G - dL/dbeta / m - xhat * dL/dgamma / m)

    (mu and var depend on x: the two subtracted terms are their share.)

    Buffers, saved with the weights and never trained: running_mean (starts
    at 0) and running_var (starts at 1), updated by every training forward
    as in PyTorch, with the unbiased variance:

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    Evaluation (training=False) normalises with the running statistics
    instead; they are constants, so there dL/dx = gamma / sqrt(running_var + eps) * G.
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
        self.dtype = check_float_dtype(dtype)
        C = self.num_features
        self.params = {"gamma": np.ones(C, self.dtype), "beta": np.zeros(C, self.dtype)}
        self.grads = {"gamma": np.zeros(C, self.dtype), "beta": np.zeros(C, self.dtype)}
        self.buffers = {"running_mean": np.zeros(C, self.dtype), "running_var": np.ones(C, self.dtype)}
        self.xhat: np.ndarray | None = None
        self.inv_std: np.ndarray | None = None   # 1 / sqrt(var + eps), per channel
        self.training = True

    def axes(self, x: np.ndarray) -> tuple:
        """The axes the statistics run over: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
        C = self.num_features
        if x.ndim == 2 and x.shape[1] == C:
            return (0,)
        if x.ndim == 4 and x.shape[1] == C:
            return (0, 2, 3)
        raise ValueError(f"BatchNorm({C}) expects input of shape (N, {C}) or (N, {C}, H, W), got {x.shape}")

    def per_channel(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        """A (C,) vector shaped to broadcast along x's channel axis."""
        return v.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        axes = self.axes(x)
        x = x.astype(self.dtype, copy=False)
        if training:
            m = x.size // self.num_features
            if m < 2:
                raise ValueError("BatchNorm needs more than one value per channel in training mode, "
                                 f"got input of shape {x.shape}")
            mu, var = x.mean(axis=axes), x.var(axis=axes)
            momentum = self.momentum
            self.buffers["running_mean"][...] = (1 - momentum) * self.buffers["running_mean"] + momentum * mu
            self.buffers["running_var"][...] = (1 - momentum) * self.buffers["running_var"] + momentum * var * m / (m - 1)
        else:
            mu, var = self.buffers["running_mean"], self.buffers["running_var"]
        self.inv_std = 1.0 / array_module(x).sqrt(var + self.eps)
        self.xhat = (x - self.per_channel(mu, x)) * self.per_channel(self.inv_std, x)
        self.training = training
        return self.per_channel(self.params["gamma"], x) * self.xhat + self.per_channel(self.params["beta"], x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.xhat is None:
            raise RuntimeError("BatchNorm.backward called before forward")
        axes = self.axes(dout)
        self.grads["beta"][...] = dout.sum(axis=axes)
        self.grads["gamma"][...] = (dout * self.xhat).sum(axis=axes)
        scale = self.per_channel(self.params["gamma"] * self.inv_std, dout)
        if not self.training:                     # running statistics: y is affine in x
            return scale * dout
        m = dout.size // self.num_features
        dbeta = self.per_channel(self.grads["beta"], dout)
        dgamma = self.per_channel(self.grads["gamma"], dout)
        return scale * (dout - dbeta / m - self.xhat * dgamma / m)

    def __repr__(self) -> str:
        return f"BatchNorm({self.num_features}, momentum={self.momentum}, eps={self.eps})"
