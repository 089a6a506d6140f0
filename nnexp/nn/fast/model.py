"""The fast engine's model: the reference Sequential with its parameters in one
flat buffer, a fused evaluation path and evaluation shared among processes."""

from __future__ import annotations

import numpy as np

from ..activations import ReLU
from ..batchnorm import BatchNorm
from ..conv import Conv2D
from ..deskew import Deskew
from ..layers import Dense, Flatten
from ..model import Sequential, checked_input_shape, finished, spec_layers
from ..pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from ..specs import options_of
from .batchnorm import FastBatchNorm
from .conv import FastConv2D
from .forked import map_batches, shared_array
from .layers import FastDense, FastFlatten, FastReLU
from .pooling import FastAvgPool2D, FastGlobalAvgPool2D, FastMaxPool2D

__all__ = ["FAST_LAYER_SPECS", "FastSequential", "build_fast_model", "fast_twin"]


class FastSequential(Sequential):
    """Sequential, faster, with the same results (bit for bit in training; the
    fused evaluation up to float rounding).

    * All parameters live in one contiguous buffer and all gradients in
      another; each ``layer.params[name]`` is a view into it with its shape
      and values unchanged.  An optimizer can then update the whole model as
      one flat array (fast/optim.py).
    * The first trainable layer computes no dL/dx (its input is the data).
    * Evaluation runs a Conv2D or Dense followed by BatchNorm and/or ReLU as
      one step (the batch-norm folded into the weights, the ReLU applied as
      the output is made), and a Winograd conv followed by a 2x2 max-pool
      computes the pooled output from its tiles.
    * ``logits`` shares the batches among forked processes (forked.py).
    """

    def __init__(self, layers) -> None:
        super().__init__(layers)
        self._pack_parameters()

    def _pack_parameters(self, empty=np.empty) -> bool:
        """Copy params and grads into two flat buffers (the params' one made by
        ``empty(size, dtype)``) and make the layers use views; False if the
        parameters are not all of one dtype (left alone then)."""
        entries = [(layer, name) for layer in self.layers for name in layer.params]
        dtypes = {layer.params[name].dtype for layer, name in entries}
        if len(dtypes) != 1:   # no parameters, or mixed precision: leave them alone
            return False
        dtype = dtypes.pop()
        total = sum(layer.params[name].size for layer, name in entries)
        flat_p, flat_g = empty(total, dtype), np.zeros(total, dtype=dtype)
        offset = 0
        for layer, name in entries:
            p, g = layer.params[name], layer.grads[name]
            n = p.size
            flat_p[offset:offset + n] = p.reshape(-1)
            flat_g[offset:offset + n] = g.reshape(-1)
            layer.params[name] = flat_p[offset:offset + n].reshape(p.shape)
            layer.grads[name] = flat_g[offset:offset + n].reshape(g.shape)
            offset += n
        return True

    def share_memory(self) -> None:
        """Move the parameters into shared memory, where processes forked later
        read the values this process's optimizer writes (data_parallel.py).
        Call it before an optimizer is made: that holds the arrays it updates."""
        if not self._pack_parameters(empty=shared_array):
            raise ValueError("share_memory: the model's parameters are not all of one dtype")

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if training:
            return super().forward(x, training)
        self.trained_forward = False
        return self._infer(x)

    __call__ = forward

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """Evaluation: each layer's forward(x, training=False), except the fused
        blocks described in the class docstring."""
        layers, i = self.layers, 0
        while i < len(layers):
            layer, i = layers[i], i + 1
            if not isinstance(layer, (FastConv2D, FastDense)):
                x = layer.forward(x, False)
                continue
            W, b = layer.params["W"], layer.params["b"]
            if i < len(layers) and isinstance(layers[i], FastBatchNorm):
                W, b = layers[i].fold(W, b)
                i += 1
            relu = i < len(layers) and isinstance(layers[i], FastReLU)
            i += relu
            if i < len(layers) and _pools_in_tiles(layer, layers[i], x.shape[1:]):
                x = layer.infer(x, W, b, relu=relu, pool=True)
                i += 1
            else:
                x = layer.infer(x, W, b, relu=relu)
        return x

    def backward(self, dlogits: np.ndarray) -> None:
        if not self.trained_forward:
            raise RuntimeError("Sequential.backward needs a forward with training=True before it")
        dout, first = dlogits, self.first_trainable
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if i == first and isinstance(layer, (FastDense, FastConv2D)):
                layer.backward(dout, need_input_grad=False)
            else:
                dout = layer.backward(dout)

    def logits(self, x: np.ndarray, batch_size: int) -> list[np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return map_batches(lambda xb: self.forward(xb, training=False), x, batch_size)


def _pools_in_tiles(layer, pool, input_shape: tuple) -> bool:
    """Whether ``pool`` is a 2x2, stride-2 max-pool that the Winograd conv
    ``layer`` can compute from its output tiles (FastConv2D.infer)."""
    return (isinstance(pool, FastMaxPool2D) and pool.kernel_size == (2, 2) and pool.stride == (2, 2)
            and isinstance(layer, FastConv2D) and layer.can_pool(input_shape))


#: the reference layer class -> its fast variant
TWINS = {Dense: FastDense, ReLU: FastReLU, Flatten: FastFlatten, Conv2D: FastConv2D, BatchNorm: FastBatchNorm,
         MaxPool2D: FastMaxPool2D, AvgPool2D: FastAvgPool2D, GlobalAvgPool2D: FastGlobalAvgPool2D}

#: layer type -> {option: (python type, default)}: the options only the fast
#: engine has, besides the reference layer's (nnexp.nn.model.LAYER_SPECS)
FAST_LAYER_SPECS: dict[str, dict[str, tuple]] = {
    # how the convolution is computed: "auto", "im2col" or "winograd" (FastConv2D)
    "conv2d": options_of(FastConv2D, {"algorithm": str}),
}


def fast_twin(layer, options: dict):
    """The fast variant of a reference layer, taking over its state (weights,
    buffers, options, random generator) as it is; the layer itself where there
    is no fast variant (user layers among them)."""
    cls = TWINS.get(type(layer))
    if cls is None:
        return layer
    twin = cls.__new__(cls)
    twin.__dict__.update(layer.__dict__)
    if cls is FastConv2D:
        twin.use_algorithm(options.get("algorithm", FAST_LAYER_SPECS["conv2d"]["algorithm"][1]))
    return twin


def split_fast_options(i: int, spec: dict) -> tuple[dict, dict]:
    """(the reference layer spec, the fast engine's options of it) of layer spec ``i``."""
    own = FAST_LAYER_SPECS.get(spec.get("type"), {}) if isinstance(spec, dict) else {}
    if not own:
        return spec, {}
    options = {key: spec.get(key, default) for key, (_, default) in own.items()}
    for key, (typ, _) in own.items():
        if not isinstance(options[key], typ):
            raise ValueError(f"layer {i} ({spec['type']}): {key!r} must be {typ.__name__}, got {options[key]!r}")
    return {k: v for k, v in spec.items() if k not in own}, options


def build_fast_model(layer_specs: list[dict], input_shape=(1, 28, 28), rng: np.random.Generator | None = None,
                     dtype=np.float32, deskew: bool = False) -> FastSequential:
    """build_model's network, each layer swapped for its fast variant (the same
    initial weights: the reference layers draw them) and in a FastSequential.
    A spec may also give the options of FAST_LAYER_SPECS."""
    rng = np.random.default_rng() if rng is None else rng
    shape = checked_input_shape(layer_specs, input_shape)
    layers = []
    if deskew:
        layers.append(Deskew())
        shape = layers[-1].output_shape(shape)
    for i, spec in enumerate(layer_specs):
        spec, options = split_fast_options(i, spec)
        made, shape = spec_layers(i, spec, shape, rng, dtype)
        try:
            layers += [fast_twin(layer, options) for layer in made]
        except ValueError as e:   # an algorithm that does not apply to the layer
            raise ValueError(f"layer {i} ({spec['type']}): {e}") from None
    return finished(FastSequential(layers), input_shape, shape)
