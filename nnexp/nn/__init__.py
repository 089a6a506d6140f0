"""nnexp.nn: a small neural-network library in plain NumPy.

The reference network, one concept per module, each layer a small class
whose ``forward`` and ``backward`` read like its docstring:

    layers.py       the layer protocol; Dense, Flatten, Dropout
    activations.py  ReLU, LeakyReLU, Sigmoid, Tanh
    conv.py         Conv2D by im2col and one matrix product
    pooling.py      MaxPool2D, AvgPool2D, GlobalAvgPool2D
    batchnorm.py    BatchNorm
    losses.py       softmax cross-entropy (with label smoothing)
    optim.py        SGD, momentum, Nesterov, RMSprop, Adam, AdamW
    schedules.py    learning-rate schedules
    init.py         weight initialisers
    model.py        Sequential, building from config specs, weight files
    user_layers.py  the user's own layer classes, named in a config by file or module
    deskew.py, warp.py   straightening digits (a parameter-free first layer)
    gradcheck.py    gradients against finite differences

What runs with ``model.engine: reference`` is this code and nothing else;
docs/math.md derives every equation.  The speed machinery lives beside it, in
nnexp.nn.fast, which builds on these modules (they never import it);
nnexp/engines.py selects one or the other::

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

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm
from .conv import Conv2D
from .init import INITS
from .layers import Dense, Dropout, Flatten, Layer
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .model import LAYER_SPECS, Sequential, build_model, forward_backward, load_weights, save_weights
from .optim import OPTIMIZER_SPECS, OPTIMIZERS, SGD, Adam, AdamW, Momentum, Nesterov, Optimizer, RMSprop, make_optimizer
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .schedules import SCHEDULE_SPECS, make_schedule
from .specs import REQUIRED
from .user_layers import Stack

__all__ = [
    "INITS", "REQUIRED",
    "Layer", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout",
    "Stack", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "BatchNorm",
    "SoftmaxCrossEntropy", "softmax", "log_softmax",
    "Sequential", "build_model", "forward_backward", "LAYER_SPECS", "save_weights", "load_weights",
    "Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "AdamW",
    "OPTIMIZERS", "OPTIMIZER_SPECS", "make_optimizer",
    "make_schedule", "SCHEDULE_SPECS",
]
