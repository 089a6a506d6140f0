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

from .arrays import array_module, to_numpy

__all__ = ["check_layer_gradients", "check_loss_gradients", "check_model_gradients",
           "check_model_layers", "relative_error", "numerical_gradient"]


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max_i |a_i - n_i| / (max_i |a_i| + max_i |n_i|); 0.0 when both are all zero."""
    a = to_numpy(analytic).astype(np.float64, copy=False)
    n = to_numpy(numeric).astype(np.float64, copy=False)
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
    if not array_module(z).shares_memory(flat, z):
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
    x = array_module(x).array(x, dtype=np.float64)  # our own copy, perturbed in place below

    def fwd():
        if before_forward is not None:
            before_forward()
        return layer.forward(x, training)

    y = fwd()
    R = array_module(y).asarray(rng.standard_normal(y.shape))

    def L() -> float:
        return float((R * fwd()).sum())

    # Analytic gradients first (copies: later forwards/backwards may overwrite).
    fwd()
    dx = to_numpy(layer.backward(R)).astype(np.float64)
    grads = {name: to_numpy(layer.grads[name]).copy() for name in layer.params}

    errors = {"x": relative_error(dx, numerical_gradient(L, x, eps))}
    for name, p in layer.params.items():
        errors[name] = relative_error(grads[name], numerical_gradient(L, p, eps))
    return errors


def check_loss_gradients(loss, logits: np.ndarray, y: np.ndarray,
                         eps: float = 1e-6) -> dict[str, float]:
    """Max relative error of ``loss.backward()`` w.r.t. the logits: {"logits": err}."""
    logits = array_module(logits).array(logits, dtype=np.float64)
    loss.forward(logits, y)
    analytic = to_numpy(loss.backward()).astype(np.float64)
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


#: Below this, a float64 central difference at eps = 1e-6 cannot tell a
#: gradient from 0 (round-off ~1e-16 * |L| / eps).
ZERO_GRADIENT = 1e-8


def check_model_layers(model, loss, x: np.ndarray, y: np.ndarray, samples: int = 30,
                       rng: np.random.Generator | None = None, eps: float = 1e-6,
                       before_forward=None) -> list[dict]:
    """Layer by layer, the analytic gradients of a whole float64 model against
    central differences: dL/d(the layer's input) and dL/d(each parameter).

    One training-mode forward keeps every layer's input h_i; backprop then
    gives dL/dh_i and dL/dparam for every layer from the first trainable one
    on.  Each is checked on ``samples`` randomly chosen entries (every entry
    of a smaller array): the entry is moved by +-eps and the network is run
    from that layer on.  The error is max |analytic - numeric| over those
    entries divided by (max |analytic| over the whole array + max |numeric|),
    the max-norm relative error of relative_error.

    Returns one dict per check: layer (index), type (class name), name ("x"
    or the parameter's), shape, checked (entries), error, largest (the
    largest |gradient| seen) and zero (True when the gradient is 0 up to the
    round-off of a central difference, ZERO_GRADIENT; its error is 0 then).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    for i, layer in enumerate(model.layers):
        _require_float64(layer, f"layer {i} ({type(layer).__name__})")
    layers, first = model.layers, model.first_trainable

    def run_from(i: int, h: np.ndarray) -> float:
        if before_forward is not None:
            before_forward()
        for layer in layers[i:]:
            h = layer.forward(h, True)
        return loss.forward(h, y)

    if before_forward is not None:
        before_forward()
    inputs = [model.xp.array(x, dtype=np.float64)]
    for layer in layers:
        inputs.append(layer.forward(inputs[-1], True))
    loss.forward(inputs[-1], y)
    dout, analytic = loss.backward(), {}
    for i in range(len(layers) - 1, first - 1, -1):
        dout = layers[i].backward(dout)
        analytic[i] = {"x": to_numpy(dout).astype(np.float64)}
        analytic[i].update({name: to_numpy(g).copy() for name, g in layers[i].grads.items()})

    rows = []
    for i in range(first, len(layers)):
        h = model.xp.array(inputs[i], order="C")   # a copy of the layer's input, perturbed below
        targets = [("x", h)] + list(layers[i].params.items())
        for name, z in targets:
            a = analytic[i][name]
            flat = z.reshape(-1)
            if not model.xp.shares_memory(flat, z):
                raise ValueError(f"layer {i}: {name} is not contiguous, it cannot be perturbed in place")
            # Inputs exactly 0 are left out: after a ReLU they tie in a max-pool window,
            # a kink where a central difference averages two slopes.
            nonzero = to_numpy(model.xp.flatnonzero(flat))
            candidates = nonzero if name == "x" and nonzero.size else np.arange(flat.size)
            picked = rng.choice(candidates, min(samples, candidates.size), replace=False)
            numeric, exact = [], []
            for k in picked:
                old = flat[k]
                flat[k] = old + eps
                plus = run_from(i, h)
                flat[k] = old - eps
                minus = run_from(i, h)
                flat[k] = old
                numeric.append((plus - minus) / (2 * eps))
                exact.append(a.reshape(-1)[k])
            numeric, exact = np.array(numeric), np.array(exact)
            largest = max(np.abs(a).max() if a.size else 0.0, np.abs(numeric).max() if numeric.size else 0.0)
            vanishes = largest < ZERO_GRADIENT   # both say 0 (a bias before a batch-norm, say)
            error = 0.0 if vanishes or not numeric.size else float(
                np.abs(exact - numeric).max() / (np.abs(a).max() + np.abs(numeric).max()))
            rows.append({"layer": i, "type": type(layers[i]).__name__, "name": name, "shape": tuple(z.shape),
                         "checked": len(picked), "error": error, "largest": float(largest), "zero": bool(vanishes)})
    return rows
