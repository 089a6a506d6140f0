"""Run records: one flat, JSON-serialisable dict per run folder.

A record is what listings, filters and comparisons work on, built from the
three small files of a run folder::

    {"id": "20261125-044804-mlp-0155",          # the folder name
     "path": "runs/20261125-044804-mlp-0155",
     "summary": {...},                           # summary.json as parsed
     "params": {"optimizer.lr": 0.002,           # config.yaml, flattened
                "model.layers": "flatten | dense(512) | relu | dense(10)", ...},
     "metrics": {"val_accuracy": 0.985, "best_val_loss": 0.06,
                 "epochs": 15.0, "test_accuracy": 0.9851, ...}}

The folder stays the source of truth: a record can always be rebuilt from it
(that is what the SQLite index in ``index.py`` caches). Reading is forgiving
where a run is still being written (a half-written last line of metrics.csv
is ignored) and strict where the folder is broken (an unreadable or invalid
summary.json or config.yaml raises :class:`DamagedRun`, which listings turn
into one warning).
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache

import yaml

from ..errors import NnexpError

# The C parser is ~10x faster than the pure-Python one; PyYAML ships without it
# on some platforms, and both read the resolved configs the same way.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Bump when the record layout changes, so that indexes built by an older nnexp
# are rebuilt instead of serving records in the old layout.
RECORD_VERSION = 1

CURVE_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
SUMMARY_METRICS = ("test_accuracy", "test_loss", "train_seconds", "total_seconds")

# Config keys that say where files live or how the run is filed, not what was
# trained: leaving them out keeps comparisons about the experiment.
EXCLUDED_PARAMS = ("data.cache_dir", "data.local_dir", "data.mirrors", "data.csv_path", "data.test_csv_path")
EXCLUDED_SECTIONS = ("tracking",)


class DamagedRun(NnexpError):
    """A run folder whose summary.json or config.yaml cannot be read or parsed."""

    exit_code = 1


# ---------------------------------------------------------------- records --


def make_record(run_dir) -> dict:
    """Build the record of the run folder ``run_dir`` (a str or Path).

    Raises DamagedRun when summary.json is missing, unreadable or not a JSON
    object, or when config.yaml exists but cannot be read or is not a YAML
    mapping. A missing config.yaml gives empty params (plus the sweep's
    trial_params); a missing metrics.csv gives no curve metrics and epochs 0.
    """
    run_dir = os.fspath(run_dir)
    run_id = os.path.basename(os.path.normpath(run_dir))
    summary = read_summary(run_dir, run_id)
    cfg = _read_config(run_dir, run_id)
    params = flatten_config(cfg) if cfg else {}
    trial_params = summary.get("trial_params")
    if isinstance(trial_params, dict):
        for key, value in trial_params.items():
            _add_param(params, str(key), value)
    metrics = curve_metrics(_read_metric_rows(run_dir, run_id))
    for key in SUMMARY_METRICS:
        _add_metric(metrics, key, summary.get(key))
    _add_metric(metrics, "n_params", summary.get("params"))
    return {"id": run_id, "path": run_dir, "summary": summary, "params": params, "metrics": metrics}


def read_summary(run_dir: str, run_id: str) -> dict:
    """summary.json as a dict; DamagedRun if it cannot be read or is not an object."""
    path = os.path.join(run_dir, "summary.json")
    try:
        with open(path, "rb") as f:
            summary = json.loads(f.read())
    except FileNotFoundError:
        raise DamagedRun(f"run {run_id}: no summary.json") from None
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read summary.json ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedRun(f"run {run_id}: invalid summary.json ({exc})") from None
    if not isinstance(summary, dict):
        raise DamagedRun(f"run {run_id}: summary.json is a JSON {type(summary).__name__}, not an object")
    return summary


def _read_config(run_dir: str, run_id: str) -> dict | None:
    path = os.path.join(run_dir, "config.yaml")
    try:
        with open(path, "rb") as f:
            cfg = yaml.load(f.read(), Loader=_YAML_LOADER)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read config.yaml ({exc.strerror or exc})") from None
    except (yaml.YAMLError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DamagedRun(f"run {run_id}: invalid config.yaml ({first})") from None
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise DamagedRun(f"run {run_id}: config.yaml is a {type(cfg).__name__}, not a mapping")
    return cfg


# ----------------------------------------------------------------- params --


def flatten_config(cfg: dict) -> dict:
    """A resolved config as {dotted key: scalar or None}.

    Nested mappings are joined with '.', ``model.layers`` becomes one string
    (see :func:`layers_text`), any other list its compact JSON text, an empty
    mapping None. ``tracking.*`` and the file-location keys in
    EXCLUDED_PARAMS are left out.
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"flatten_config: expected a mapping, got {type(cfg).__name__}")
    out: dict = {}
    for section, value in cfg.items():
        if section in EXCLUDED_SECTIONS:
            continue
        _add_param(out, str(section), value)
    for key in EXCLUDED_PARAMS:
        out.pop(key, None)
    return out


