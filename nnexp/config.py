"""Run configuration: the YAML schema, its validation, and dotted-key overrides.

Everything a run needs flows from one validated dict (nanoGPT style): the CLI
loads a YAML file, applies ``key=value`` overrides, validates the result here,
and hands the *resolved* config (every default filled in) to the trainer. The
resolved config is what gets written to the run folder, so a run can be
reproduced from its own ``config.yaml`` alone.

Validation reports every mistake of a config at once, before anything
touches the run store: first the declarative schema (unknown keys with a
"did you mean", wrong types, unknown names, missing keys, out-of-range values,
in every section and every layer), then the rules that only the code which
builds things knows (a kernel that does not fit the image, beta1 < 1, ...),
asked of that code itself. One :class:`InvalidConfig` lists them all, one line
each, naming the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .augment import AUGMENT_SPECS, Augmenter
from .data.custom import CUSTOM, peek
from .errors import ConfigError, DataError
from .engines import ENGINES
from .nn import LAYER_SPECS, OPTIMIZER_SPECS, OPTIMIZERS, REQUIRED, SCHEDULE_SPECS, make_schedule
from .nn.user_layers import Stack, class_name, is_user_type, load_class, option_table, resolve_type
from .tracking.records import layers_text

DATASET_NAMES = ("mnist", "fashion-mnist", "kaggle-csv", *CUSTOM)
#: the input shape and classes of the digit sets, which the check of a config builds its model for
DIGITS = ((1, 28, 28), 10)


@dataclass(frozen=True)
class Field:
    """One leaf of the schema: its type, default and an optional extra check."""

    type: type | tuple
    default: Any = REQUIRED
    check: Bound | None = None  # the range a number must lie in
    choices: tuple | None = None
    nullable: bool = False
    items: Field | None = None  # what a list holds, where the table says


@dataclass(frozen=True)
class Bound:
    """The range a number must lie in, as a Field's ``check``: the validator's message
    and the JSON Schema's bounds (``nnexp schema``) both come from it."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # > low, not >= low
    high_open: bool = True  # < high, not <= high
    example: str = ""

    def __call__(self, v) -> str | None:
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return None if above and below else f"must be {self.text()}"

    def text(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        example = f", e.g. {self.example}" if self.example else ""
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
                f"{example}")

    def json_schema(self) -> dict:
        out = {}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


_positive = Bound(0, low_open=True)
_non_negative = Bound(0)
_decay = Bound(0, 1, low_open=True, example="0.999")
_fraction = Bound(0, 1)


# The schema. Sections map to dicts of Fields; "model.layers", "optimizer" and
# "schedule" have keys that depend on the chosen name and are checked by the
# specs that live next to the code that consumes them (nnexp.nn).
SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "dataset": Field(str, "mnist", choices=DATASET_NAMES),
        "val_size": Field(int, 5000, _non_negative),
        "split_seed": Field(int, 0),
        "batch_size": Field(int, 128, _positive),
        "train_subset": Field(int, None, _positive, nullable=True),
        "cache_dir": Field(str, None, nullable=True),
        "local_dir": Field(str, None, nullable=True),
        "mirrors": Field(list, None, nullable=True),
        "csv_path": Field(str, None, nullable=True),
        "test_csv_path": Field(str, None, nullable=True),
        "test_size": Field(int, 10000, _positive),
        # a user's own set: the .npz file (npz) or the folder (image-folder), relative to the config file
        "path": Field(str, None, nullable=True),
        "augment": Field(dict, None, nullable=True),  # keys: nnexp.augment.AUGMENT_SPECS
    },
    "model": {
        "layers": Field(list),
        "dtype": Field(str, "float32", choices=("float32", "float64")),
        # which implementation computes the network (nnexp/engines.py)
        "engine": Field(str, "fast", choices=tuple(ENGINES)),
        # straighten each input image first (nnexp/nn/deskew.py); part of the model
        "deskew": Field(bool, False),
    },
    "train": {
        "epochs": Field(int, 10, _positive),
        "seed": Field(int, 0, _non_negative),
        "label_smoothing": Field(float, 0.0, _fraction),
        "eval_batch_size": Field(int, 2000, _positive),
        "early_stopping": Field(dict, None, nullable=True),
        "restore_best": Field(bool, False),
        # decay of an exponential moving average of the weights (see nnexp/ema.py); null: none
        "ema": Field(float, None, _decay, nullable=True),
        # shards each batch is cut into, computed by parallel processes (see nnexp/nn/fast/data_parallel.py)
        "data_parallel": Field(int, 1, _positive),
        # where the network computes: cpu (NumPy) or gpu (CuPy; see nnexp/devices.py)
        "device": Field(str, "cpu", choices=("cpu", "gpu")),
        # per-layer statistics once per epoch into diagnostics.csv (see nnexp/diagnostics.py)
        "diagnostics": Field(bool, True),
    },
    "tracking": {
        "store": Field(str, "runs"),
        "name": Field(str, None, nullable=True),
        "tags": Field(list, []),
        "plots": Field(bool, True),
        # test image whose feature maps a conv net's plots/feature_maps.png shows
        "feature_map_image": Field(int, 0, _non_negative),
    },
}

