"""The two engines that compute the same network: ``reference`` and ``fast``.

An engine is what ``model.engine`` selects: how the model is built, which
optimizer classes update it, how a training step's gradient is computed, and
which layer options it has besides the reference layers'.  The reference
engine is nnexp.nn's plain layers and textbook update rules, what
docs/math.md derives; the fast engine (nnexp.nn.fast) computes the same
things with buffers, Winograd convolutions, flat parameter blocks and several
processes.  nnexp.nn knows nothing of the fast engine; this registry knows
both.  The tests hold the fast engine against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .nn import OPTIMIZERS, build_model, forward_backward
from .nn.fast import FAST_LAYER_SPECS, FAST_OPTIMIZERS, DataParallel, build_fast_model
from .nn.fast.optim import FlatOptimizer

__all__ = ["Engine", "ENGINES", "OneProcess", "engine_options", "layers_for", "optimizer_state", "load_optimizer_state"]


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
    #: layer type -> {option: (python type, default)}: options besides nnexp.nn.LAYER_SPECS'
    layer_options: dict


ENGINES = {
    "fast": Engine("fast", build_fast_model, FAST_OPTIMIZERS, DataParallel, FAST_LAYER_SPECS),
    "reference": Engine("reference", build_model, OPTIMIZERS, OneProcess, {}),
}


def layers_for(engine: str, layers: list[dict]) -> list[dict]:
    """Resolved layer specs with the options of the other engines left out: the
    same network, for ``engine`` to build (they choose how, not what, it computes)."""
    own = ENGINES[engine].layer_options
    others = {kind: set(options) - set(own.get(kind, {}))
              for e in ENGINES.values() for kind, options in e.layer_options.items()}
    return [{k: v for k, v in spec.items() if k not in others.get(spec.get("type"), ())} for spec in layers]


def optimizer_state(optimizer) -> dict:
    """The optimizer's buffers exactly as it keeps them, so that a checkpoint
    resumes bit for bit (the fast optimizers keep some scaled)."""
    return optimizer.state_dict(internal=True) if isinstance(optimizer, FlatOptimizer) else optimizer.state_dict()


def load_optimizer_state(optimizer, state: dict) -> None:
    """optimizer_state's output back into ``optimizer``, in place."""
    if isinstance(optimizer, FlatOptimizer):
        optimizer.load_state_dict(state, internal=True)
    else:
        optimizer.load_state_dict(state)


def engine_options(kind) -> dict:
    """{option: default} of the options that engines add to layer type ``kind``."""
    return {key: default for e in ENGINES.values() for key, (_, default) in e.layer_options.get(kind, {}).items()}
