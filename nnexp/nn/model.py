"""Sequential model, model building from config specs, and weight files."""

from __future__ import annotations

import zipfile

import numpy as np

from .deskew import Deskew
from .conv import CONV_ALGORITHMS, AvgPool2D, BatchNorm, Conv2D, GlobalAvgPool2D, MaxPool2D
from .forked import map_batches, shared_array
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
from .losses import softmax

__all__ = [
    "Sequential",
    "build_model",
    "LAYER_SPECS",
    "REQUIRED",
    "save_weights",
    "load_weights",
]


class Sequential:
    """A stack of layers applied in order.

    forward(x (N, ...), training) -> logits (N, C)
    backward(dlogits (N, C))      -> None; fills every layer's grads

    Parameters are named "<layer index>.<param name>", e.g. "0.W", "0.b", "2.W".
    Buffers (non-trained state such as BatchNorm's running statistics) are
    named the same way, e.g. "3.running_mean"; they are in ``state_dict()``
    and the weight files but not in ``parameters()``, so optimizers never see
    them.

    The constructor moves all parameters into one contiguous buffer (and all
    gradients into another); each ``layer.params[name]`` becomes a view into
    it, with its shape and values unchanged.  The layers do not notice, but an
    optimizer can then treat the whole model as one flat array (see optim.py),
    which made a training step of the MNIST MLP ~5% faster.
    """

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: item {i} ({layer!r}) is not a Layer")
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            raise ValueError("Sequential: the same layer object appears twice")
        for i, layer in enumerate(self.layers):
            clash = sorted(set(layer.params) & set(getattr(layer, "buffers", {})))
            if clash:
                raise ValueError(f"Sequential: layer {i} uses the names {clash} for both "
                                 "a parameter and a buffer")
        self._pack_parameters()
        self._trained_forward = False   # backward needs a training forward before it
        # Layers before the first one with parameters need no backward at all
        # (their input is the data), and that first layer need not compute dL/dx
        # (Dense and Conv2D can skip it).
        self._first_trainable = next(
            (i for i, layer in enumerate(self.layers) if layer.params), len(self.layers)
        )

    def _pack_parameters(self, empty=np.empty) -> bool:
        """Copy params and grads into two flat buffers (the params' one made by
        ``empty(size, dtype)``) and make the layers use views; False if the
        parameters are not all of one dtype (left alone then)."""
        entries = [(layer, name) for layer in self.layers for name in layer.params]
        dtypes = {layer.params[name].dtype for layer, name in entries}
        if len(dtypes) != 1:  # no parameters, or mixed precision: leave them alone
            return False
        dtype = dtypes.pop()
        total = sum(layer.params[name].size for layer, name in entries)
        flat_p = empty(total, dtype)
        flat_g = np.zeros(total, dtype=dtype)
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
        self._trained_forward = training
        if not training:
            return self._infer(x)
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """Evaluation: the layers' forward(x, training=False), except that a
        Conv2D or Dense followed by BatchNorm and/or ReLU runs as one step --
        the batch-norm folded into its weights (BatchNorm.fold), the ReLU
        applied to the output as it is made (infer): two to four fewer passes
        over every activation -- and a Winograd conv block followed by a 2x2
        max-pool computes the pooled output straight from its tiles.  Equal
        to the layer-by-layer result up to float rounding."""
        layers, i = self.layers, 0
        while i < len(layers):
            layer, i = layers[i], i + 1
            if not isinstance(layer, (Conv2D, Dense)):
                x = layer.forward(x, False)
                continue
            W, b = layer.params["W"], layer.params["b"]
            if i < len(layers) and isinstance(layers[i], BatchNorm):
                W, b = layers[i].fold(W, b)
                i += 1
            relu = i < len(layers) and type(layers[i]) is ReLU
            i += relu
            if i < len(layers) and _pools_in_tiles(layer, layers[i], x.shape[1:]):
                x = layer.infer(x, W, b, relu=relu, pool=True)
                i += 1
            else:
                x = layer.infer(x, W, b, relu=relu)
        return x

    __call__ = forward

    def backward(self, dlogits: np.ndarray) -> None:
        if not self._trained_forward:
            raise RuntimeError("Sequential.backward needs a forward with training=True before it")
        dout = dlogits
        first = self._first_trainable
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if i == first and isinstance(layer, (Dense, Conv2D)):
                layer.backward(dout, need_input_grad=False)
            else:
                dout = layer.backward(dout)

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """[(name, param, grad), ...] in layer order, then the layer's own order."""
        return [
            (f"{i}.{name}", p, layer.grads[name])
            for i, layer in enumerate(self.layers)
            for name, p in layer.params.items()
        ]

    def buffers(self) -> list[tuple[str, np.ndarray]]:
        """[(name, buffer), ...]: non-trained state, e.g. ("3.running_mean", array)."""
        return [
            (f"{i}.{name}", b)
            for i, layer in enumerate(self.layers)
            for name, b in getattr(layer, "buffers", {}).items()
        ]

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """{name: the live array} for every parameter, then every buffer."""
        own = {name: p for name, p, _ in self.parameters()}
        own.update(self.buffers())
        return own

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: copy}: every parameter, then every buffer (none in most models)."""
        return {name: a.copy() for name, a in self._state_arrays().items()}

    def load_state_dict(self, d: dict) -> None:
        """Copy values into the existing parameter and buffer arrays (optimizers stay valid).

        Checks that keys and shapes match exactly; raises ValueError naming the
        mismatch and changes nothing in that case.
        """
        own = self._state_arrays()
        missing = sorted(set(own) - set(d))
        unexpected = sorted(set(d) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"state dict does not match the model: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        for name, p in own.items():
            v = np.asarray(d[name])
            if v.shape != p.shape:
                raise ValueError(
                    f"state dict entry {name!r} has shape {v.shape}, model expects {p.shape}"
                )
            if not np.issubdtype(v.dtype, np.number):
                raise ValueError(f"state dict entry {name!r} is not numeric ({v.dtype})")
        for name, p in own.items():
            np.copyto(p, d[name], casting="unsafe")

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (N, C) float32, in evaluation mode, batch by batch
        (the batches shared among processes on several cores: forked.py)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(x) == 0:  # run a zero-sized batch to learn C
            return softmax(self.forward(x[:0], training=False)).astype(np.float32)
        probs = map_batches(lambda xb: softmax(self.forward(xb, training=False)), x, batch_size)
        return np.concatenate(probs).astype(np.float32, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Predicted class indices (N,)."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


def _pools_in_tiles(layer, pool, input_shape: tuple) -> bool:
    """Whether ``pool`` is a 2x2, stride-2 max-pool that the Winograd conv
    ``layer`` can compute from its output tiles (Conv2D.infer)."""
    return (isinstance(pool, MaxPool2D) and pool.kernel_size == (2, 2) and pool.stride == (2, 2)
            and isinstance(layer, Conv2D) and layer.can_pool(input_shape))


# --------------------------------------------------------------------------
# Building from config
# --------------------------------------------------------------------------

#: layer type -> {key: (python type, default or REQUIRED)} (besides "type")
LAYER_SPECS: dict[str, dict[str, tuple]] = {
    "dense": {"units": (int, REQUIRED), "init": (str, "he")},
    "relu": {},
    "leaky_relu": {"alpha": (float, 0.01)},
    "sigmoid": {},
    "tanh": {},
    "dropout": {"p": (float, 0.5)},
    "flatten": {},
    # None as a default: the key may be left out or set to null (pooling
    # stride: None = the kernel size).
    "conv2d": {"out_channels": (int, REQUIRED), "kernel_size": (int, 3), "stride": (int, 1),
               "padding": (int, 0), "init": (str, "he"), "algorithm": (str, "auto")},
    "maxpool2d": {"kernel_size": (int, 2), "stride": (int, None)},
    "avgpool2d": {"kernel_size": (int, 2), "stride": (int, None)},
    "global_avgpool": {},
    "batchnorm": {"momentum": (float, 0.1), "eps": (float, 1e-5)},
}


def _spec_options(i: int, spec: dict) -> tuple[str, dict]:
    """Check one layer spec against LAYER_SPECS; return (type, options with defaults)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"layer {i}: expected a dict with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if kind not in LAYER_SPECS:
        raise ValueError(f"layer {i}: unknown type {kind!r}; choose one of {sorted(LAYER_SPECS)}")
    allowed = LAYER_SPECS[kind]
    unknown = sorted(set(spec) - set(allowed) - {"type"})
    if unknown:
        raise ValueError(f"layer {i} ({kind}): unknown key(s) {unknown}; "
                         f"allowed: {sorted(allowed)}")
    opts = {}
    for key, (typ, default) in allowed.items():
        v = spec.get(key, default)
        if v is REQUIRED:
            raise ValueError(f"layer {i} ({kind}): missing required key {key!r}")
        # ints are acceptable where floats are expected; bools are never numbers here
        if v is None and default is None:
            ok = True
        elif typ is int:
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        elif typ is float:
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        else:
            ok = isinstance(v, typ)
        if not ok:
            raise ValueError(f"layer {i} ({kind}): {key!r} must be {typ.__name__}, got {v!r}")
        opts[key] = v
    return kind, opts