#: the keys every optimizer takes besides those of its OPTIMIZER_SPECS entry
OPTIMIZER_EXTRA = {"lr": Field(float, 0.001, _positive)}
#: the optimizer and schedule a config without a name gets
DEFAULT_OPTIMIZER, DEFAULT_SCHEDULE = "adam", "constant"
#: the data section's keys that decide the arrays training gets: trials with the same values share one dataset
DATASET_KEYS = ("dataset", "val_size", "split_seed", "cache_dir", "local_dir", "mirrors", "csv_path", "test_csv_path",
                "test_size", "path", "train_subset")
#: those of them that say where the files are, not what they hold
DATA_LOCATION_KEYS = ("cache_dir", "local_dir", "mirrors")

EARLY_STOPPING = {
    "metric": Field(str, "val_accuracy", choices=("val_accuracy", "val_loss")),
    "patience": Field(int, 3, _positive),
    "min_delta": Field(float, 0.0, _non_negative),
}

# Names other tools use for our keys, for "did you mean" hints.
ALIASES = {"learning_rate": "lr", "learning-rate": "lr", "alpha": "lr", "n_epochs": "epochs",
           "num_epochs": "epochs", "max_epochs": "epochs", "random_seed": "seed", "momentum_factor": "momentum",
           "dropout": "p", "rate": "p", "size": "units", "out_features": "units", "batchsize": "batch_size"}

TOP_LEVEL = ("data", "model", "optimizer", "schedule", "train", "tracking")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: a number written as text: PyYAML reads "1e-3" (no dot) as a string, which a user means as 0.001
FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# ---------------------------------------------------------------- loading --


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with the safe loader; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``optimizer.lr=0.01`` -> (["optimizer", "lr"], 0.01). Values are YAML scalars."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. optimizer.lr=0.01")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty component in key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # a plain string the YAML reader cannot parse, e.g. "a: b"
    return parts, value


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Return a copy of ``cfg`` with dotted-key overrides applied.

    ``model.layers.1.units=512`` indexes into lists; missing mappings are
    created so that validation (not this function) reports unknown keys.
    """
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        parts, value = parse_override(text)
        set_path(cfg, parts, value, f"override {text!r}")
    return cfg


def set_path(cfg: dict, parts: list[str], value, what: str) -> None:
    """Set ``cfg[parts[0]][parts[1]]... = value`` in place (``what`` names the
    change in errors). Integer parts index lists."""
    node = cfg
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where, what)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"{what}: {where} is a {type(node).__name__}, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, ".".join(parts), what)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{what}: {'.'.join(parts[:-1])} is not a section")


def _list_index(node: list, part: str, where: str, what: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"{what}: {where} is not an index of a list of {len(node)} items")
    return int(part)


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Load, override and validate: the one entry point the CLI uses.  Layer
    files (``type: my_layers.py:Swish``) are found relative to the config file."""
    return validate(apply_overrides(load_yaml(path), list(overrides)), source=str(path),
                    base_dir=Path(path).parent)


# ------------------------------------------------------------- validation --


class InvalidConfig(ConfigError):
    """A config with one or more mistakes; ``problems`` lists them, one line each."""

    def __init__(self, source: str, problems: list[str]):
        if len(problems) == 1:
            message = f"{source}: {problems[0]}"
        else:
            message = f"{source}: {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(message)
        self.source, self.problems = source, list(problems)


