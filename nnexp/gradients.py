"""``nnexp gradcheck``: a config's network, in float64, its backprop checked layer by layer.

The model a config describes is built in float64 (by the reference engine,
the code docs/math.md derives, unless another is asked for; with the
config's initialisers) and run in training mode on a small batch of random
images with random labels; every layer's analytic gradients (with respect
to its input and to each of its parameters) are compared with central
differences (nnexp/nn/gradcheck.py).  Random inputs keep the ReLUs away from
their kinks, where a finite difference is meaningless.  A learner who
changes a layer's backward sees at once which layer is wrong.
"""

from __future__ import annotations

import numpy as np

from .engines import ENGINES, layers_for
from .nn import Dropout, SoftmaxCrossEntropy
from .nn.gradcheck import check_model_layers

#: Correct float64 backprop gives relative errors around 1e-9 or less;
#: a wrong one, 1e-2 and more.
TOLERANCE = 1e-6


def check_config(cfg: dict, samples: int = 20, batch: int = 4, seed: int = 0,
                 input_shape=(1, 28, 28), engine: str = "reference") -> list[dict]:
    """The rows of check_model_layers for the resolved config ``cfg``'s network,
    computed by ``engine`` (whatever ``model.engine`` says)."""
    rng = np.random.default_rng(seed)
    layers = layers_for(engine, cfg["model"]["layers"])
    model = ENGINES[engine].build_model(layers, input_shape, rng, np.float64, cfg["model"]["deskew"])
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]

    def same_masks():   # every forward draws the same dropout masks
        for k, layer in enumerate(dropouts):
            layer.rng = np.random.default_rng([seed, k])

    x = rng.standard_normal((batch, *input_shape))
    y = rng.integers(0, model.output_shape[0], batch)
    loss = SoftmaxCrossEntropy(cfg["train"]["label_smoothing"])
    return check_model_layers(model, loss, x, y, samples=samples, rng=rng, before_forward=same_masks)
