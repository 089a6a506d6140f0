"""Layers written by the user, named in a config by where their class lives.

A layer spec's ``type`` names either a class in a Python file or one in an
importable module::

    {type: my_layers.py:Swish, beta: 1.5}     # a file, relative to the config file
    {type: mypkg.layers:LayerNorm}            # a module on the Python path

The class is a subclass of :class:`~nnexp.nn.layers.Layer` with ``forward``
and ``backward`` (and ``params`` / ``grads`` if it has parameters), written
as the reference layers are.  Its options are its constructor's parameters,
typed by their hints (``int``, ``float``, ``str``, ``bool``, ``X | None``) or
their defaults; three names are not options but given by nnexp:
``input_shape`` (the per-sample input shape), ``rng`` (the generator of the
initial weights) and ``dtype`` (the parameters' float type).  An option
annotated :class:`Stack` takes a list of layer specs, built on the layer's
input shape into a :class:`Stack`: that is how a block with a skip
connection (y = x + f(x)) is declared.  The output shape comes from the
class's ``output_shape`` when it defines one, else from a forward pass on
zeros.

Importing a file runs its code.  Only the commands that run a config import
one (see docs/your-layers.md); listing or showing runs never does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import MutableMapping
from pathlib import Path

import numpy as np

from .layers import Layer
from .specs import REQUIRED

__all__ = ["Stack", "is_user_type", "resolve_type", "load_class", "source_file", "option_table",
           "construct", "class_name", "GIVEN"]

#: constructor parameters nnexp fills in itself; every other one is an option of the config
GIVEN = ("input_shape", "rng", "dtype")


def is_user_type(kind) -> bool:
    """Whether a layer ``type`` names a user's class (``file.py:Class``, ``module:Class``)."""
    return isinstance(kind, str) and ":" in kind


def class_name(kind: str) -> str:
    """``/path/my_layers.py:Swish`` -> ``Swish``."""
    return kind.rpartition(":")[2]


def _split(kind: str) -> tuple[str, str]:
    where, _, name = kind.rpartition(":")
    if not where or not name.isidentifier():
        raise ValueError(f"{kind!r} must name a class as FILE.py:Class or module.name:Class")
    return where, name


def resolve_type(kind: str, base_dir) -> str:
    """The ``type`` made independent of the current directory: a file's path
    becomes absolute (relative to ``base_dir``, the config file's folder); a
    module reference stays as written.  ValueError for a file that is missing."""
    where, name = _split(kind)
    if not where.endswith(".py"):
        return kind
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or ".") / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"layer file {where} not found (looked for {path})")
    return f"{path}:{name}"


def source_file(kind: str) -> Path:
    """The Python file that defines a resolved user type (a module's own file)."""
    where, _ = _split(kind)
    if where.endswith(".py"):
        return Path(where)
    return Path(_import_module(where).__file__)


#: (absolute path, sha256 of its bytes) -> the module imported from it
_FILES: dict[tuple[str, str], types.ModuleType] = {}