class _Invalid:
    """The value of a key whose problem is already reported: later checks that
    need it are skipped, so that one mistake is reported once."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()


def valid(value) -> bool:
    """Whether ``value`` (a checked value, section or list) holds no INVALID part."""
    if value is INVALID:
        return False
    if isinstance(value, dict):
        return all(valid(v) for v in value.values())
    if isinstance(value, list):
        return all(valid(v) for v in value)
    return True


def validate(raw: dict, source: str = "config", base_dir=None) -> dict:
    """Check ``raw`` against the schema and return the resolved config; InvalidConfig
    lists every mistake.  ``base_dir``: the folder relative layer files are in
    (the current one when None); the resolved config names them by absolute path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a mapping, got {type(raw).__name__}")
    problems: list[str] = []
    _reject_unknown(raw, TOP_LEVEL, "", problems)
    if "model" not in raw:
        problems.append("missing section 'model' (it lists the network's layers)")
    out = {}
    for section in ("data", "model", "train", "tracking"):
        out[section] = _check_fields(_section(raw, section, problems), SCHEMA[section], section, problems,
                                     required="model" in raw)
    out["optimizer"] = _check_named(raw, "optimizer", OPTIMIZER_SPECS, DEFAULT_OPTIMIZER, problems, OPTIMIZER_EXTRA)
    out["schedule"] = _check_named(raw, "schedule", SCHEDULE_SPECS, DEFAULT_SCHEDULE, problems, {})
    _resolve_engine(raw, out, problems)
    model = out["model"]
    if model is not INVALID and model["layers"] is not INVALID:
        model["layers"] = _check_layers(model["layers"], problems, base_dir, engine=model["engine"])
    data, train = out["data"], out["train"]
    if data is not INVALID and data["augment"] not in (None, INVALID):
        data["augment"] = _check_fields(data["augment"], option_fields(AUGMENT_SPECS), "data.augment", problems)
    if train is not INVALID and train["early_stopping"] not in (None, INVALID):
        train["early_stopping"] = _check_fields(train["early_stopping"], EARLY_STOPPING, "train.early_stopping",
                                                problems)
    shape, n_classes = _data_shape(out["data"], problems, base_dir)
    _check_cross(out, problems, n_classes)
    _try_construct(out, problems, shape)
    if problems:
        raise InvalidConfig(source, problems)
    return out


def _resolve_engine(raw: dict, cfg: dict, problems: list[str]) -> None:
    """On the GPU the reference network runs: a config that leaves model.engine
    out gets it; one that asks for the CPU-only fast engine there is a mistake."""
    model, train = cfg["model"], cfg["train"]
    if model is INVALID or train is INVALID or not valid([model["engine"], train["device"]]):
        return
    if train["device"] == "gpu" and model["engine"] == "fast":
        if isinstance(raw.get("model"), dict) and "engine" in raw["model"]:
            problems.append("'model.engine' is 'fast', which runs on the CPU only; on the GPU "
                            "(train.device: gpu) the reference network runs: set model.engine: reference or leave it out")
        else:
            model["engine"] = "reference"


def _data_shape(data, problems: list[str], base_dir) -> tuple[tuple, int]:
    """(per-sample input shape, classes) the model is checked for: the digit sets',
    or those of the user's own set at data.path (made absolute here)."""
    if data is INVALID or data["dataset"] not in CUSTOM or not data["path"]:
        return DIGITS
    path = Path(data["path"]).expanduser()
    data["path"] = str((path if path.is_absolute() else Path(base_dir or ".") / path).resolve())
    try:
        return peek(data["dataset"], data["path"])
    except DataError as exc:
        problems.append(f"data.path: {exc}")
        data["path"] = INVALID
        return DIGITS


def input_shape(cfg: dict) -> tuple:
    """The per-sample input shape of a resolved config's data (1x28x28 for the digit sets)."""
    d = cfg["data"]
    return peek(d["dataset"], d["path"])[0] if d["dataset"] in CUSTOM else DIGITS[0]


