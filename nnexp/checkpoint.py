"""Training checkpoints: the training state, saved after every epoch so that a run can go on exactly where it stopped.

:class:`TrainState` is where training stands after an epoch, and it is what
``checkpoint.npz`` in the run folder holds, no more and no less::

    model/<name>   parameters and buffers (model.state_dict())
    optim/<key>    the optimizer's internal buffers, exactly as they are
    best/<name>    the best epoch's weights (only with train.restore_best)
    ema/<name>     the moving average of the weights and its step count (only with train.ema)
    meta           JSON text: the format, then every other field of TrainState under
                   its name (epoch, step, the metrics.csv and diagnostics.csv rows so
                   far, the early-stopping state, the random generators' states,
                   the seconds so far, the digest of the config it belongs to)

It is written to a temporary file, fsynced and renamed over the previous one,
so a kill at any moment leaves the last good checkpoint in place; it is read
with ``allow_pickle=False`` and zip CRCs checked, so a damaged or hostile file
is refused, never executed. Resuming from it repeats the uninterrupted run bit
for bit: the same weights, metrics and test accuracy.
"""

from __future__ import annotations

import hashlib
import json
import typing
import zipfile
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_writer
from .config import DATA_LOCATION_KEYS
from .early_stopping import Patience
from .engines import engine_options
from .errors import NnexpError
from .tracking.run import CHECKPOINT

FILENAME = CHECKPOINT
#: 2: the diagnostics.csv rows and the checkpoint seconds joined the state; a format 1 file
#: (without them) still loads, with none of either
FORMAT = 2
ARRAYS = {"arrays": True}    # a field saved as array entries <field>/<name>, not in meta
MAY_LACK = {"may_lack": True}  # a field a checkpoint may not have: it then takes its default


class CheckpointError(NnexpError):
    """A checkpoint that cannot be used: damaged, hostile, or from another config."""