def build_model(layer_specs: list[dict], input_shape=(1, 28, 28),
                rng: np.random.Generator | None = None, dtype=np.float32,
                deskew: bool = False) -> Sequential:
    """Build a Sequential from config dicts, inferring every Dense's in_features
    and every conv2d's / batchnorm's input channels from the running shape.

    A dense layer that receives a non-flat input gets a Flatten inserted before
    it, so configs may omit ``{"type": "flatten"}``.  A conv or pooling window
    that does not fit its input raises ValueError naming the layer.  Initial
    weights and dropout masks are all drawn from ``rng`` (a fresh, unseeded
    generator when None): the same seed gives the same model and the same
    training run.  ``deskew`` puts a :class:`~nnexp.nn.deskew.Deskew` layer
    first (config key ``model.deskew``).
    """
    if rng is None:
        rng = np.random.default_rng()
    if not isinstance(layer_specs, (list, tuple)) or not layer_specs:
        raise ValueError("layer_specs must be a non-empty list of layer dicts")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive integers, got {input_shape!r}")

    layers: list[Layer] = []
    if deskew:
        layers.append(Deskew())
        shape = layers[-1].output_shape(shape)
    for i, spec in enumerate(layer_specs):
        kind, o = _spec_options(i, spec)
        if kind == "dense":
            if o["units"] < 1:
                raise ValueError(f"layer {i} (dense): units must be >= 1, got {o['units']}")
            if o["init"] not in INITS:
                raise ValueError(f"layer {i} (dense): unknown init {o['init']!r}; "
                                 f"choose one of {sorted(INITS)}")
            if len(shape) != 1:
                layers.append(Flatten())
                shape = layers[-1].output_shape(shape)
            layer = Dense(shape[0], int(o["units"]), init=o["init"], rng=rng, dtype=dtype)
        elif kind == "relu":
            layer = ReLU()
        elif kind == "leaky_relu":
            layer = LeakyReLU(o["alpha"])
        elif kind == "sigmoid":
            layer = Sigmoid()
        elif kind == "tanh":
            layer = Tanh()
        elif kind == "dropout":
            p = float(o["p"])
            if not (0.0 <= p < 1.0):
                raise ValueError(f"layer {i} (dropout): p must be in [0, 1), got {p}")
            layer = Dropout(p, rng=rng)
        elif kind == "conv2d":
            if len(shape) != 3:
                raise ValueError(f"layer {i} (conv2d) needs a (channels, height, width) input, "
                                 f"but the running shape is {shape}")
            for key, low in (("out_channels", 1), ("kernel_size", 1), ("stride", 1),
                             ("padding", 0)):
                if o[key] < low:
                    raise ValueError(f"layer {i} (conv2d): {key} must be >= {low}, got {o[key]}")
            if o["init"] not in INITS:
                raise ValueError(f"layer {i} (conv2d): unknown init {o['init']!r}; "
                                 f"choose one of {sorted(INITS)}")
            if o["algorithm"] not in CONV_ALGORITHMS:
                raise ValueError(f"layer {i} (conv2d): unknown algorithm {o['algorithm']!r}; "
                                 f"choose one of {list(CONV_ALGORITHMS)}")
            try:
                layer = Conv2D(shape[0], int(o["out_channels"]), int(o["kernel_size"]),
                               stride=int(o["stride"]), padding=int(o["padding"]),
                               init=o["init"], rng=rng, dtype=dtype, algorithm=o["algorithm"])
            except ValueError as e:   # e.g. winograd asked for a 5x5 kernel
                raise ValueError(f"layer {i} (conv2d): {e}") from None
        elif kind in ("maxpool2d", "avgpool2d"):
            for key in ("kernel_size", "stride"):
                if o[key] is not None and o[key] < 1:
                    raise ValueError(f"layer {i} ({kind}): {key} must be >= 1, got {o[key]}")
            pool = MaxPool2D if kind == "maxpool2d" else AvgPool2D
            layer = pool(int(o["kernel_size"]), None if o["stride"] is None else int(o["stride"]))
        elif kind == "global_avgpool":
            layer = GlobalAvgPool2D()
        elif kind == "batchnorm":
            if len(shape) not in (1, 3):
                raise ValueError(f"layer {i} (batchnorm) needs a (features,) or (channels, "
                                 f"height, width) input, but the running shape is {shape}")
            try:
                layer = BatchNorm(shape[0], momentum=o["momentum"], eps=o["eps"], dtype=dtype)
            except ValueError as e:
                raise ValueError(f"layer {i} (batchnorm): {e}") from None
        else:  # flatten
            layer = Flatten()
        layers.append(layer)
        try:
            shape = layer.output_shape(shape)
        except ValueError as e:  # e.g. a window larger than the (padded) input
            raise ValueError(f"layer {i} ({kind}): {e}") from None

    if len(shape) != 1:
        raise ValueError(f"the model must end with flat logits, but its output shape is {shape}")
    model = Sequential(layers)
    model.input_shape = tuple(int(d) for d in input_shape)
    model.output_shape = shape
    return model


# --------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------


def save_weights(path, model: Sequential) -> None:
    """Write the model's parameters and buffers (``state_dict()``) to an .npz
    file (np.savez; ".npz" is appended by NumPy if the name lacks it)."""
    np.savez(path, **model.state_dict())


def load_weights(path, model: Sequential) -> None:
    """Load parameters and buffers saved by save_weights into ``model`` (in place).

    Never unpickles: a file holding pickled objects is refused with ValueError.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:  # a bare pickle file
        raise ValueError(f"{path}: refuses pickled data (allow_pickle=False): {e}") from None
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a readable .npz weight file: {e}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive of named arrays, got a single array")
    with data:
        d = {}
        for key in data.files:
            try:
                d[key] = data[key]
            except ValueError as e:  # object array stored with pickle
                raise ValueError(
                    f"{path}: entry {key!r} holds pickled objects; nnexp refuses pickled "
                    f"data (allow_pickle=False): {e}"
                ) from None
    model.load_state_dict(d)