def _import_file(path: Path) -> types.ModuleType:
    """The module of a layer file; imported again when its content has changed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read layer file {path}: {exc.strerror or exc}") from None
    key = (str(path), hashlib.sha256(data).hexdigest())
    if key not in _FILES:
        # one module name per file and content, so two versions never overwrite each other
        name = f"nnexp_user_layers.{path.stem}_{key[1][:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module   # a class's __module__ must be importable (pickling, dataclasses)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 -- any failure of the user's code is reported by file
            sys.modules.pop(name, None)
            raise ValueError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
        _FILES[key] = module
    return _FILES[key]


def _import_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 -- as _import_file
        raise ValueError(f"importing module {name} failed: {type(exc).__name__}: {exc}") from None


def load_class(kind: str) -> type:
    """The Layer subclass a resolved user type names (importing its file or module)."""
    where, name = _split(kind)
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    cls = getattr(module, name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, Layer) and v.__module__ == module.__name__)
        raise ValueError(f"{where} has no class {name!r} (its layers: {', '.join(found) or 'none'})")
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"{where}:{name} is not a subclass of nnexp.nn.Layer")
    missing = [m for m in ("forward", "backward") if getattr(cls, m) is getattr(Layer, m)]
    if missing:
        raise ValueError(f"{where}:{name} does not define {' and '.join(missing)}")
    return cls


class Stack(Layer):
    """Layers applied in order, as one layer: the inside of a composite layer.

    ``params``, ``grads`` and ``buffers`` are the inner layers' under the names
    "<index>.<name>" ("0.W"); they are the inner layers' own arrays, and
    replacing one (the fast engine packs parameters into one buffer) replaces
    it in the inner layer.
    """

    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = list(layers)
        self.params = _Joined(self.layers, "params")
        self.grads = _Joined(self.layers, "grads")
        self.buffers = _Joined(self.layers, "buffers")

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def __repr__(self) -> str:
        return f"Stack({', '.join(map(repr, self.layers))})"


class _Joined(MutableMapping):
    """The ``params`` (or ``grads``, ``buffers``) dicts of several layers seen as one."""

    def __init__(self, layers: list[Layer], attr: str) -> None:
        self.layers, self.attr = layers, attr

    def _find(self, key: str) -> tuple[dict, str]:
        index, _, name = str(key).partition(".")
        if index.isdigit() and int(index) < len(self.layers):
            inner = getattr(self.layers[int(index)], self.attr)
            if name in inner:
                return inner, name
        raise KeyError(key)

    def __getitem__(self, key):
        inner, name = self._find(key)
        return inner[name]

    def __setitem__(self, key, value) -> None:
        inner, name = self._find(key)
        inner[name] = value

    def __delitem__(self, key) -> None:
        raise TypeError("the arrays of a Stack belong to its layers")

    def __iter__(self):
        for i, layer in enumerate(self.layers):
            for name in getattr(layer, self.attr):
                yield f"{i}.{name}"

    def __len__(self) -> int:
        return sum(len(getattr(layer, self.attr)) for layer in self.layers)


_SIMPLE = (int, float, str, bool)


def option_table(cls: type) -> dict[str, tuple]:
    """{option: (python type, default or REQUIRED)} from ``cls.__init__``'s
    signature and type hints, as LAYER_SPECS declares a built-in layer's.
    A None default lets the option be null.  ValueError for a parameter whose
    type cannot come from a YAML config."""
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception as exc:  # noqa: BLE001 -- a hint naming something undefined
        raise ValueError(f"{cls.__name__}: its constructor's type hints cannot be read ({exc})") from None
    table = {}
    for name, p in list(signature.parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in GIVEN:
            continue
        default = REQUIRED if p.default is p.empty else p.default
        typ = _option_type(hints.get(name), default)
        if typ is None:
            raise ValueError(f"{cls.__name__}: option {name!r} needs a type hint (int, float, str, bool "
                             "or Stack) or a default")
        table[name] = (typ, default)
    return table


def _option_type(hint, default):
    """int/float/str/bool/Stack from a hint (``X | None`` and Optional[X] too) or from the default's type."""
    if hint is None:
        return type(default) if isinstance(default, _SIMPLE) else None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return hint if hint in _SIMPLE or hint is Stack else None


def construct(cls: type, options: dict, shape: tuple, rng: np.random.Generator, dtype, build_stack) -> Layer:
    """An instance of a user's layer class for one spec, given the per-sample
    input ``shape``; ``build_stack(specs, shape)`` makes the Stack of an option
    that holds layer specs.  The layer's ``output_shape`` is checked (or found
    by a forward pass on zeros) here, so that a layer which cannot take its
    input fails while the model is built, with a ValueError."""
    kwargs = {}
    for name, (typ, _) in option_table(cls).items():
        value = options[name]
        kwargs[name] = build_stack(value, shape) if typ is Stack and value is not None else value
    given = {"input_shape": tuple(shape), "rng": rng, "dtype": np.dtype(dtype)}
    wanted = inspect.signature(cls.__init__).parameters
    kwargs.update({k: v for k, v in given.items() if k in wanted})
    try:
        layer = cls(**kwargs)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the user's constructor: named, never a traceback
        raise ValueError(f"{cls.__name__}({_args(options)}) failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(getattr(layer, "params", None), MutableMapping) or set(layer.params) != set(layer.grads):
        raise ValueError(f"{cls.__name__}: params and grads must be dicts with the same names "
                         "(did __init__ call super().__init__()?)")
    layer.output_shape = _shape_function(layer, cls)
    layer.output_shape(shape)
    return layer


def _args(options: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items() if not isinstance(v, list))


def _shape_function(layer: Layer, cls: type):
    """The layer's own output_shape, or one that runs a forward pass on a batch of two zero inputs."""
    if cls.output_shape is not Layer.output_shape:
        return layer.output_shape

    def output_shape(input_shape: tuple) -> tuple:
        dtype = next(iter(layer.params.values())).dtype if layer.params else np.float32
        try:
            y = layer.forward(np.zeros((2, *input_shape), dtype), False)
        except Exception as exc:  # noqa: BLE001 -- the user's forward, on its first input
            raise ValueError(f"{cls.__name__}.forward fails on a per-sample input of shape "
                             f"{tuple(input_shape)}: {type(exc).__name__}: {exc}") from None
        shape = getattr(y, "shape", None)
        if shape is None or len(shape) < 2 or shape[0] != 2:
            raise ValueError(f"{cls.__name__}.forward must return an array with the batch on axis 0, "
                             f"got {type(y).__name__} of shape {shape}")
        return tuple(int(d) for d in shape[1:])

    return output_shape
