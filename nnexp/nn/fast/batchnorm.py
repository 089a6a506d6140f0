"""The fast engine's batch normalisation: BatchNorm's values with fewer passes,
in the activations' memory layout, and folded into the preceding layer for
evaluation."""

from __future__ import annotations

import numpy as np

from ..batchnorm import BatchNorm
from .layout import is_channels_last

__all__ = ["FastBatchNorm"]


class FastBatchNorm(BatchNorm):
    """BatchNorm computed with fewer passes over the activations.

    y = x * a + c per channel, with a = gamma / sqrt(var + eps) and
    c = beta - mu * a: two passes over the output instead of materialising
    xhat; backward gets xhat back from what is kept (x - mu, and 1/std).
    A channels-last image batch (the Winograd convolution's output) is
    normalised as the (N*H, W*C) matrix it is in memory, and handed back in
    its layout.  Sums per channel are reductions over contiguous rows.
    """

    # BatchNorm's constructor; what a forward keeps starts as these
    _xc: np.ndarray | None = None   # x - mu (training) or x (evaluation)
    _mu: np.ndarray | None = None   # None in training: xc is centred already
    _inv_std: np.ndarray | None = None
    _training = True
    _image_shape: tuple | None = None   # set for a channels-last image batch
    _groups = 1                          # W for a channels-last batch, else 1

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
        """sum(a * b) per channel (axis 1), without the a * b temporary."""
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
    # sample (_spread): broadcasting over long rows is faster than over short
    # ones.  Elementwise, so the same numbers.

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

    def _channelwise(self, op, a: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
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
            xc = self._channelwise(np.subtract, x, mu)     # kept for backward
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
        y = self._channelwise(np.multiply, self._xc, scale)
        self._channelwise(np.add, y, shift.astype(self.dtype, copy=False), out=y)
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
            return self._channelwise(np.multiply, dout, scale)
        m = dout.size // self.num_features
        # dx = gamma/sqrt(var+eps) * (G - dbeta/m - xhat * dgamma/m)
        dx = self._channelwise(np.multiply, xc, -self.grads["gamma"] * inv_std / m)
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