def _add_param(out: dict, key: str, value) -> None:
    """Put ``value`` under ``key`` in ``out``, flattening mappings below it."""
    if isinstance(value, dict):
        if not value:
            out[key] = None
        for sub, v in value.items():
            _add_param(out, f"{key}.{sub}", v)
    elif key == "model.layers" and isinstance(value, list):
        out[key] = layers_text(value)
    elif isinstance(value, (list, tuple)):
        out[key] = json.dumps(value, separators=(",", ":"), default=str)
    elif value is None or isinstance(value, (str, int, float, bool)):
        out[key] = value
    else:  # YAML dates and other exotic scalars: keep them JSON-serialisable
        out[key] = str(value)


def layers_text(layers: list) -> str:
    """``[{type: flatten}, {type: dense, units: 512}, ...]`` -> ``"flatten | dense(512) | ..."``.

    Each layer is its type followed by its numeric options in the order of
    ``nnexp.nn.model.LAYER_SPECS``, like a call with positional arguments:
    init names are left out, and so are trailing options that equal their
    defaults (``dropout(0.2)``, ``conv2d(32,3,1,1)``, plain ``batchnorm``).
    Layers that are not mappings are written as they are.
    """
    if not isinstance(layers, (list, tuple)):
        raise ValueError(f"layers_text: expected a list of layer mappings, got {type(layers).__name__}")
    return " | ".join(_layer_text(layer) for layer in layers)


def _layer_text(layer) -> str:
    if not isinstance(layer, dict):
        return str(layer)
    kind = str(layer.get("type", "?"))
    spec = _layer_defaults().get(kind)
    if spec is None:  # a type this nnexp does not know: every option but strings
        values = [v for k, v in layer.items() if k != "type" and _is_number(v)]
    else:
        values = [layer.get(key, default) for key, default in spec]
        while values and (values[-1] is None or _same(values[-1], spec[len(values) - 1][1])):
            values.pop()
        values = [v for v in values if v is not None]
    return f"{kind}({','.join(_number_text(v) for v in values)})" if values else kind


@lru_cache(maxsize=1)
def _layer_defaults() -> dict[str, list[tuple[str, object]]]:
    """{layer type: [(option, default), ...]} for the numeric options of LAYER_SPECS.

    Imported on first use: the model module pulls in NumPy, which a warm
    ``nnexp runs`` never needs.
    """
    from ..nn.model import LAYER_SPECS, REQUIRED

    return {kind: [(key, None if default is REQUIRED else default)
                   for key, (typ, default) in options.items() if typ in (int, float)]
            for kind, options in LAYER_SPECS.items()}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(value, default) -> bool:
    return default is not None and _is_number(value) and value == default


def _number_text(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- metrics --


def _read_metric_rows(run_dir: str, run_id: str) -> list[dict]:
    """metrics.csv as a list of {column: float} (NaN for empty cells).

    The trainer appends a row per epoch, so a reader may catch the last line
    half-written: a final line without its newline is ignored, and so is any
    row that does not parse (wrong field count, not a number).
    """
    path = os.path.join(run_dir, "metrics.csv")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read metrics.csv ({exc.strerror or exc})") from None
    lines = text.split("\n")
    lines.pop()  # "" after a complete last line, or the half-written one
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split(",")]
    wanted = [(i, h) for i, h in enumerate(header) if h in CURVE_COLUMNS]
    rows = []
    for line in lines[1:]:
        fields = line.rstrip("\r").split(",")
        if len(fields) != len(header):
            continue
        try:
            rows.append({h: float(fields[i]) if fields[i] else math.nan for i, h in wanted})
        except ValueError:
            continue
    return rows


def curve_metrics(rows: list[dict]) -> dict:
    """Per-column final/best/mean values of the epoch rows, plus ``epochs``.

    For each column c of CURVE_COLUMNS: ``c`` and ``final_c`` (the last
    epoch's value), ``best_c`` (max for accuracies, min for losses) and
    ``mean_c``. NaN cells are skipped; a column with no value gets no keys.
    """
    metrics = {"epochs": float(len(rows))}
    for col in CURVE_COLUMNS:
        values = [v for v in (row.get(col, math.nan) for row in rows) if not math.isnan(v)]
        if not values:
            continue
        last = rows[-1].get(col, math.nan)
        if not math.isnan(last):
            metrics[col] = metrics[f"final_{col}"] = last
        metrics[f"best_{col}"] = max(values) if col.endswith("accuracy") else min(values)
        metrics[f"mean_{col}"] = math.fsum(values) / len(values)
    return metrics


def _add_metric(metrics: dict, key: str, value) -> None:
    if _is_number(value) and not math.isnan(value):
        metrics[key] = float(value)