def _try_construct(cfg: dict, problems: list[str], input_shape=DIGITS[0]) -> None:
    """Let the model, optimizer, schedule and augmenter check their own rules
    (kernel fits the image, beta1 < 1, pct_start in (0, 1), ...) now, on dummy
    inputs, so that a bad value is a config error before anything runs, worded
    by the code that knows the rule. Each is asked only if its part of the
    config passed the schema."""
    optimizer, schedule, model, data = cfg["optimizer"], cfg["schedule"], cfg["model"], cfg["data"]
    if valid(optimizer):
        opt = dict(optimizer)
        name, _ = opt.pop("name"), opt.pop("lr")
        dummy = [("w", np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32))]
        try:
            OPTIMIZERS[name](dummy, **opt)
        except ValueError as exc:
            problems.append(f"optimizer: {exc}")
    if valid(schedule) and optimizer is not INVALID and optimizer["lr"] is not INVALID:
        sched = dict(schedule)
        try:
            make_schedule(sched.pop("name"), optimizer["lr"], 100, 10, **sched)
        except ValueError as exc:
            problems.append(f"schedule: {exc}")
    if valid(model):
        try:  # the layers' own rules, and sizes that do not fit the image (a 40x40 kernel on 28x28, ...)
            ENGINES[model["engine"]].build_model(model["layers"], input_shape, np.random.default_rng(0),
                                                 np.float32, model["deskew"])
        except ValueError as exc:
            problems.append(f"model.layers: {exc}")
    if data is not INVALID and data["augment"] is not None and valid(data["augment"]):
        try:
            Augmenter(**data["augment"])
        except ValueError as exc:
            problems.append(f"data.{exc}")


