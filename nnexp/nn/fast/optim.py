"""The fast engine's optimizers: the update rules of nnexp.nn.optim over flat
blocks of the model's parameters.

Parameters that lie back to back in one buffer (as FastSequential stores
them) and get the same treatment are updated together as one flat array,
cut into cache-sized blocks: one NumPy call per line of the rule and block
instead of one per parameter, and every intermediate goes into
preallocated scratch buffers (a step allocates nothing).  Adam keeps
M = m / (1 - b1) and V = v / (1 - b2), which saves two passes per step;
state_dict() reports PyTorch's m and v.  State buffers are rounded to exactly
zero where they decay into the subnormal range (see _flush_subnormals).
All scalars are Python floats, which keeps float32 arrays float32.
"""

from __future__ import annotations

import math

import numpy as np

from ..optim import SGD, Adam, AdamW, Momentum, Nesterov, RMSprop

__all__ = ["FastSGD", "FastMomentum", "FastNesterov", "FastRMSprop", "FastAdam", "FastAdamW",
           "FAST_OPTIMIZERS"]


def _flush_constant(dtype) -> float:
    """C = tiny * 2**(nmant + 2), so that ulp(C) = 4 * tiny.

    float32: C = 2**-101, ulp(C) = 2**-124.  Then (a + C) - C is
      * exactly 0        for |a| <  ulp(C)/2 = 2 * tiny   (all subnormals included),
      * a multiple of ulp(C) = 4 * tiny otherwise (so never subnormal), and
      * exactly a        for |a| >= 2**-77, i.e. for any value that matters.
    """
    fi = np.finfo(dtype)
    return float(fi.tiny) * 2.0 ** (fi.nmant + 2)


def _flush_subnormals(a: np.ndarray, c: float) -> None:
    """Round the ~0 entries of a state buffer to exactly 0, in place (c = _flush_constant).

    Why: a buffer that decays geometrically while its gradient is exactly zero
    (m *= 0.9 for a dead ReLU unit, or for an MNIST pixel that is rarely on)
    sinks into the subnormal ("denormal") range and gets *stuck* there:
    0.9 * (smallest subnormal) rounds back to itself.  CPUs handle subnormal
    operands with a microcode assist far slower than normal arithmetic, so a
    few thousand of them slow every later optimizer step down.
    NumPy cannot switch on the CPU's flush-to-zero mode, so we round instead:
    adding and subtracting the tiny normal constant C sends every |a| < 2*tiny
    to exactly 0 (where it then stays) and leaves meaningful values unchanged.
    """
    a += c
    a -= c


def _flush_period(decay: float) -> int:
    """Every how many steps to flush a buffer that decays by ``decay`` per step.

    After a flush every nonzero entry has |a| >= ulp(C) = 4 * tiny.  We pick n
    with decay**n ~ 0.35, inside (1/4, 1/2): within n steps of pure decay an
    entry stays above 4 * tiny * 1/4 = tiny (normal), and one that started at
    4 * tiny has fallen below 2 * tiny, so the next flush sends it to 0.
    n = 10 for decay 0.9, 1049 for 0.999.
    """
    if decay <= 0.0:
        return 1
    return max(1, round(math.log(0.35) / math.log(decay)))


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns a's memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _follows(a: np.ndarray, b: np.ndarray) -> bool:
    """True if b starts right where a ends, inside the same contiguous buffer."""
    root = _root(a)
    return (a.flags.c_contiguous and b.flags.c_contiguous and root.flags.c_contiguous
            and a.dtype == b.dtype == root.dtype and _root(b) is root
            and _address(b) == _address(a) + a.nbytes)


def _flat_span(arrays: list[np.ndarray]) -> np.ndarray | None:
    """A 1-D view covering ``arrays`` (which lie back to back, see _follows), or
    None when that is impossible (a single non-contiguous array)."""
    if len(arrays) == 1:
        a = arrays[0]
        return a.reshape(-1) if a.flags.c_contiguous else None
    root = _root(arrays[0])
    start = (_address(arrays[0]) - _address(root)) // root.itemsize
    size = sum(a.size for a in arrays)
    return root.reshape(-1)[start:start + size]


#: Updates run over blocks of at most this many elements (256 KiB of float32
#: per array): the ~10 passes of an Adam step then reuse the same five blocks
#: from the L2 cache instead of streaming whole arrays ten times.
_BLOCK = 1 << 16


class _Group:
    """A block of parameter elements that are updated together.

    p, g        views of the parameter(s) and gradient(s): a 1-D block of up to
                _BLOCK elements of one or more parameters stored back to back,
                or (for a non-contiguous parameter) the whole array
    decay       whether weight decay applies (weights, ndim >= 2)
    state       slot name -> state buffer (view) shaped like p
    tmp, tmp2   scratch buffers shaped like p (tmp2 only when decay)
    flush       the constant used by _flush_subnormals for p's dtype
    """

    __slots__ = ("p", "g", "decay", "state", "tmp", "tmp2", "flush")

    def __init__(self, p, g, decay, state, tmp, tmp2):
        self.p, self.g, self.decay = p, g, decay
        self.state, self.tmp, self.tmp2 = state, tmp, tmp2
        self.flush = _flush_constant(p.dtype) if p.dtype.kind == "f" else 0.0


