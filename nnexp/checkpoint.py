"""Training checkpoints: everything a run needs to go on exactly where it stopped.

``checkpoint.npz`` in the run folder is replaced after every epoch. It holds::

    model/<name>   parameters and buffers (model.state_dict())
    optim/<key>    the optimizer's internal buffers, exactly as they are
    best/<name>    the best epoch's weights (only with train.restore_best)
    ema/<name>     the moving average of the weights and its step count (only with train.ema)
    meta           JSON text: epoch, step, seconds so far (training, logging,
                   diagnostics), the early-stopping
                   state, every metrics.csv row so far, the random generators'
                   states and a digest of the config it belongs to

It is written to a temporary file, fsynced and renamed over the previous one,
so a kill at any moment leaves the last good checkpoint in place; it is read
with ``allow_pickle=False`` and zip CRCs checked, so a damaged or hostile file
is refused, never executed. Resuming from it repeats the uninterrupted run bit
for bit: the same weights, metrics and test accuracy.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_writer
from .engines import engine_options
from .errors import NnexpError
from .tracking.run import CHECKPOINT
from .values import is_number

FILENAME = CHECKPOINT
FORMAT = 1


class CheckpointError(NnexpError):
    """A checkpoint that cannot be used: damaged, hostile, or from another config."""


class ConfigChanged(CheckpointError):
    """The run's config.yaml no longer matches its checkpoint: a config error (exit 2)."""

    exit_code = 2


@dataclass
class Checkpoint:
    """The state at the end of epoch ``epoch`` (see the module docstring)."""

    epoch: int
    step: int
    train_seconds: float
    log_seconds: float
    rows: list[dict]
    stopper: dict
    rng_states: dict
    config_digest: str
    stop: dict | None = None  # {"status": ..., "reason": ...} when training had ended at this epoch
    model: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    best: dict | None = None
    ema: dict | None = None
    diagnostics_seconds: float = 0.0


def config_digest(cfg: dict) -> str:
    """What a checkpoint must match: everything that shapes training, not where
    files live or how the run is filed."""
    data = {k: v for k, v in cfg["data"].items() if k not in ("cache_dir", "local_dir", "mirrors")}
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


def save(run_dir: Path, ckpt: Checkpoint) -> None:
    """Write ``run_dir/checkpoint.npz`` atomically and durably."""
    meta = {"format": FORMAT, "epoch": ckpt.epoch, "step": ckpt.step, "train_seconds": ckpt.train_seconds,
            "log_seconds": ckpt.log_seconds, "rows": ckpt.rows, "stopper": ckpt.stopper,
            "rng_states": ckpt.rng_states, "config_digest": ckpt.config_digest, "stop": ckpt.stop,
            "diagnostics_seconds": ckpt.diagnostics_seconds}
    arrays = {f"model/{k}": v for k, v in ckpt.model.items()}
    arrays |= {f"optim/{k}": v for k, v in ckpt.optim.items()}
    arrays |= {f"best/{k}": v for k, v in (ckpt.best or {}).items()}
    arrays |= {f"ema/{k}": v for k, v in (ckpt.ema or {}).items()}
    arrays["meta"] = np.array(json.dumps(meta))  # a unicode array: no pickle needed to read it back
    with atomic_writer(Path(run_dir) / FILENAME, binary=True) as f:
        np.savez(f, **arrays)


def load(run_dir: Path) -> Checkpoint | None:
    """The checkpoint in ``run_dir``, or None if there is none.

    Raises CheckpointError, naming the file and the problem, when it is
    truncated, corrupt, not an .npz, holds pickled objects or lacks a field.
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
        ckpt = Checkpoint(epoch=int(meta["epoch"]), step=int(meta["step"]),
                          train_seconds=float(meta["train_seconds"]), log_seconds=float(meta["log_seconds"]),
                          rows=list(meta["rows"]), stopper=dict(meta["stopper"]),
                          rng_states=dict(meta["rng_states"]), config_digest=str(meta["config_digest"]),
                          stop=meta.get("stop"), diagnostics_seconds=float(meta.get("diagnostics_seconds", 0.0)))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: its metadata is damaged ({type(exc).__name__}: {exc})") from None
    problem = _check_meta(ckpt)
    if problem:
        raise CheckpointError(f"{path}: its metadata is damaged ({problem})")
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group not in ("model", "optim", "best", "ema") or not name:
            raise CheckpointError(f"{path}: unexpected entry {key!r}")
        if group in ("best", "ema") and getattr(ckpt, group) is None:
            setattr(ckpt, group, {})
        getattr(ckpt, group)[name] = value
    return ckpt


def _check_meta(ckpt: Checkpoint) -> str | None:
    """What is wrong with the parsed metadata, or None."""
    if ckpt.epoch < 0 or ckpt.step < 0:
        return "negative epoch or step"
    if not all(isinstance(r, dict) for r in ckpt.rows):
        return "metrics rows are not objects"
    if set(ckpt.stopper) - {"best", "best_epoch", "bad_epochs"} or not all(
            is_number(v) for v in ckpt.stopper.values()):
        return "bad early-stopping state"
    if ckpt.stop is not None and not (isinstance(ckpt.stop, dict) and ckpt.stop.get("status") in ("completed", "pruned")):
        return "bad stop record"
    return None


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
