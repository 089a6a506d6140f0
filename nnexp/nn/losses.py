"""Softmax + cross-entropy, fused.

For logits z (N, C) and integer labels y (N,):

    log p_ic = z_ic - m_i - log sum_k exp(z_ik - m_i),   m_i = max_k z_ik   (log-sum-exp)
    L        = -(1/N) sum_i sum_c t_ic log p_ic

with the target t = one_hot(y) or, with label smoothing eps,
t = (1 - eps) * one_hot(y) + eps / C.  Because softmax and cross-entropy are
fused, the gradient is simply

    dL/dz = (p - t) / N

which is both cheaper and far better conditioned than chaining the softmax
Jacobian with d(-log p)/dp.
"""

from __future__ import annotations

import numpy as np

from .arrays import array_module

__all__ = ["softmax", "log_softmax", "SoftmaxCrossEntropy"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (N, C) logits, stable for any finite input."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # max of each row -> 0
    lse = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    shifted -= lse
    return shifted


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits -> probabilities (N, C), rows sum to 1.

    Subtracting the row max first means exp never overflows (logits of 1e4
    are fine); the largest entry becomes exp(0) = 1, so the sum is >= 1.
    """
    p = logits - logits.max(axis=1, keepdims=True)
    array_module(logits).exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


class SoftmaxCrossEntropy:
    """Mean softmax cross-entropy over a batch, optionally with label smoothing.

    forward(logits (N, C), y int (N,)) -> float   mean loss; caches probs
    backward() -> (N, C)                           dL/dlogits = (probs - target) / N
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        label_smoothing = float(label_smoothing)
        if not (0.0 <= label_smoothing < 1.0):
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.label_smoothing = label_smoothing
        self.probs: np.ndarray | None = None   # softmax of the last logits
        self.y: np.ndarray | None = None       # the last labels, in the logits' array module

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        if logits.ndim != 2:
            raise ValueError(f"logits must be (N, C), got shape {logits.shape}")
        N, C = logits.shape
        xp = array_module(logits)
        y = xp.asarray(y)
        if y.shape != (N,):
            raise ValueError(f"labels must have shape ({N},), got {y.shape}")
        if y.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        if N and (y.min() < 0 or y.max() >= C):
            raise ValueError(f"labels must lie in [0, {C}), got range [{y.min()}, {y.max()}]")

        # z = logits - row max, so exp(z) <= 1 never overflows; s = sum exp(z) >= 1.
        z = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=1, keepdims=True)
        log_s = xp.log(s)[:, 0]
        # -log p_iy = -(z_iy - log s_i)
        nll = log_s - z[xp.arange(N), y]
        eps = self.label_smoothing
        if eps:
            # t = (1-eps) one_hot + eps/C:  loss_i = (1-eps) nll_i - (eps/C) sum_c log p_ic,
            # and -(1/C) sum_c log p_ic = log s_i - mean_c z_ic
            nll *= 1.0 - eps
            nll += eps * (log_s - z.mean(axis=1))
        e /= s
        self.probs = e
        self.y = y
        # Accumulate the mean in float64: the loss is a logged number, keep it exact.
        return float(nll.sum(dtype=np.float64)) / N if N else 0.0

    def backward(self) -> np.ndarray:
        if self.probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        probs, y = self.probs, self.y
        N, C = probs.shape
        eps = self.label_smoothing
        inv_n = 1.0 / N if N else 0.0
        # (p - t) / N  with t = (1-eps) one_hot(y) + eps/C
        grad = probs * inv_n
        grad[array_module(probs).arange(N), y] -= (1.0 - eps) * inv_n
        if eps:
            grad -= eps / C * inv_n
        return grad
