"""An exponential moving average (EMA) of a model's weights.

After every optimizer step, for each parameter and buffer (batch-norm's
running statistics) p:

    ema <- d * ema + (1 - d) * p,        d = min(decay, (1 + t) / (10 + t))

t counting the steps. The warm-up in d keeps the first steps from averaging
in the random initial weights for thousands of steps. The averaged weights
are often better than the last ones (the noise of the final SGD steps is
averaged out); `train.ema: 0.999` uses them for validation, for the test set
and in model.npz, and keeps training the raw weights.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .nn.arrays import array_module, host_copy


class WeightEMA:
    def __init__(self, model, decay: float) -> None:
        self.decay, self.t = float(decay), 0
        self.live = _live_arrays(model)
        self.shadow = {name: a.copy() for name, a in self.live.items()}

    def update(self) -> None:
        """Fold the model's current weights into the average (after an optimizer step)."""
        self.t += 1
        keep = min(self.decay, (1.0 + self.t) / (10.0 + self.t))
        for name, p in self.live.items():
            s = self.shadow[name]
            s *= keep
            s += (1.0 - keep) * p

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own after it."""
        saved = {name: a.copy() for name, a in self.live.items()}
        self.copy_to_model()
        try:
            yield
        finally:
            for name, a in self.live.items():
                a[...] = saved[name]

    def copy_to_model(self) -> None:
        for name, a in self.live.items():
            a[...] = self.shadow[name]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, dtype=np.int64), **{k: host_copy(v) for k, v in self.shadow.items()}}

    def load_state_dict(self, d: dict) -> None:
        if set(d) != set(self.shadow) | {"t"}:
            raise ValueError(f"EMA state has keys {sorted(d)}, expected {sorted(self.shadow)} and 't'")
        for name, s in self.shadow.items():
            if np.shape(d[name]) != s.shape:
                raise ValueError(f"EMA entry {name!r} has shape {np.shape(d[name])}, expected {s.shape}")
        for name, s in self.shadow.items():
            s[...] = array_module(s).asarray(np.asarray(d[name]).astype(s.dtype, copy=False))
        self.t = int(d["t"])


def _live_arrays(model) -> dict[str, np.ndarray]:
    arrays = {name: p for name, p, _ in model.parameters()}
    arrays.update(model.buffers())
    return arrays
