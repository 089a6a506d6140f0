"""Optimizers: the update rules, one parameter at a time.

An optimizer gets ``model.parameters()``, a list of ``(name, param, grad)``
triples, and keeps references to those arrays: backward fills ``grad``,
``step(lr)`` updates ``param`` in place.  The learning rate comes with every
step, so a schedule can drive it; the other hyper-parameters are fixed.

The rules are PyTorch's (``torch.optim``): where weight decay enters, the
momentum buffer, Adam's bias correction, so a run can be compared step by
step with a PyTorch run.  Weight decay applies to weight matrices and
kernels (ndim >= 2), never to biases and batch-norm's scale and shift
(torch.optim decays every parameter it is given; this split is what its
users get with two parameter groups).

In every rule below, d is the gradient with the weight decay added where it
applies (coupled L2):  d = g + wd * p.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import array_module, host_copy
from .specs import options_of

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "AdamW",
           "OPTIMIZERS", "OPTIMIZER_SPECS", "make_optimizer"]


def _in_unit(name: str, v, cls: str, lo_inclusive: bool = True) -> float:
    v = float(v)
    if not ((0.0 <= v < 1.0) if lo_inclusive else (0.0 < v < 1.0)):
        raise ValueError(f"{cls}: {name} must be in {'[0, 1)' if lo_inclusive else '(0, 1)'}, got {v}")
    return v


def _positive(name: str, v, cls: str) -> float:
    v = float(v)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{cls}: {name} must be a positive number, got {v}")
    return v


def _non_negative(name: str, v, cls: str) -> float:
    v = float(v)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{cls}: {name} must be a number >= 0, got {v}")
    return v


class Optimizer:
    """Base class.

    step(lr)            one update with learning rate ``lr``
    state_dict()        {"t": steps taken, "<slot>.<param name>": buffer copy, ...}
    load_state_dict(d)  the buffers back, in place (keys and shapes checked)

    ``slots`` names the per-parameter state buffers (Adam: "m" and "v");
    ``self.state[slot][i]`` is the buffer of parameter i, zero at the start.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, params, weight_decay: float = 0.0) -> None:
        cls = type(self).__name__
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{cls}: got an empty parameter list")
        seen = set()
        for item in self.params:
            if len(item) != 3:
                raise ValueError(f"{cls}: params must be (name, param, grad) triples")
            name, p, g = item
            if name in seen:
                raise ValueError(f"{cls}: duplicate parameter name {name!r}")
            seen.add(name)
            if not hasattr(p, "shape") or not hasattr(g, "shape"):
                raise ValueError(f"{cls}: parameter {name!r} and its grad must be arrays")
            if p.shape != g.shape:
                raise ValueError(f"{cls}: parameter {name!r} has shape {p.shape} but its grad {g.shape}")
        self.weight_decay = _non_negative("weight_decay", weight_decay, cls)
        #: per parameter: does weight decay apply (weights, not biases)
        self.decay = [self.weight_decay > 0 and p.ndim >= 2 for _, p, _ in self.params]
        self.t = 0
        self.state: dict[str, list[np.ndarray]] = self.make_state()

    def make_state(self) -> dict[str, list[np.ndarray]]:
        """{slot: [a zero buffer shaped like each parameter]}."""
        return {s: [array_module(p).zeros_like(p) for _, p, _ in self.params] for s in self.slots}

    def step(self, lr: float) -> None:
        raise NotImplementedError

    def decayed_grad(self, i: int) -> np.ndarray:
        """d = g + wd * p for parameter i (g alone where weight decay does not apply)."""
        _, p, g = self.params[i]
        return g + self.weight_decay * p if self.decay[i] else g

    def zero_grad(self) -> None:
        """Every grad to 0 (the layers overwrite their grads, so training never needs it)."""
        for _, _, g in self.params:
            g.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as PyTorch names it: exactly the buffers this optimizer keeps."""
        d = {"t": np.array(self.t, dtype=np.int64)}
        for s in self.slots:
            for (name, _, _), buf in zip(self.params, self.state[s]):
                d[f"{s}.{name}"] = host_copy(buf)
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore state_dict()'s output in place; ValueError naming a
        missing, unexpected or misshapen entry (and nothing changed then)."""
        cls = type(self).__name__
        expected = ["t"] + [f"{s}.{name}" for s in self.slots for name, _, _ in self.params]
        missing = [k for k in expected if k not in d]
        unexpected = [k for k in d if k not in expected]
        if missing or unexpected:
            raise ValueError(f"{cls}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for s in self.slots:
            for (name, _, _), buf in zip(self.params, self.state[s]):
                if np.shape(d[f"{s}.{name}"]) != buf.shape:
                    raise ValueError(f"{cls}.load_state_dict: {s}.{name} has shape "
                                     f"{np.shape(d[f'{s}.{name}'])}, expected {buf.shape}")
        for s in self.slots:
            for (name, _, _), buf in zip(self.params, self.state[s]):
                value = np.asarray(d[f"{s}.{name}"])
                if not np.can_cast(value.dtype, buf.dtype, casting="same_kind"):
                    raise ValueError(f"{cls}.load_state_dict: {s}.{name} is {value.dtype}, expected {buf.dtype}")
                buf[...] = array_module(buf).asarray(value, dtype=buf.dtype)
        self.t = int(d["t"])


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum mu.

        plain:     p <- p - lr * d
        momentum:  b <- mu * b + d            (b starts at 0)
                   p <- p - lr * b
        Nesterov:  b <- mu * b + d
                   p <- p - lr * (d + mu * b)

    lr multiplies the buffer at every step (it is not folded into it), so a
    new learning rate takes effect at once, as in PyTorch.
    """

    slots = ("buf",)

    def __init__(self, params, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        cls = type(self).__name__
        self.momentum = _in_unit("momentum", momentum, cls)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError(f"{cls}: Nesterov momentum needs momentum > 0")
        if self.momentum == 0.0:
            self.slots = ()   # plain SGD keeps no state
        super().__init__(params, weight_decay)

    def step(self, lr: float) -> None:
        lr, mu = float(lr), self.momentum
        self.t += 1
        for i, (_, p, _) in enumerate(self.params):
            d = self.decayed_grad(i)
            if mu == 0.0:
                p -= lr * d
                continue
            b = self.state["buf"][i]
            b[...] = mu * b + d
            p -= lr * (d + mu * b) if self.nesterov else lr * b

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")


class Momentum(SGD):
    """SGD with classical momentum, mu = 0.9 by default (``"momentum"``)."""

    def __init__(self, params, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


class Nesterov(SGD):
    """SGD with Nesterov momentum, mu = 0.9 by default (``"nesterov"``)."""

    def __init__(self, params, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(params, momentum=momentum, nesterov=True, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e; PyTorch's non-centred form without momentum).

        v <- rho * v + (1 - rho) * d^2          (v starts at 0)
        p <- p - lr * d / (sqrt(v) + eps)

    rho is PyTorch's ``alpha`` (its default is 0.99; ours 0.9, Hinton's value).
    """

    slots = ("v",)

    def __init__(self, params, rho: float = 0.9, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        cls = type(self).__name__
        self.rho = _in_unit("rho", rho, cls)
        self.eps = _positive("eps", eps, cls)
        super().__init__(params, weight_decay)

    def step(self, lr: float) -> None:
        lr, rho = float(lr), self.rho
        self.t += 1
        for i, (_, p, _) in enumerate(self.params):
            d, v = self.decayed_grad(i), self.state["v"][i]
            v[...] = rho * v + (1 - rho) * d * d
            p -= lr * d / (array_module(v).sqrt(v) + self.eps)

    def __repr__(self) -> str:
        return f"RMSprop(rho={self.rho}, eps={self.eps}, weight_decay={self.weight_decay})"


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with coupled L2 weight decay, as torch.optim.Adam.

    With t = 1, 2, ... the step count and m, v starting at 0:

        m <- b1 * m + (1 - b1) * d              first moment
        v <- b2 * v + (1 - b2) * d^2            second moment
        m_hat = m / (1 - b1^t)                  bias corrections
        v_hat = v / (1 - b2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    For decoupled weight decay use AdamW.
    """

    slots = ("m", "v")

    def __init__(self, params, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        cls = type(self).__name__
        self.beta1 = _in_unit("beta1", beta1, cls)
        self.beta2 = _in_unit("beta2", beta2, cls)
        self.eps = _positive("eps", eps, cls)
        super().__init__(params, weight_decay)

    def step(self, lr: float) -> None:
        self.adam_step(float(lr), coupled_l2=True)

    def adam_step(self, lr: float, coupled_l2: bool) -> None:
        b1, b2 = self.beta1, self.beta2
        self.t += 1
        for i, (_, p, g) in enumerate(self.params):
            d = self.decayed_grad(i) if coupled_l2 else g
            m, v = self.state["m"][i], self.state["v"][i]
            m[...] = b1 * m + (1 - b1) * d
            v[...] = b2 * v + (1 - b2) * d * d
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            p -= lr * m_hat / (array_module(v).sqrt(v_hat) + self.eps)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(beta1={self.beta1}, beta2={self.beta2}, "
                f"eps={self.eps}, weight_decay={self.weight_decay})")


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW.

        p <- p * (1 - lr * wd)                  weights only (ndim >= 2)
        then the Adam step above with d = g     (no L2 term in the gradient)

    The decay is scaled by the current learning rate (PyTorch's convention),
    so a schedule decays it along with the step size.
    """

    def __init__(self, params, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(params, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)

    def step(self, lr: float) -> None:
        lr = float(lr)
        for (_, p, _), decay in zip(self.params, self.decay):
            if decay:
                p *= 1 - lr * self.weight_decay
        self.adam_step(lr, coupled_l2=False)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSprop,
              "adam": Adam, "adamw": AdamW}

#: name -> {keyword: (python type, default)}; the learning rate is
#: not here: the schedule gives it to step().  The defaults are the constructors'.
OPTIMIZER_SPECS: dict[str, dict[str, tuple]] = {
    "sgd": options_of(SGD, {"momentum": float, "nesterov": bool, "weight_decay": float}),
    "momentum": options_of(Momentum, {"momentum": float, "nesterov": bool, "weight_decay": float}),
    "nesterov": options_of(Nesterov, {"momentum": float, "weight_decay": float}),
    "rmsprop": options_of(RMSprop, {"rho": float, "eps": float, "weight_decay": float}),
    "adam": options_of(Adam, {"beta1": float, "beta2": float, "eps": float, "weight_decay": float}),
    "adamw": options_of(AdamW, {"beta1": float, "beta2": float, "eps": float, "weight_decay": float}),
}


def make_optimizer(name: str, params, optimizers: dict | None = None, **kwargs) -> Optimizer:
    """``optimizers[name](params, **kwargs)`` (OPTIMIZERS by default) with a clear
    error for an unknown name or option."""
    optimizers = OPTIMIZERS if optimizers is None else optimizers
    if name not in optimizers:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(optimizers)}")
    unknown = sorted(set(kwargs) - set(OPTIMIZER_SPECS[name]))
    if unknown:
        raise ValueError(f"optimizer {name!r} got unknown option(s) {unknown}; "
                         f"allowed: {sorted(OPTIMIZER_SPECS[name])}")
    return optimizers[name](params, **kwargs)
