"""nnexp.nn: a small neural-network library in plain NumPy.

Layers have ``forward``/``backward``; ``Sequential`` chains them; losses,
optimizers and learning-rate schedules are separate small pieces::

    from nnexp.nn import build_model, SoftmaxCrossEntropy, Adam, make_schedule
    model = build_model([{"type": "dense", "units": 256}, {"type": "relu"},
                         {"type": "dense", "units": 10}], rng=np.random.default_rng(0))
    loss, opt = SoftmaxCrossEntropy(), Adam(model.parameters())
    lr = make_schedule("cosine", 1e-3, total_steps, steps_per_epoch)
    for step, (xb, yb) in enumerate(batches):
        loss.forward(model.forward(xb), yb)
        model.backward(loss.backward())
        opt.step(lr(step))
"""

from .conv import AvgPool2D, BatchNorm, Conv2D, GlobalAvgPool2D, MaxPool2D
from .init import INITS
from .layers import (
    REQUIRED,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
)
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .model import LAYER_SPECS, Sequential, build_model, load_weights, save_weights
from .optim import (
    OPTIMIZER_SPECS,
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    Momentum,
    Nesterov,
    Optimizer,
    RMSprop,
    make_optimizer,
)
from .schedules import SCHEDULE_SPECS, make_schedule

__all__ = [
    "INITS", "REQUIRED",
    "Layer", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout",
    "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "BatchNorm",
    "SoftmaxCrossEntropy", "softmax", "log_softmax",
    "Sequential", "build_model", "LAYER_SPECS", "save_weights", "load_weights",
    "Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "AdamW",
    "OPTIMIZERS", "OPTIMIZER_SPECS", "make_optimizer",
    "make_schedule", "SCHEDULE_SPECS",
]
