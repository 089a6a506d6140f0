"""The two engines that compute the same network: ``reference`` and ``fast``.

An engine is what ``model.engine`` selects: how the model is built, which
optimizer classes update it, and how a training step's gradient is computed.
The reference engine is nnexp.nn's plain layers and textbook update rules;
the fast engine (nnexp.nn.fast) computes the same things with buffers,
Winograd convolutions, flat parameter blocks and several processes.  The
tests hold the fast engine against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .fast import FAST_OPTIMIZERS, DataParallel, build_fast_model
from .model import build_model, forward_backward
from .optim import OPTIMIZERS

__all__ = ["Engine", "ENGINES", "OneProcess"]


class OneProcess:
    """The reference engine's training steps: the whole batch, in this process."""

    def __init__(self, model, loss_fn, shards: int = 1, seed: int = 0) -> None:
        if shards != 1:
            raise ValueError(f"the reference engine computes a batch in one piece, got {shards} shards "
                             "(train.data_parallel needs model.engine: fast)")
        self.model, self.loss_fn = model, loss_fn

    def step(self, x, y, step: int) -> tuple[float, int]:
        """(mean loss, correct predictions) of the batch; the gradients are in the model."""
        return forward_backward(self.model, self.loss_fn, x, y)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Engine:
    name: str
    #: build_model(layer_specs, input_shape, rng, dtype, deskew) -> Sequential
    build_model: Callable
    #: optimizer name -> class (the names of nnexp.nn.optim.OPTIMIZERS)
    optimizers: dict
    #: steps(model, loss_fn, shards, seed): .step(x, y, step) -> (loss, correct); .close()
    steps: Callable


ENGINES = {
    "fast": Engine("fast", build_fast_model, FAST_OPTIMIZERS, DataParallel),
    "reference": Engine("reference", build_model, OPTIMIZERS, OneProcess),
}
