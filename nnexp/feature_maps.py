"""What a trained convolutional network makes of an image, as plain arrays.

The trainer hands these to the run's plots (``nnexp/tracking/plots.py``:
``plot_conv_filters`` and ``plot_feature_maps``), which draw arrays and know
nothing of layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nn import BatchNorm, Conv2D, LeakyReLU, ReLU, Sigmoid, Tanh, softmax
from .nn.arrays import host_copy, to_numpy

#: Layers that belong to the conv block of the Conv2D before them: the block's
#: feature map is taken after the last of them (before pooling shrinks it).
BLOCK_TAIL = (BatchNorm, ReLU, LeakyReLU, Sigmoid, Tanh)


@dataclass
class FeatureMaps:
    """One image and what each conv block of a network makes of it."""

    image: np.ndarray  # (C, H, W), as the network took it
    rows: list[tuple[str, np.ndarray]]  # (block label, maps (C, H, W)) per conv block, in order
    probs: np.ndarray  # (classes,) the network's class probabilities for the image


def conv_layers(model) -> list:
    """The model's Conv2D layers, in order."""
    return [layer for layer in model.layers if isinstance(layer, Conv2D)]


def first_conv_weights(model) -> np.ndarray | None:
    """The first Conv2D layer's kernels (O, C, kh, kw), or None for a network without one."""
    convs = conv_layers(model)
    return to_numpy(convs[0].params["W"]) if convs else None


def layer_activations(model, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output for the batch x, computed layer by layer in evaluation mode.

    Args:
        model: a Sequential (its ``layers``, each with ``forward(x, training)``).
        x: (N, ...) a batch in the model's input shape, e.g. (N, 1, 28, 28).

    Returns:
        One array per layer: entry i is layer i's output, e.g. (N, 16, 28, 28)
        after a conv layer; the last entry is the logits (N, classes). This is
        the computation ``model.forward(x, training=False)`` does, kept step by
        step (the model fuses batch-norm and ReLU into the layer before them:
        the same values up to float rounding).
    """
    outputs = []
    x = getattr(model, "xp", np).asarray(x)   # to the model's device
    for layer in model.layers:
        x = layer.forward(x, training=False)
        # A NumPy copy, as a layer may return a view or a buffer it reuses on its next call.
        outputs.append(host_copy(x))
    return outputs


def conv_blocks(layers) -> list[tuple[int, int]]:
    """(first, last) layer indices of each conv block in a list of layers.

    A block is a Conv2D and the batch-norm and activation layers right after
    it; the output of its last layer is the block's feature map, after the
    non-linearity and before any pooling shrinks it.
    """
    blocks = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv2D):
            last = i
            while last + 1 < len(layers) and isinstance(layers[last + 1], BLOCK_TAIL):
                last += 1
            blocks.append((i, last))
    return blocks


def block_label(layers, first: int, last: int) -> str:
    """'layers 0-2: Conv2D > BatchNorm > ReLU' (or 'layer 3: Conv2D')."""
    names = " > ".join(type(layers[i]).__name__ for i in range(first, last + 1))
    where = f"layer {first}" if first == last else f"layers {first}-{last}"
    return f"{where}: {names}"


def feature_maps(model, image) -> FeatureMaps:
    """What each conv block of ``model`` makes of ``image`` ((C, H, W) or (H, W)).

    Raises:
        ValueError: the model has no Conv2D layer, or the image's shape is not (C, H, W)/(H, W).
    """
    blocks = conv_blocks(model.layers)
    if not blocks:
        raise ValueError("the model has no Conv2D layer, so there are no feature maps to draw")
    x = np.asarray(image, dtype=model.layers[blocks[0][0]].params["W"].dtype)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected one image shaped (C, H, W) or (H, W), got {np.shape(image)}")
    outputs = layer_activations(model, x[None])
    rows = [(block_label(model.layers, first, last), outputs[last][0]) for first, last in blocks]
    return FeatureMaps(x, rows, softmax(outputs[-1].astype(np.float64))[0])
