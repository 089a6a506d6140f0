"""Per-layer diagnostics: what every layer of the network does, measured once per epoch.

After each epoch the trainer asks :class:`Diagnostics` for rows
``(epoch, layer, name, stat, value)`` and the run appends them to
diagnostics.csv (``Run.log_diagnostics``). ``layer`` is the layer's index
in the model (the number in parameter names such as ``3.W``; a flatten the
builder puts before a dense layer counts too), ``name`` the layer's type
(``relu``) for the statistics of its output and the parameter's name
(``3.W``) for those of a parameter:

    act_mean, act_std     mean and standard deviation of the layer's output over the probe batch
    dead_fraction         ReLU / LeakyReLU: the fraction of units (dense: features, conv: channels)
                          whose output is <= 0 for every probe image (and every pixel)
    saturated_fraction    sigmoid: output < 0.01 or > 0.99, tanh: |output| > 0.99, for every probe image
    grad_norm             L2 norm of the gradient the epoch's last step used (the whole batch's gradient,
                          also when train.data_parallel cuts it into shards)
    weight_norm           L2 norm of the parameter after the epoch
    update_ratio          L2 norm of the last step's change of the parameter / weight_norm

The probe batch is the first PROBE_SIZE training images, unaugmented, the
same in every epoch and for every seed. The outputs come from an
evaluation-mode forward pass, layer by layer (``layer.forward(x, training=False)``:
dropout off, batch-norm with its running statistics, nothing updated). The
gradients are those the last training step left in the layers, and the
change is measured against a copy of the parameters taken just before the
last optimizer step (:meth:`Diagnostics.before_last_step`). Nothing here
draws a random number or writes to the model's parameters, gradients or
buffers, so training gives the same bits with diagnostics on or off.
"""

from __future__ import annotations

import math

import numpy as np

from .nn import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, LeakyReLU, MaxPool2D,
                 ReLU, Sigmoid, Tanh)
from .nn.fast.threads import one_blas_thread

#: how many training images (the first ones) the activation statistics are measured on
PROBE_SIZE = 256
#: a sigmoid output below this or above 1 minus this is saturated (its slope is under 0.01)
SIGMOID_SATURATION = 0.01
#: a tanh output whose magnitude is above this is saturated (its slope is under 0.02)
TANH_SATURATION = 0.99

#: (layer class, config type) for the ``name`` of activation rows; subclasses (the fast engine's) match too
LAYER_TYPES = ((Dense, "dense"), (Conv2D, "conv2d"), (BatchNorm, "batchnorm"), (ReLU, "relu"),
               (LeakyReLU, "leaky_relu"), (Sigmoid, "sigmoid"), (Tanh, "tanh"), (Dropout, "dropout"),
               (Flatten, "flatten"), (MaxPool2D, "maxpool2d"), (AvgPool2D, "avgpool2d"),
               (GlobalAvgPool2D, "global_avgpool"))


def layer_type(layer) -> str:
    """The config type of a layer (``relu``, ``conv2d``, ...); the class name in lower case for others."""
    for cls, name in LAYER_TYPES:
        if isinstance(layer, cls):
            return name
    return type(layer).__name__.lower()


class Diagnostics:
    """The diagnostics of one model during training, on a fixed probe batch.

    ``before_last_step()`` is called just before the optimizer's last step of
    an epoch; ``rows(epoch)`` after the epoch.
    """

    def __init__(self, model, x_train: np.ndarray, probe_size: int = PROBE_SIZE) -> None:
        self.model = model
        dtype = next((p.dtype for _, p, _ in model.parameters()), np.dtype(np.float32))
        self.probe = np.ascontiguousarray(x_train[:probe_size], dtype=dtype)
        self.before: dict[str, np.ndarray] | None = None

    def before_last_step(self) -> None:
        """Copy the parameters, to measure the change the coming step makes."""
        self.before = {name: p.copy() for name, p, _ in self.model.parameters()}

    def rows(self, epoch: int) -> list[tuple]:
        """(epoch, layer, name, stat, value) for every layer's output and every parameter."""
        # small products: waking idle BLAS threads on a busy machine costs more than they save
        with one_blas_thread():
            return self._rows(epoch)

    def _rows(self, epoch: int) -> list[tuple]:
        rows = []
        x = self.model.xp.asarray(self.probe)
        for i, layer in enumerate(self.model.layers):
            x = layer.forward(x, training=False)
            rows += [(epoch, i, layer_type(layer), stat, value) for stat, value in output_stats(layer, x)]
            for pname, p in layer.params.items():
                name = f"{i}.{pname}"
                before = None if self.before is None else self.before.get(name)
                rows += [(epoch, i, name, stat, value)
                         for stat, value in parameter_stats(p, layer.grads[pname], before)]
        self.before = None
        return [(e, i, name, stat, significant(value)) for e, i, name, stat, value in rows]


def output_stats(layer, y) -> list[tuple[str, float]]:
    """(stat, value) of a layer's output ``y`` (batch on axis 0, units on axis 1)."""
    flat = y.ravel(order="K")  # a view whatever the memory layout (the fast engine's are channels last)
    mean = float(flat.mean(dtype=np.float64))   # one number to the host (a 0-d array on a GPU)
    with np.errstate(over="ignore"):
        centred = flat - flat.dtype.type(mean)
        variance = float((centred * centred).mean(dtype=np.float64))
    if math.isinf(variance) and math.isfinite(mean):  # squares beyond float32 (a diverging network)
        variance = float(flat.var(dtype=np.float64))
    stats = [("act_mean", float(mean)), ("act_std", math.sqrt(variance))]
    if len(y) == 0:
        return stats
    per_unit = (0, *range(2, y.ndim))  # every image, and every pixel of a channel
    if isinstance(layer, (ReLU, LeakyReLU)):
        stats.append(("dead_fraction", float((~(y > 0).any(axis=per_unit)).mean())))
    elif isinstance(layer, Sigmoid):
        saturated = (y < SIGMOID_SATURATION) | (y > 1 - SIGMOID_SATURATION)
        stats.append(("saturated_fraction", float(saturated.all(axis=per_unit).mean())))
    elif isinstance(layer, Tanh):
        stats.append(("saturated_fraction", float((abs(y) > TANH_SATURATION).all(axis=per_unit).mean())))
    return stats


def parameter_stats(p, grad, before=None) -> list[tuple[str, float]]:
    """(stat, value): the gradient's and the parameter's norms, and the last
    step's change over the parameter's norm (NaN without ``before`` or for a zero parameter)."""
    weight_norm = norm(p)
    change = norm(p - before) if before is not None else math.nan
    ratio = change / weight_norm if weight_norm > 0 else math.nan
    return [("grad_norm", norm(grad)), ("weight_norm", weight_norm), ("update_ratio", ratio)]


def significant(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (what a diagnosis needs, and readable in the file)."""
    return float(f"{value:.{digits}g}")


def norm(a) -> float:
    """The L2 norm of all of ``a``'s entries, in float64 (a vanishing gradient's squares underflow float32)."""
    flat = a.ravel(order="K").astype(np.float64)
    return math.sqrt(float(flat @ flat))
