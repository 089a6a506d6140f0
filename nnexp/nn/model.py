"""The model: a stack of layers, built from config specs, and its weight files."""

from __future__ import annotations

import zipfile

import numpy as np

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .arrays import host_copy, to_numpy
from .batchnorm import BatchNorm
from .conv import Conv2D
from .deskew import Deskew
from .layers import Dense, Dropout, Flatten, Layer
from .losses import softmax
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .specs import REQUIRED, options_of
from .user_layers import Stack, class_name, construct, is_user_type, load_class, option_table

__all__ = ["Sequential", "build_model", "build_layers", "spec_layers", "make_layer", "forward_backward",
           "LAYER_SPECS", "save_weights", "load_weights"]


class Sequential:
    """Layers applied in order.

    forward(x (N, ...), training) -> logits (N, classes)
    backward(dlogits (N, classes)) fills every layer's grads (chain rule, last layer first)

    Parameters are named "<layer index>.<param name>" ("0.W", "0.b", "2.W"),
    buffers (batch-norm's running statistics) the same way ("3.running_mean"):
    both are in ``state_dict()`` and the weight files, only parameters are in
    ``parameters()``, which is what an optimizer sees.

    ``xp`` is the array module the parameters live in: NumPy, or CuPy after
    ``to_device(cupy)``.  Inputs are moved there; ``state_dict`` and the
    predictions come back as NumPy arrays.
    """

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: item {i} ({layer!r}) is not a Layer")
            clash = sorted(set(layer.params) & set(layer.buffers))
            if clash:
                raise ValueError(f"Sequential: layer {i} uses the names {clash} for both a parameter and a buffer")
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            raise ValueError("Sequential: the same layer object appears twice")
        # Backward stops at the first layer with parameters: below it lies the data, which needs no gradient.
        self.first_trainable = next((i for i, layer in enumerate(self.layers) if layer.params), len(self.layers))
        self.trained_forward = False
        self.xp = np

    def to_device(self, xp) -> None:
        """Move every parameter, gradient and buffer into array module ``xp``
        (CuPy: the GPU).  Call it before an optimizer is made: that holds the arrays."""
        for layer in self.layers:
            for arrays in (layer.params, layer.grads, layer.buffers):
                for name, a in arrays.items():
                    arrays[name] = xp.asarray(a)
        self.xp = xp

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = self.xp.asarray(x)
        for layer in self.layers:
            x = layer.forward(x, training)
        self.trained_forward = training
        return x

    __call__ = forward

    def backward(self, dlogits: np.ndarray) -> None:
        if not self.trained_forward:
            raise RuntimeError("Sequential.backward needs a forward with training=True before it")
        dout = dlogits
        for layer in reversed(self.layers[self.first_trainable:]):
            dout = layer.backward(dout)

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """[(name, param, grad), ...] in layer order, then the layer's own order."""
        return [(f"{i}.{name}", p, layer.grads[name])
                for i, layer in enumerate(self.layers) for name, p in layer.params.items()]

    def buffers(self) -> list[tuple[str, np.ndarray]]:
        """[(name, buffer), ...]: state that is saved but not trained, e.g. ("3.running_mean", array)."""
        return [(f"{i}.{name}", b) for i, layer in enumerate(self.layers) for name, b in layer.buffers.items()]

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())

    def state_arrays(self) -> dict[str, np.ndarray]:
        """{name: the live array} for every parameter, then every buffer."""
        arrays = {name: p for name, p, _ in self.parameters()}
        arrays.update(self.buffers())
        return arrays

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: NumPy copy} of every parameter, then every buffer."""
        return {name: host_copy(a) for name, a in self.state_arrays().items()}

    def load_state_dict(self, d: dict) -> None:
        """Copy values into the existing arrays (an optimizer's references stay valid).

        Keys and shapes must match exactly; otherwise ValueError naming the
        mismatch, and nothing is changed.
        """
        own = self.state_arrays()
        missing, unexpected = sorted(set(own) - set(d)), sorted(set(d) - set(own))
        if missing or unexpected:
            raise ValueError(f"state dict does not match the model: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        for name, p in own.items():
            v = np.asarray(d[name])
            if v.shape != p.shape:
                raise ValueError(f"state dict entry {name!r} has shape {v.shape}, model expects {p.shape}")
            if not np.issubdtype(v.dtype, np.number):
                raise ValueError(f"state dict entry {name!r} is not numeric ({v.dtype})")
        for name, p in own.items():
            p[...] = self.xp.asarray(np.asarray(d[name]).astype(p.dtype, copy=False))

    def logits(self, x: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """Evaluation-mode logits of x, one array per batch of ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return [self.forward(x[s:s + batch_size], training=False) for s in range(0, len(x), batch_size)]

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (N, classes) float32, in evaluation mode."""
        if len(x) == 0:   # a zero-sized batch tells the number of classes
            return to_numpy(softmax(self.forward(x[:0], training=False))).astype(np.float32)
        probs = [to_numpy(softmax(z)) for z in self.logits(x, batch_size)]
        return np.concatenate(probs).astype(np.float32, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Predicted class indices (N,)."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"{type(self).__name__}(\n{inner}\n)"


def forward_backward(model: Sequential, loss_fn, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """One training step's gradient: forward, loss, backward.  Returns (mean loss,
    correct predictions) and leaves dL/dparam in the model's grads."""
    logits = model.forward(x, training=True)
    loss = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward())
    return loss, int((logits.argmax(1) == loss_fn.y).sum())


