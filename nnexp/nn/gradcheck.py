"""Numerical gradient checking with float64 central differences.

To check a layer with a vector output y = f(x) we reduce it to a scalar with
a random linear functional  L = sum(R * f(x)),  R ~ N(0, 1) fixed.  Then
dL/dy = R, so ``layer.backward(R)`` must return dL/dx and fill dL/dparams, and
every partial derivative can be estimated as

    dL/dz ~ (L(z + eps) - L(z - eps)) / (2 eps)       (error O(eps^2))

The reported error for an array is its largest element-wise error relative
to the array's largest gradient (a max-norm relative error)

    max_i |a_i - n_i| / (max_i |a_i| + max_i |n_i|)

Dividing each entry by its *own* magnitude instead would be meaningless for
entries that are ~0: a central difference has an absolute round-off error of
about 1e-16 * |L| / eps ~ 1e-10, which is huge relative to a gradient entry of
1e-7.  With float64 and eps = 1e-6, correct code gives ~1e-9 or less; a wrong
backward gives something of order 1e-2 to 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_layer_gradients", "check_loss_gradients", "check_model_gradients",
           "relative_error", "numerical_gradient"]


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max_i |a_i - n_i| / (max_i |a_i| + max_i |n_i|); 0.0 when both are all zero."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return 0.0
    scale = np.abs(a).max() + np.abs(n).max()
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - n).max() / scale)


def numerical_gradient(f, z: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of scalar ``f()`` w.r.t. array ``z``, perturbed in place.

    ``z`` is restored exactly after every probe.
    """
    grad = np.zeros(z.shape, dtype=np.float64)
    flat = z.reshape(-1)  # a view: writing flat[i] perturbs z
    if not np.shares_memory(flat, z):
        raise ValueError("numerical_gradient needs a contiguous array to perturb")
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def _require_float64(obj, what: str) -> None:
    for name, p in getattr(obj, "params", {}).items():
        if p.dtype != np.float64:
            raise ValueError(
                f"gradient check of {what} needs float64 parameters, but {name!r} is "
                f"{p.dtype}; build it with dtype=np.float64"
            )


def check_layer_gradients(layer, x: np.ndarray, rng: np.random.Generator,
                          eps: float = 1e-6, training: bool = True,
                          before_forward=None) -> dict[str, float]:
    """Max relative error of ``layer.backward`` for the input ("x") and each param.

    ``before_forward``, if given, is called before every forward pass -- e.g.
    to reseed a Dropout layer's rng so that every pass uses the same mask.
    """
    _require_float64(layer, type(layer).__name__)
    x = np.array(x, dtype=np.float64)  # our own copy, perturbed in place below

    def fwd():
        if before_forward is not None:
            before_forward()
        return layer.forward(x, training)

    y = fwd()
    R = rng.standard_normal(y.shape)

    def L() -> float:
        return float(np.sum(R * fwd()))

    # Analytic gradients first (copies: later forwards/backwards may overwrite).
    fwd()
    dx = np.array(layer.backward(R), dtype=np.float64)
    grads = {name: layer.grads[name].copy() for name in layer.params}

    errors = {"x": relative_error(dx, numerical_gradient(L, x, eps))}
    for name, p in layer.params.items():
        errors[name] = relative_error(grads[name], numerical_gradient(L, p, eps))
    return errors


def check_loss_gradients(loss, logits: np.ndarray, y: np.ndarray,
                         eps: float = 1e-6) -> dict[str, float]:
    """Max relative error of ``loss.backward()`` w.r.t. the logits: {"logits": err}."""
    logits = np.array(logits, dtype=np.float64)
    loss.forward(logits, y)
    analytic = np.array(loss.backward(), dtype=np.float64)
    numeric = numerical_gradient(lambda: loss.forward(logits, y), logits, eps)
    return {"logits": relative_error(analytic, numeric)}


def check_model_gradients(model, loss, x: np.ndarray, y: np.ndarray,
                          eps: float = 1e-6, before_forward=None) -> dict[str, float]:
    """Max relative error of model + loss backprop for every named parameter.

    Runs in training mode; pass ``before_forward`` to fix dropout masks.
    """
    for i, layer in enumerate(model.layers):
        _require_float64(layer, f"layer {i} ({type(layer).__name__})")
    x = np.array(x, dtype=np.float64)

    def L() -> float:
        if before_forward is not None:
            before_forward()
        return loss.forward(model.forward(x, training=True), y)

    L()
    model.backward(loss.backward())
    analytic = {name: g.copy() for name, _, g in model.parameters()}
    return {
        name: relative_error(analytic[name], numerical_gradient(L, p, eps))
        for name, p, _ in model.parameters()
    }