def _section(raw: dict, name: str, problems: list[str]):
    """The section ``name`` of ``raw`` ({} if absent), or INVALID if it is not a mapping."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"'{name}' must be a mapping, got {_show(value)}")
        return INVALID
    return value


def _reject_unknown(given: dict, allowed, prefix: str, problems: list[str]) -> None:
    for key in given:
        if key not in allowed:
            path = f"{prefix}{key}"
            hint = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
            if not hint and ALIASES.get(key) in allowed:
                hint = [ALIASES[key]]
            did_you_mean = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            problems.append(f"unknown key '{path}'{did_you_mean} (allowed: {', '.join(map(str, allowed))})")


def _check_fields(given, fields: dict[str, Field], where: str, problems: list[str], required: bool = True):
    """The checked values of a mapping of ``fields`` (defaults filled in; INVALID
    where a value is wrong), or INVALID if ``given`` is not a mapping.
    ``required`` False: a missing required key is left to a problem reported before."""
    if given is INVALID:
        return INVALID
    if not isinstance(given, dict):
        problems.append(f"'{where}' must be a mapping, got {_show(given)}")
        return INVALID
    _reject_unknown(given, fields, f"{where}.", problems)
    out = {}
    for key, spec in fields.items():
        path = f"{where}.{key}"
        if key not in given:
            if spec.default is REQUIRED:
                if required:
                    problems.append(f"missing required key '{path}'")
                out[key] = INVALID
            else:
                out[key] = copy.deepcopy(spec.default)
            continue
        out[key] = check_value(given[key], spec, path, problems)
    return out


def check_value(value, spec: Field, path: str, problems: list[str]):
    """The checked value of one key (``path`` names it), or INVALID with its problem appended."""
    if value is None:
        if spec.nullable:
            return None
        problems.append(f"'{path}' must not be empty (expected {_type_name(spec.type)})")
        return INVALID
    try:
        value = _coerce(value, spec.type, path)
    except ValueError as exc:
        problems.append(str(exc))
        return INVALID
    if spec.choices is not None and value not in spec.choices:
        hint = difflib.get_close_matches(str(value), spec.choices, n=1)
        did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
        problems.append(f"'{path}' is {value!r}{did_you_mean} (allowed: {', '.join(spec.choices)})")
        return INVALID
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            problems.append(f"'{path}' {problem}, got {value!r}")
            return INVALID
    return value


def _coerce(value, typ, path: str):
    """Accept what a YAML user means: ints for floats, '1e-3' for 1e-3; ValueError names the mistake."""
    bad = ValueError(f"'{path}' must be {_type_name(typ)}, got {_show(value)}")
    if typ is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str) and FLOAT_TEXT.match(value.strip()):
            value = float(value)
        if not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"'{path}' must be a finite number, got {value}")
        return value
    if typ is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise bad
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if typ is str:
        if not isinstance(value, str):
            raise bad
        return value
    if not isinstance(value, typ):
        raise bad
    return value


def _check_named(raw, section, specs, default_name, problems: list[str], extra: dict[str, Field]):
    """Sections like ``optimizer: {name: adam, lr: ...}`` whose keys depend on the name."""
    given = _section(raw, section, problems)
    if given is INVALID:
        return INVALID
    given = dict(given)
    name = given.pop("name", default_name)
    if not isinstance(name, str) or name not in specs:
        hint = difflib.get_close_matches(str(name), list(specs), n=1)
        did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
        problems.append(f"'{section}.name' is {name!r}{did_you_mean} (allowed: {', '.join(specs)})")
        # The other keys depend on the name; only those common to all names (lr) are checked.
        checked = _check_fields({k: v for k, v in given.items() if k in extra},
                                {k: f for k, f in extra.items()}, section, problems)
        return {"name": INVALID, **checked}
    return {"name": name, **_check_fields(given, {**option_fields(specs[name]), **extra}, section, problems)}


def option_fields(table: dict[str, tuple], nullable: bool = False) -> dict[str, Field]:
    """The Fields of an option table ``{option: (type, default)}`` of nnexp.nn, an engine or nnexp.augment;
    ``nullable``: an option whose default is None may also be given as null (pooling's stride)."""
    return {key: Field(t, d, nullable=nullable and d is None) for key, (t, d) in table.items()}


def layer_fields(kind: str) -> dict[str, Field]:
    """The Fields of a built-in layer's options, on every engine."""
    return option_fields(LAYER_SPECS[kind], nullable=True)


def _check_layers(layers: list, problems: list[str], base_dir=None, prefix: str = "model.layers",
                  engine=None) -> list:
    """The checked layer specs of ``prefix`` (model.layers, or a composite layer's option, whose
    layers are reference ones) for ``engine``, which may add layer options (nnexp/engines.py)."""
    if not layers:
        problems.append(f"'{prefix}' must list at least one layer")
        return INVALID
    out = []
    for i, layer in enumerate(layers):
        where = f"{prefix}[{i}]"
        if not isinstance(layer, dict):
            problems.append(f"'{where}' must be a mapping like {{type: dense, units: 128}}, got {_show(layer)}")
            out.append(INVALID)
            continue
        given = dict(layer)
        kind = given.pop("type", None)
        if is_user_type(kind):
            out.append(_check_user_layer(kind, given, where, problems, base_dir))
            continue
        if kind not in LAYER_SPECS:
            hint = difflib.get_close_matches(str(kind), list(LAYER_SPECS), n=1)
            did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
            problems.append(f"'{where}.type' is {kind!r}{did_you_mean} (allowed: {', '.join(LAYER_SPECS)})")
            out.append(INVALID)
            continue
        own = ENGINES[engine].layer_options.get(kind, {}) if engine in ENGINES else {}
        for key in sorted(set(given) - set(LAYER_SPECS[kind]) - set(own)):
            engines = [name for name, e in ENGINES.items() if key in e.layer_options.get(kind, {})]
            if not engines:
                continue   # unknown to every engine: _check_fields names it
            value, default = given.pop(key), ENGINES[engines[0]].layer_options[kind][key][1]
            # at its default it asks for nothing (a config resolved for the other engine has it)
            if engine in ENGINES and value != default:   # (a bad engine is a problem of its own)
                problems.append(f"'{where}.{key}' is an option of the {engines[0]} engine only "
                                f"(model.engine: {engines[0]}); model.engine is {engine!r}")
        fields = {**layer_fields(kind), **option_fields(own, nullable=True)}
        out.append({"type": kind, **_check_fields(given, fields, where, problems)})
    if prefix == "model.layers" and not any(layer is INVALID or layer["type"] == "dense"
                                            or is_user_type(layer["type"]) for layer in out):
        problems.append("'model.layers' has no dense layer, so the network has nothing to learn")
    return out


def _check_user_layer(kind: str, given: dict, where: str, problems: list[str], base_dir):
    """A layer of the user's own class: its options checked against its constructor's
    signature, a Stack option's specs as layers of their own; the type resolved
    (nnexp.nn.user_layers)."""
    try:
        kind = resolve_type(kind, base_dir)
        table = option_table(load_class(kind))
    except ValueError as exc:
        problems.append(f"'{where}.type': {exc}")
        return INVALID
    fields = {key: Field(list if t is Stack else t, d, nullable=d is None) for key, (t, d) in table.items()}
    checked = _check_fields(given, fields, f"{where}", problems)
    for key, (t, _) in table.items():
        if t is Stack and checked[key] not in (None, INVALID):
            checked[key] = _check_layers(checked[key], problems, base_dir, f"{where}.{key}", engine="reference")
    return {"type": kind, **checked}


def _check_cross(cfg: dict, problems: list[str], n_classes: int = DIGITS[1]) -> None:
    """Checks that involve more than one key; each only when its keys passed their own checks."""
    data, train, tracking, model = cfg["data"], cfg["train"], cfg["tracking"], cfg["model"]
    if valid(data) and data["dataset"] == "kaggle-csv" and not data["csv_path"]:
        problems.append("'data.csv_path' is required when data.dataset is 'kaggle-csv'")
    if data is not INVALID and data["dataset"] in CUSTOM and data["path"] is None:
        problems.append(f"'data.path' is required when data.dataset is '{data['dataset']}' "
                        f"(the {'.npz file' if data['dataset'] == 'npz' else 'folder of images'})")
    if train is not INVALID and data is not INVALID and data["val_size"] == 0 and (
            train["early_stopping"] not in (None, INVALID) or train["restore_best"] is True):
        problems.append("early stopping and restore_best select on the validation set, "
                        "but 'data.val_size' is 0; set a validation size")
    if train is not INVALID and model is not INVALID and valid([train["data_parallel"], model["engine"]]) \
            and train["data_parallel"] > 1 and model["engine"] != "fast":
        problems.append(f"'train.data_parallel' is {train['data_parallel']}, but shards are computed by the "
                        "fast engine only; set model.engine: fast or train.data_parallel: 1")
    if train is not INVALID and data is not INVALID and valid([train["data_parallel"], data["batch_size"]]) \
            and train["data_parallel"] > data["batch_size"]:
        problems.append(f"'train.data_parallel' is {train['data_parallel']}, more shards than the "
                        f"{data['batch_size']} images of a batch (data.batch_size)")
    if model is not INVALID and valid(model["layers"]):
        dense = [layer for layer in model["layers"] if layer["type"] == "dense"]
        if dense and dense[-1]["units"] != n_classes:
            problems.append(f"the last dense layer must have {n_classes} units (one per class), "
                            f"got {dense[-1]['units']}")
    if tracking is not INVALID:
        name = tracking["name"]
        if name not in (None, INVALID) and not NAME_RE.match(name):
            problems.append(f"'tracking.name' {name!r} may use only letters, digits, '.', '_' and '-' "
                            "(at most 64, starting with a letter or digit)")
        if tracking["tags"] is not INVALID:
            bad = [i for i, tag in enumerate(tracking["tags"])
                   if not isinstance(tag, (str, int, float)) or isinstance(tag, bool)]
            for i in bad:
                problems.append(f"'tracking.tags[{i}]' must be a string, got {_show(tracking['tags'][i])}")
            if not bad:
                tracking["tags"] = [str(t) for t in tracking["tags"]]
    if data is not INVALID and data["mirrors"] not in (None, INVALID) \
            and not all(isinstance(m, str) for m in data["mirrors"]):
        problems.append("'data.mirrors' must be a list of base URLs (strings)")


def _type_name(typ) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return names.get(typ, getattr(typ, "__name__", str(typ)))


def _show(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def dump_yaml(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


#: {layer type: [(numeric option, default or None), ...]} in LAYER_SPECS order: what a layers text omits
LAYER_TEXT_DEFAULTS = {kind: [(key, None if default is REQUIRED else default)
                              for key, (typ, default) in options.items() if typ in (int, float)]
                       for kind, options in LAYER_SPECS.items()}


def describe_layers(layers: list) -> str:
    """A resolved ``model.layers`` as one line, e.g. ``flatten | dense(512) | relu | dropout(0.2) | dense(10)``:
    each layer's numeric options in order, trailing ones at their defaults left out (see
    ``nnexp.tracking.records.layers_text``). The trainer records it in summary.json as ``layers``."""
    return layers_text([{**layer, "type": class_name(layer["type"])} if is_user_type(layer.get("type")) else layer
                        for layer in layers], LAYER_TEXT_DEFAULTS)