class FlatOptimizer:
    """The flat-block machinery shared by the fast optimizers (a mixin before
    the reference class: it replaces make_state, state_dict and load_state_dict)."""

    def make_state(self) -> dict[str, list[np.ndarray]]:
        """The state buffers as views into flat ones, one per run of adjacent
        parameters, and the blocks (_Group) that step() walks through."""
        # Runs of parameters that are adjacent in memory (params and grads
        # both, as FastSequential stores them) and share the decay flag are
        # updated as one flat array, cut into blocks of _BLOCK elements.
        runs: list[list[int]] = []
        for i, (_, p, g) in enumerate(self.params):
            if runs:
                j = runs[-1][-1]
                _, pj, gj = self.params[j]
                if self.decay[j] == self.decay[i] and _follows(pj, p) and _follows(gj, g):
                    runs[-1].append(i)
                    continue
            runs.append([i])
        self._groups: list[_Group] = []
        #: slot -> one state array per parameter (views into the flat buffers)
        state_lists: dict[str, list[np.ndarray]] = {s: [] for s in self.slots}
        for run in runs:
            ps = [self.params[i][1] for i in run]
            decay = self.decay[run[0]]
            P, G = _flat_span(ps), _flat_span([self.params[i][2] for i in run])
            if P is None or G is None:  # a non-contiguous parameter: update it as it is
                p, g = self.params[run[0]][1], self.params[run[0]][2]
                state = {s: np.zeros_like(p) for s in self.slots}
                for s in self.slots:
                    state_lists[s].append(state[s])
                self._groups.append(_Group(p, g, decay, state, np.empty_like(p),
                                           np.empty_like(p) if decay else None))
                continue
            state = {s: np.zeros_like(P) for s in self.slots}
            offset = 0
            for p in ps:
                for s in self.slots:
                    state_lists[s].append(state[s][offset:offset + p.size].reshape(p.shape))
                offset += p.size
            # scratch is shared by the run's blocks (so it stays in cache)
            tmp = np.empty(min(P.size, _BLOCK), dtype=P.dtype)
            tmp2 = np.empty_like(tmp) if decay else None
            for start in range(0, P.size, _BLOCK):
                end = min(start + _BLOCK, P.size)
                n = end - start
                self._groups.append(_Group(
                    P[start:end], G[start:end], decay,
                    {s: buf[start:end] for s, buf in state.items()},
                    tmp[:n], None if tmp2 is None else tmp2[:n]))
        return state_lists

    def _slot_scale(self, slot: str) -> float:
        """Factor from an internal state buffer to its state_dict value (1: stored as is)."""
        return 1.0

    def state_dict(self, internal: bool = False) -> dict[str, np.ndarray]:
        """``internal``: the buffers exactly as the optimizer keeps them (for
        checkpoints, which must resume bit for bit; the default converts to
        PyTorch's conventions, which may round)."""
        d = {"t": np.array(self.t, dtype=np.int64)}
        for s in self.slots:
            scale = 1.0 if internal else self._slot_scale(s)
            for (name, _, _), buf in zip(self.params, self.state[s]):
                d[f"{s}.{name}"] = buf * scale if scale != 1.0 else buf.copy()
        return d

    def load_state_dict(self, d: dict, internal: bool = False) -> None:
        cls = type(self).__name__
        expected = ["t"] + [f"{s}.{name}" for s in self.slots for name, _, _ in self.params]
        missing = [k for k in expected if k not in d]
        unexpected = [k for k in d if k not in expected]
        if missing or unexpected:
            raise ValueError(
                f"{cls}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        for s in self.slots:
            for (name, _, _), buf in zip(self.params, self.state[s]):
                v = np.asarray(d[f"{s}.{name}"])
                if v.shape != buf.shape:
                    raise ValueError(
                        f"{cls}.load_state_dict: {s}.{name} has shape {v.shape}, "
                        f"expected {buf.shape}"
                    )
        for s in self.slots:
            scale = 1.0 if internal else self._slot_scale(s)
            for (name, _, _), buf in zip(self.params, self.state[s]):
                np.copyto(buf, d[f"{s}.{name}"], casting="same_kind")
                if scale != 1.0:
                    buf /= scale
        self.t = int(d["t"])

    def _grad_with_l2(self, group: _Group) -> np.ndarray:
        """Coupled L2: return g + wd * p (in scratch buffer 2) for weights, else g."""
        if not group.decay:
            return group.g
        d = group.tmp2
        np.multiply(group.p, self.weight_decay, out=d)
        d += group.g
        return d


class FastSGD(FlatOptimizer, SGD):
    """SGD (and momentum, Nesterov) over flat blocks."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)   # the reference class's options and defaults
        self._every_b = _flush_period(self.momentum)

    def step(self, lr: float) -> None:
        lr = float(lr)
        mu = self.momentum
        self.t += 1
        for group in self._groups:
            p, tmp = group.p, group.tmp
            d = self._grad_with_l2(group)
            if mu == 0.0:
                np.multiply(d, lr, out=tmp)
                p -= tmp
                continue
            b = group.state["buf"]
            b *= mu
            b += d
            if self.t % self._every_b == 0:
                _flush_subnormals(b, group.flush)
            if self.nesterov:
                # p -= lr * (d + mu * b), as two in-place subtractions
                np.multiply(d, lr, out=tmp)
                p -= tmp
                np.multiply(b, lr * mu, out=tmp)
                p -= tmp
            else:
                np.multiply(b, lr, out=tmp)
                p -= tmp


class FastMomentum(FastSGD, Momentum):
    """FastSGD with Momentum's options (``"momentum"``)."""


class FastNesterov(FastSGD, Nesterov):
    """FastSGD with Nesterov's options (``"nesterov"``)."""


class FastRMSprop(FlatOptimizer, RMSprop):
    """RMSprop over flat blocks."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)   # RMSprop's options and defaults
        self._every_v = _flush_period(self.rho)

    def step(self, lr: float) -> None:
        lr = float(lr)
        rho = self.rho
        self.t += 1
        for group in self._groups:
            p, v, tmp = group.p, group.state["v"], group.tmp
            d = self._grad_with_l2(group)
            # v = rho * v + (1 - rho) * d^2
            v *= rho
            np.square(d, out=tmp)
            tmp *= 1.0 - rho
            v += tmp
            if self.t % self._every_v == 0:
                _flush_subnormals(v, group.flush)
            # p -= lr * d / (sqrt(v) + eps)
            np.sqrt(v, out=tmp)
            tmp += self.eps
            np.divide(d, tmp, out=tmp)
            tmp *= lr
            p -= tmp


class FastAdam(FlatOptimizer, Adam):
    """Adam over flat blocks, keeping M = m / (1 - b1) and V = v / (1 - b2)."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)   # Adam's (or AdamW's) options and defaults
        self._every_m = _flush_period(self.beta1)
        self._every_v = _flush_period(self.beta2)

    def _adam_update(self, lr: float, coupled_l2: bool) -> None:
        # Internally the buffers hold M = m / (1 - b1) and V = v / (1 - b2): the
        # same moving averages without their constant (1 - beta) factors, so
        # the updates are  M <- b1 M + d  and  V <- b2 V + d^2  -- two passes
        # over the arrays fewer per step.  The factors move into two scalars:
        #   step_size * m / (sqrt(v) / sqrt(bc2) + eps)  =  M / (sqrt(V) * a + c)
        #   with k = step_size * (1 - b1),  a = sqrt((1 - b2) / bc2) / k,  c = eps / k
        # state_dict() converts back to PyTorch's m and v.
        b1, b2, eps = self.beta1, self.beta2, self.eps
        self.t += 1
        t = self.t
        step_size = lr / (1.0 - b1 ** t)       # lr / bc1
        bc2 = 1.0 - b2 ** t
        k = step_size * (1.0 - b1)
        a = math.sqrt((1.0 - b2) / bc2) / k if k != 0.0 else 0.0
        c = eps / k if k != 0.0 else 0.0
        flush_m = t % self._every_m == 0
        flush_v = t % self._every_v == 0
        for group in self._groups:
            d = self._grad_with_l2(group) if coupled_l2 else group.g
            p, M, V, tmp = group.p, group.state["m"], group.state["v"], group.tmp
            # M = b1 * M + d                 (m = (1 - b1) M)
            M *= b1
            M += d
            if flush_m:
                _flush_subnormals(M, group.flush)
            # V = b2 * V + d^2               (v = (1 - b2) V)
            V *= b2
            np.square(d, out=tmp)
            V += tmp
            if flush_v:
                _flush_subnormals(V, group.flush)
            if k == 0.0:  # lr = 0 (e.g. first step of a warm-up): moments only
                continue
            # p -= M / (sqrt(V) * a + c)     (= lr * m_hat / (sqrt(v_hat) + eps))
            np.sqrt(V, out=tmp)
            tmp *= a
            tmp += c
            np.divide(M, tmp, out=tmp)
            p -= tmp

    def _slot_scale(self, slot: str) -> float:
        # internal M, V  ->  PyTorch's m = (1 - b1) M, v = (1 - b2) V
        return 1.0 - (self.beta1 if slot == "m" else self.beta2)

    def step(self, lr: float) -> None:
        self._adam_update(float(lr), coupled_l2=True)


class FastAdamW(FastAdam, AdamW):
    """AdamW over flat blocks (decoupled weight decay, then the Adam step)."""

    def step(self, lr: float) -> None:
        lr = float(lr)
        shrink = 1.0 - lr * self.weight_decay
        for group in self._groups:
            if group.decay:
                group.p *= shrink
        self._adam_update(lr, coupled_l2=False)


#: the fast engine's optimizer for each name of nnexp.nn.optim.OPTIMIZERS
FAST_OPTIMIZERS = {"sgd": FastSGD, "momentum": FastMomentum, "nesterov": FastNesterov,
                   "rmsprop": FastRMSprop, "adam": FastAdam, "adamw": FastAdamW}