# --------------------------------------------------------------------------
# Building from config
# --------------------------------------------------------------------------

#: layer type -> {option: (python type, default or REQUIRED)} (besides "type"),
#: each default read from the layer's constructor.  A None default: the option
#: may be left out or null (a pooling stride of None is the kernel size).
LAYER_SPECS: dict[str, dict[str, tuple]] = {
    "dense": options_of(Dense, {"units": int, "init": str}, names={"units": "out_features"}),
    "relu": {},
    "leaky_relu": options_of(LeakyReLU, {"alpha": float}),
    "sigmoid": {},
    "tanh": {},
    "dropout": options_of(Dropout, {"p": float}),
    "flatten": {},
    "conv2d": options_of(Conv2D, {"out_channels": int, "kernel_size": int, "stride": int, "padding": int,
                                  "init": str}),
    "maxpool2d": options_of(MaxPool2D, {"kernel_size": int, "stride": int}),
    "avgpool2d": options_of(AvgPool2D, {"kernel_size": int, "stride": int}),
    "global_avgpool": {},
    "batchnorm": options_of(BatchNorm, {"momentum": float, "eps": float}),
}


def spec_options(i: int, spec: dict) -> tuple[str, dict]:
    """(type, options with the defaults filled in) of one layer spec; ValueError
    for an unknown type or key, a missing required key or a wrong type."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"layer {i}: expected a dict with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if is_user_type(kind):
        try:
            allowed = option_table(load_class(kind))
        except ValueError as e:
            raise ValueError(f"layer {i} ({class_name(kind)}): {e}") from None
        kind_label = class_name(kind)
    elif kind not in LAYER_SPECS:
        raise ValueError(f"layer {i}: unknown type {kind!r}; choose one of {sorted(LAYER_SPECS)}")
    else:
        allowed, kind_label = LAYER_SPECS[kind], kind
    unknown = sorted(set(spec) - set(allowed) - {"type"})
    if unknown:
        raise ValueError(f"layer {i} ({kind_label}): unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    options = {}
    for key, (typ, default) in allowed.items():
        v = spec.get(key, default)
        if v is REQUIRED:
            raise ValueError(f"layer {i} ({kind_label}): missing required key {key!r}")
        if v is None and default is None:
            ok = True
        elif typ is float:   # ints are fine where floats are expected; bools are never numbers here
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        elif typ is int:
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        elif typ is Stack:   # a list of layer specs, checked as the inner layers are built
            ok = isinstance(v, list) and bool(v)
        else:
            ok = isinstance(v, typ)
        if not ok:
            raise ValueError(f"layer {i} ({kind_label}): {key!r} must be {typ.__name__}, got {v!r}")
        options[key] = v
    return kind, options


def make_layer(kind: str, o: dict, shape: tuple, rng: np.random.Generator, dtype) -> Layer:
    """The reference layer for one spec, given the per-sample input shape."""
    if is_user_type(kind):   # the user's own code, on either engine; a Stack's layers are reference ones
        return construct(load_class(kind), o, shape, rng, dtype,
                         lambda specs, inner: Stack(build_layers(specs, inner, rng, dtype)[0]))
    if kind == "dense":
        return Dense(shape[0], o["units"], init=o["init"], rng=rng, dtype=dtype)
    if kind == "conv2d":
        return Conv2D(shape[0], o["out_channels"], o["kernel_size"], stride=o["stride"],
                      padding=o["padding"], init=o["init"], rng=rng, dtype=dtype)
    if kind == "batchnorm":
        return BatchNorm(shape[0], momentum=o["momentum"], eps=o["eps"], dtype=dtype)
    if kind == "dropout":
        return Dropout(o["p"], rng=rng)
    if kind in ("maxpool2d", "avgpool2d"):
        return (MaxPool2D if kind == "maxpool2d" else AvgPool2D)(o["kernel_size"], o["stride"])
    if kind == "leaky_relu":
        return LeakyReLU(o["alpha"])
    simple = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "flatten": Flatten,
              "global_avgpool": GlobalAvgPool2D}
    return simple[kind]()


def build_model(layer_specs: list[dict], input_shape=(1, 28, 28), rng: np.random.Generator | None = None,
                dtype=np.float32, deskew: bool = False) -> Sequential:
    """A Sequential from config dicts.

    Input sizes (a dense layer's in_features, a conv's or batch-norm's
    channels) follow from the running shape.  A dense layer that receives a
    non-flat input gets a Flatten before it, so configs may leave it out.  A
    layer that cannot take its input, or a bad option, raises ValueError naming
    the layer.  Initial weights and dropout masks all come from ``rng`` (a
    fresh, unseeded generator when None): the same seed gives the same model.
    ``deskew`` puts a Deskew layer first (``model.deskew``).
    """
    rng = np.random.default_rng() if rng is None else rng
    shape = checked_input_shape(layer_specs, input_shape)
    layers: list[Layer] = []
    if deskew:
        layers.append(Deskew())
        shape = layers[-1].output_shape(shape)
    for i, spec in enumerate(layer_specs):
        made, shape = spec_layers(i, spec, shape, rng, dtype)
        layers += made
    return finished(Sequential(layers), input_shape, shape)


def checked_input_shape(layer_specs, input_shape) -> tuple:
    """The per-sample input shape as ints; ValueError for no layers or a shape that is not positive."""
    if not isinstance(layer_specs, (list, tuple)) or not layer_specs:
        raise ValueError("layer_specs must be a non-empty list of layer dicts")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive integers, got {input_shape!r}")
    return shape


def finished(model: Sequential, input_shape, shape: tuple) -> Sequential:
    """``model`` with its input and output shapes noted; ValueError unless it ends with flat logits."""
    if len(shape) != 1:
        raise ValueError(f"the model must end with flat logits, but its output shape is {shape}")
    model.input_shape = tuple(int(d) for d in input_shape)
    model.output_shape = shape
    return model


def build_layers(layer_specs: list[dict], shape: tuple, rng: np.random.Generator,
                 dtype) -> tuple[list[Layer], tuple]:
    """(the layers of ``layer_specs``, the per-sample output shape) for a
    per-sample input ``shape``; build_model's rules (a Flatten before a dense
    layer, errors naming the layer)."""
    layers: list[Layer] = []
    for i, spec in enumerate(layer_specs):
        made, shape = spec_layers(i, spec, shape, rng, dtype)
        layers += made
    return layers, shape


def spec_layers(i: int, spec: dict, shape: tuple, rng: np.random.Generator, dtype) -> tuple[list[Layer], tuple]:
    """(the layers layer spec ``i`` adds: its own, after a Flatten where a dense
    layer gets a non-flat input; the per-sample shape after them)."""
    kind, options = spec_options(i, spec)
    layers: list[Layer] = []
    if kind == "dense" and len(shape) != 1:
        layers.append(Flatten())
        shape = layers[-1].output_shape(shape)
    if kind == "conv2d" and len(shape) != 3:
        raise ValueError(f"layer {i} ({kind}) needs a (channels, height, width) input, "
                         f"but the running shape is {shape}")
    if kind == "batchnorm" and len(shape) not in (1, 3):
        raise ValueError(f"layer {i} (batchnorm) needs a (features,) or (channels, height, width) "
                         f"input, but the running shape is {shape}")
    try:
        layer = make_layer(kind, options, shape, rng, dtype)
        shape = layer.output_shape(shape)
    except ValueError as e:   # a bad option, or a window larger than the (padded) input
        raise ValueError(f"layer {i} ({class_name(kind) if is_user_type(kind) else kind}): {e}") from None
    return layers + [layer], shape


# --------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------


def save_weights(path, model: Sequential) -> None:
    """The model's parameters and buffers (``state_dict()``) as an .npz file
    (NumPy appends ".npz" if the name lacks it)."""
    np.savez(path, **model.state_dict())


def load_weights(path, model: Sequential) -> None:
    """Load parameters and buffers saved by save_weights into ``model``, in place.

    Never unpickles: a file holding pickled objects is refused with ValueError.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:   # a bare pickle file
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
            except ValueError as e:   # an object array stored with pickle
                raise ValueError(f"{path}: entry {key!r} holds pickled objects; nnexp refuses pickled "
                                 f"data (allow_pickle=False): {e}") from None
            except (OSError, EOFError, KeyError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as e:
                # zipfile's words for a damaged archive: bad CRC, "encrypted", unknown compression
                raise ValueError(f"{path}: entry {key!r} is damaged ({type(e).__name__}: {e})") from None
    model.load_state_dict(d)