class ConfigChanged(CheckpointError):
    """The run's config.yaml no longer matches its checkpoint: a config error (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Ending:
    """Why training ended at an epoch before the planned last one, or after it."""

    status: str  # "completed" (early stopping) or "pruned" (a sweep's decision)
    reason: str | None = None

    def __post_init__(self):
        if self.status not in ("completed", "pruned"):
            raise ValueError(f"status {self.status!r} is neither completed nor pruned")


@dataclass(frozen=True)
class TrainState:
    """Where training stands after ``epoch`` epochs: all one epoch hands the next,
    and all a checkpoint holds (see the module docstring)."""

    config_digest: str  # the config it belongs to (config_digest)
    epoch: int = 0
    step: int = 0  # optimizer steps taken
    rows: list[dict] = field(default_factory=list)  # metrics.csv's rows
    diagnostics: list[list] = field(default_factory=list, metadata=MAY_LACK)  # diagnostics.csv's rows
    stopper: Patience = Patience()
    stop: Ending | None = field(default=None, metadata=MAY_LACK)  # set once training has ended
    rng_states: dict = field(default_factory=dict)  # {stream: bit generator state} (rng_states)
    train_seconds: float = 0.0
    log_seconds: float = 0.0
    diagnostics_seconds: float = field(default=0.0, metadata=MAY_LACK)
    checkpoint_seconds: float = field(default=0.0, metadata=MAY_LACK)  # up to the checkpoint before this one
    model: dict = field(default_factory=dict, metadata=ARRAYS)
    optim: dict = field(default_factory=dict, metadata=ARRAYS)
    best: dict | None = field(default=None, metadata=ARRAYS)  # the best epoch's weights (train.restore_best)
    ema: dict | None = field(default=None, metadata=ARRAYS)  # the weights' average (train.ema)


_ARRAY_FIELDS = [f for f in fields(TrainState) if f.metadata.get("arrays")]
_META_FIELDS = [f for f in fields(TrainState) if not f.metadata.get("arrays")]
_HINTS = typing.get_type_hints(TrainState)


def config_digest(cfg: dict) -> str:
    """What a checkpoint must match: everything that shapes training, not where
    files live or how the run is filed."""
    data = {k: v for k, v in cfg["data"].items() if k not in DATA_LOCATION_KEYS}
    # keys at the defaults they had before they existed are left out, so that configs
    # written without them keep their digest (and their checkpoints)
    model = {k: v for k, v in cfg["model"].items() if not (k == "engine" and v == "fast")}
    # each layer with every engine's own options (at their defaults where the engine lacks them), as
    # configs resolved when every engine listed them were
    model["layers"] = [{**engine_options(layer.get("type")), **layer} for layer in model["layers"]]
    # neither the device nor the diagnostics shape the numbers: a run may go on on another device
    # (bit for bit only on the same one) and with or without diagnostics
    train = {k: v for k, v in cfg["train"].items() if k not in ("device", "diagnostics")}
    shaping = {k: cfg[k] for k in ("optimizer", "schedule")} | {"data": data, "model": model, "train": train}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(run_dir: Path, state: TrainState) -> None:
    """Write ``run_dir/checkpoint.npz`` atomically and durably."""
    meta = {"format": FORMAT}
    for f in _META_FIELDS:
        value = getattr(state, f.name)
        meta[f.name] = asdict(value) if is_dataclass(value) else value
    arrays = {f"{f.name}/{k}": v for f in _ARRAY_FIELDS for k, v in (getattr(state, f.name) or {}).items()}
    arrays["meta"] = np.array(json.dumps(meta))  # a unicode array: no pickle needed to read it back
    with atomic_writer(Path(run_dir) / FILENAME, binary=True) as f:
        np.savez(f, **arrays)


def load(run_dir: Path) -> TrainState | None:
    """The training state saved in ``run_dir``, or None if there is none.

    Raises CheckpointError, naming the file and the problem, when it is
    truncated, corrupt, not an .npz, holds pickled objects, lacks a field or
    was written by a newer nnexp.
    """
    path = Path(run_dir) / FILENAME
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path} is damaged or not a checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:  # an object array: allow_pickle=False refuses to unpickle it
        raise CheckpointError(f"{path}: refused: it holds pickled objects, which nnexp never loads ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, RuntimeError,
            NotImplementedError) as exc:   # zipfile: "encrypted", "compression method not supported"
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not an nnexp checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise TypeError("not an object")
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its metadata is damaged ({type(exc).__name__}: {exc})") from None
    written = meta.get("format", 1)
    if not (isinstance(written, int) and 1 <= written <= FORMAT):
        raise CheckpointError(f"{path} was written by another nnexp (checkpoint format {written!r}; this one "
                              f"reads formats 1 to {FORMAT}): resume it with that version")
    values = {}
    for f in _META_FIELDS:
        if f.name not in meta and f.metadata.get("may_lack"):
            continue
        try:
            values[f.name] = _read(_HINTS[f.name], meta[f.name])
        except (ValueError, KeyError, TypeError, OverflowError) as exc:  # OverflowError: int(Infinity)
            raise CheckpointError(f"{path}: its metadata is damaged ({f.name}: {type(exc).__name__}: {exc})") from None
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group not in {f.name for f in _ARRAY_FIELDS} or not name:
            raise CheckpointError(f"{path}: unexpected entry {key!r}")
        values.setdefault(group, {})[name] = value
    state = TrainState(**values)
    if state.epoch < 0 or state.step < 0:
        raise CheckpointError(f"{path}: its metadata is damaged (negative epoch or step)")
    return state


def _read(hint, value):
    """``value``, parsed from JSON, as the type ``hint`` names; TypeError, ValueError or OverflowError where it
    is not one."""
    args = typing.get_args(hint)
    if type(None) in args:
        return None if value is None else _read(next(a for a in args if a is not type(None)), value)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise TypeError(f"not an object: {value!r}")
        hints = typing.get_type_hints(hint)
        return hint(**{k: _read(hints[k], v) for k, v in value.items()})  # an unknown key: KeyError
    kind = typing.get_origin(hint) or hint
    if kind in (list, dict):
        if not isinstance(value, kind) or (args and not all(isinstance(v, typing.get_origin(args[0]) or args[0])
                                                            for v in value)):
            raise TypeError(f"not a {hint}")
        return value
    if isinstance(value, (bool, list, dict)) or value is None:
        raise TypeError(f"not a {kind.__name__}: {value!r}")
    return kind(value)


def remove(run_dir: Path) -> None:
    (Path(run_dir) / FILENAME).unlink(missing_ok=True)


# -- random generators --------------------------------------------------------

def rng_states(rngs: dict[str, np.random.Generator]) -> dict:
    return {name: g.bit_generator.state for name, g in rngs.items()}


def restore_rngs(rngs: dict[str, np.random.Generator], states: dict) -> None:
    """Set each generator's state in place: layers holding a generator (dropout)
    keep their reference and continue the restored stream."""
    if set(states) != set(rngs):
        raise CheckpointError(f"checkpoint has random generators {sorted(states)}, expected {sorted(rngs)}")
    for name, g in rngs.items():
        try:
            g.bit_generator.state = states[name]
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"checkpoint: bad state for the {name!r} random generator ({exc})") from None
