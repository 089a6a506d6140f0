"""Run records: one flat, JSON-serialisable dict per run folder.

A record is what listings, filters and comparisons work on, built from the
small files of a run folder::

    {"id": "20261125-044804-mlp-0155",          # the folder name
     "path": "runs/20261125-044804-mlp-0155",
     "summary": {...},                           # summary.json, with annotations.json's tags and note
     "params": {"optimizer.lr": 0.002,           # config.yaml, flattened
                "model.layers": "flatten | dense(512) | relu | dense(10)", ...},
     "metrics": {"val_accuracy": 0.985, "best_val_loss": 0.06,
                 "epochs": 15.0, "test_accuracy": 0.9851, ...}}

``model.layers`` is the text the trainer wrote into summary.json
(``layers``): only the code that builds networks knows the layers' defaults,
which the text leaves out. A run recorded without it gets every numeric
option of its resolved config (see :func:`layers_text`).

The folder stays the source of truth: a record can always be rebuilt from it
(that is what the SQLite index in ``index.py`` caches). Reading is forgiving
where a run is still being written (a half-written last line of metrics.csv
is ignored) and strict where the folder is broken (an unreadable or invalid
summary.json or config.yaml raises :class:`DamagedRun`, which listings turn
into one warning). The files are read through ``reading.py``: regular files
only, never through a symbolic link, up to a size limit, and parsed with
limits on nesting and YAML aliases. A run is the folder it is in: its id is
the folder's name, whatever summary.json says, and a folder that is a
symbolic link is damaged (it may lead out of the store).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import warnings

import yaml

from ..values import is_missing, is_number
from .annotations import annotated_summary
from .reading import MAX_SMALL_FILE, MAX_TABLE_FILE, refuse_large, open_regular, parse_yaml, read_bytes
from .run import CONFIG, CURVE_COLUMNS, METRICS, NOT_CURVES, DamagedRun

# Bump when the record layout or what makes a folder damaged changes, so that
# indexes built by an older nnexp are rebuilt instead of serving old records.
RECORD_VERSION = 4

# The summary fields a run listing shows (``nnexp runs``, resolving a run by
# name): the index keeps them apart, so that a listing parses only these.
BRIEF_FIELDS = ("name", "status", "pid", "host", "start_time", "started", "epochs_completed", "epochs_planned",
                "final_val_accuracy", "test_accuracy", "params", "train_seconds", "sweep", "tags", "note", "kind",
                "last_step")

SUMMARY_METRICS = ("test_accuracy", "test_loss", "train_seconds", "total_seconds")

# Config keys that say where files live or how the run is filed, not what was
# trained: leaving them out keeps comparisons about the experiment.
EXCLUDED_PARAMS = ("data.cache_dir", "data.local_dir", "data.mirrors", "data.csv_path", "data.test_csv_path")
EXCLUDED_SECTIONS = ("tracking",)


# ---------------------------------------------------------------- records --


def make_record(run_dir) -> dict:
    """Build the record of the run folder ``run_dir`` (a str or Path).

    Raises DamagedRun when the folder is a symbolic link, when summary.json is
    missing, unreadable or not a JSON object, when annotations.json,
    config.yaml or metrics.csv exists but cannot be read (see reading.py) or
    is not of the expected shape. A missing config.yaml gives empty params (plus the sweep's
    trial_params); a missing metrics.csv gives no curve metrics and epochs 0.
    """
    run_dir = os.fspath(run_dir)
    run_id = os.path.basename(os.path.normpath(run_dir))
    if os.path.islink(os.path.normpath(run_dir)):
        raise DamagedRun(f"run {run_id}: {link_problem(run_dir)}")
    summary = annotated_summary(run_dir, run_id)
    cfg = read_config(run_dir, run_id)
    layers = summary.get("layers")
    params = flatten_config(cfg, layers if isinstance(layers, str) else None) if cfg else {}
    trial_params = summary.get("trial_params")
    if isinstance(trial_params, dict):
        for key, value in trial_params.items():
            _add_param(params, str(key), value)
    metrics = column_metrics(*read_metric_columns(run_dir, run_id))
    for key in SUMMARY_METRICS:
        _add_metric(metrics, key, summary.get(key))
    _add_metric(metrics, "n_params", summary.get("params"))
    values = summary.get("values")  # what a script set in run.summary (nnexp.init)
    if isinstance(values, dict):
        for key, value in values.items():
            _add_metric(metrics, str(key), value)
    return {"id": run_id, "path": run_dir, "summary": summary, "params": params, "metrics": metrics}


def brief(summary: dict) -> dict:
    """The BRIEF_FIELDS of a summary (those it has)."""
    return {k: summary[k] for k in BRIEF_FIELDS if k in summary}


def listed(run_id: str, path, summary: dict) -> dict:
    """A run as listings print it (``nnexp runs --json``, the dashboard): the id and
    path of its folder, then its summary's fields. The folder says which run it
    is: an ``id`` or ``path`` that summary.json claims is not shown."""
    return {"id": run_id, "path": str(path), **{k: v for k, v in summary.items() if k not in ("id", "path")}}


def link_problem(run_dir) -> str:
    """Why a run folder that is a symbolic link is not read: it may lead anywhere."""
    try:
        target = os.readlink(os.path.normpath(os.fspath(run_dir)))
    except OSError:
        target = "?"
    return f"its folder is a symbolic link (to {target}), not a folder of the store"


def read_config(run_dir, run_id: str | None = None) -> dict | None:
    """A run's config.yaml as written (a mapping), None if it has none; DamagedRun
    if it cannot be read, does not parse (see reading.parse_yaml) or is not a mapping."""
    run_dir = os.fspath(run_dir)
    run_id = run_id or os.path.basename(os.path.normpath(run_dir))
    path = os.path.join(run_dir, CONFIG)
    try:
        cfg = parse_yaml(read_bytes(path, MAX_SMALL_FILE))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read {CONFIG} ({exc.strerror or exc})") from None
    except (yaml.YAMLError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DamagedRun(f"run {run_id}: invalid {CONFIG} ({first})") from None
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise DamagedRun(f"run {run_id}: {CONFIG} is a {type(cfg).__name__}, not a mapping")
    return cfg


# ----------------------------------------------------------------- params --


def flatten_config(cfg: dict, layers: str | None = None) -> dict:
    """A resolved config as {dotted key: scalar or None}.

    Nested mappings are joined with '.', ``model.layers`` becomes one string
    (``layers`` if given, else :func:`layers_text` of the list), any other
    list its compact JSON text, an empty mapping None. ``tracking.*`` and the
    file-location keys in EXCLUDED_PARAMS are left out.
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
    if layers is not None and isinstance(out.get("model.layers"), str):
        out["model.layers"] = layers
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


def layers_text(layers: list, defaults: dict | None = None) -> str:
    """``[{type: flatten}, {type: dense, units: 512}, ...]`` -> ``"flatten | dense(512) | ..."``.

    Each layer is its type followed by its numeric options, like a call with
    positional arguments (names such as the init are left out). ``defaults``
    ({layer type: [(option, default or None), ...]}, from the code that
    builds the layers) gives a type's options in order; trailing ones that
    equal their defaults are left out (``dropout(0.2)`` but plain ``dropout``
    for the default rate). A type it does not list shows every numeric
    option, in the layer's own order. Layers that are not mappings are
    written as they are.
    """
    if not isinstance(layers, (list, tuple)):
        raise ValueError(f"layers_text: expected a list of layer mappings, got {type(layers).__name__}")
    return " | ".join(_layer_text(layer, (defaults or {}).get(layer.get("type")) if isinstance(layer, dict)
                                  else None) for layer in layers)


def _layer_text(layer, spec) -> str:
    if not isinstance(layer, dict):
        return str(layer)
    kind = str(layer.get("type", "?"))
    if spec is None:
        values = [v for k, v in layer.items() if k != "type" and is_number(v)]
    else:
        values = [layer.get(key, default) for key, default in spec]
        while values and (values[-1] is None or _same(values[-1], spec[len(values) - 1][1])):
            values.pop()
        values = [v for v in values if v is not None]
    return f"{kind}({','.join(_number_text(v) for v in values)})" if values else kind


def _same(value, default) -> bool:
    return default is not None and is_number(value) and value == default


def _number_text(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- metrics --


def read_metric_rows(run_dir, run_id: str | None = None, columns=CURVE_COLUMNS) -> list[dict]:
    """metrics.csv as a list of {column: float} (NaN for empty cells), one per row.

    ``columns``: the columns to keep (those the file has), or None for all.
    A run appends its rows as it goes, so a reader may catch the last line
    half-written: a final line without its newline is ignored, and so is any
    row that does not parse (wrong field count, not a number). A missing file
    gives []; an unreadable one raises DamagedRun.
    """
    lines = _metric_lines(run_dir, run_id)
    if not lines:
        return []
    return _parse_rows([h.strip() for h in lines[0].split(",")], lines[1:], columns)


def read_metric_columns(run_dir, run_id: str | None = None) -> tuple[dict[str, list[float]], int]:
    """metrics.csv as ({column: values}, number of rows), read as read_metric_rows reads it."""
    lines = _metric_lines(run_dir, run_id)
    if not lines:
        return {}, 0
    names, cells, count = _parse_columns([h.strip() for h in lines[0].split(",")], lines[1:], None)
    return dict(zip(names, cells)), count


def _metric_lines(run_dir, run_id: str | None) -> list[str]:
    """The complete lines of metrics.csv ([] if it is missing); DamagedRun if it is unreadable."""
    run_dir = os.fspath(run_dir)
    run_id = run_id or os.path.basename(os.path.normpath(run_dir))
    path = os.path.join(run_dir, METRICS)
    try:
        text = read_bytes(path, MAX_TABLE_FILE).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DamagedRun(f"run {run_id}: cannot read {METRICS} ({exc.strerror or exc})") from None
    lines = text.split("\n")
    lines.pop()  # "" after a complete last line, or the half-written one
    return lines


def _parse_rows(header: list[str], lines, columns) -> list[dict]:
    names, cells, count = _parse_columns(header, lines, columns)
    return [dict(zip(names, values)) for values in zip(*cells)] if names else [{} for _ in range(count)]


def _parse_columns(header: list[str], lines, columns) -> tuple[list[str], list[list[float]], int]:
    """The wanted columns of ``lines`` (text rows without their newline) as lists of
    floats, NaN for empty cells, and the number of rows; a row with the wrong field
    count, or a wanted cell that is not a number, is left out. Column by column: a
    100,000-row file is read in a fraction of the time a row-by-row parse takes."""
    width = len(header)
    wanted = [i for i, h in enumerate(header) if columns is None or h in columns]
    names = [header[i] for i in wanted]
    plain = _plain_columns(lines, width)
    if plain is not None:
        return names, [plain[i] for i in wanted], len(lines)
    split = [fields for fields in (line.rstrip("\r").split(",") for line in lines) if len(fields) == width]
    by_column = list(zip(*split)) if split else [() for _ in header]
    try:
        return names, [_floats(by_column[i]) for i in wanted], len(split)
    except ValueError:  # a cell that is not a number: leave its row out
        good = [fields for fields in split if _numbers(fields, wanted)]
        return _parse_columns(header, [",".join(f) for f in good], columns)


# From this many rows on, NumPy's one-call parse pays for its import.
NUMPY_ROWS = 10_000


def _plain_columns(lines, width: int) -> list[list[float]] | None:
    """The columns of ``lines`` parsed by NumPy in one call (exactly as float() parses
    them), or None unless every line has ``width`` cells and every cell is a number."""
    if len(lines) < NUMPY_ROWS or set(map(str.count, lines, itertools.repeat(",", len(lines)))) != {width - 1}:
        return None
    import numpy as np  # only for long files: listings of ordinary runs start without NumPy
    body = ",".join(lines).replace("\r", "")
    if ",," in body or body.startswith(",") or body.endswith(","):  # an empty cell
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # NumPy < 2.3 warns instead of raising
            values = np.fromstring(body, sep=",")
    except ValueError:  # a cell that is not a number
        return None
    if values.size != width * len(lines):
        return None
    return values.reshape(len(lines), width).T.tolist()


def _floats(cells) -> list[float]:
    """Cell texts as floats, NaN for empty cells (ValueError for any other text)."""
    try:
        return list(map(float, cells))  # a column without empty cells, the usual one: at C speed
    except ValueError:
        return [float(c) if c else math.nan for c in cells]


def _numbers(fields: list[str], wanted: list[int]) -> bool:
    try:
        for i in wanted:
            if fields[i]:
                float(fields[i])
    except ValueError:
        return False
    return True


class MetricRowsCache:
    """read_metric_rows (all columns) for a reader that asks again and again while
    runs grow (the dashboard's run page, once a second): a file that only grew
    since the last answer is read from where that answer stopped, so a poll of a
    100,000-row run costs its new rows, not 100,000. A file replaced since (a new
    column, a resumed run) is read whole. Keeps the last ``size`` runs asked for."""

    def __init__(self, size: int = 16):
        self.size = size
        self._cache: dict[str, tuple] = {}  # path -> (inode, offset read to, header, rows)
        self._lock = threading.Lock()

    def rows(self, run_dir, run_id: str | None = None) -> list[dict]:
        run_dir = os.fspath(run_dir)
        run_id = run_id or os.path.basename(os.path.normpath(run_dir))
        path = os.path.join(run_dir, METRICS)
        try:
            with os.fdopen(open_regular(path), "rb") as f:  # never a pipe or a device
                info = os.fstat(f.fileno())
                refuse_large(path, info.st_size, MAX_TABLE_FILE)
                with self._lock:
                    known = self._cache.pop(path, None)
                if known is not None and known[0] == info.st_ino:
                    _, offset, header, rows = known
                    f.seek(offset)
                else:
                    offset, header, rows = 0, None, []
                data = f.read(MAX_TABLE_FILE - offset)
                ino = info.st_ino
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DamagedRun(f"run {run_id}: cannot read {METRICS} ({exc.strerror or exc})") from None
        end = data.rfind(b"\n") + 1  # complete lines only: the rest may be half-written
        lines = data[:end].decode("utf-8", errors="replace").split("\n")[:-1]
        if header is None and lines:
            header, lines = [h.strip() for h in lines[0].split(",")], lines[1:]
        rows = rows + _parse_rows(header, lines, None) if lines else list(rows)
        with self._lock:
            self._cache[path] = (ino, offset + end, header, rows)
            while len(self._cache) > self.size:
                self._cache.pop(next(iter(self._cache)))
        return list(rows)


def curve_metrics(rows: list[dict]) -> dict:
    """Per-column final/best/mean values of the metrics rows (dicts), plus ``epochs``;
    see :func:`column_metrics`."""
    columns = {c: [row.get(c, math.nan) for row in rows] for c in (rows[0] if rows else ())}
    return column_metrics(columns, len(rows))


def column_metrics(columns: dict[str, list[float]], count: int) -> dict:
    """Per-column final/best/mean values of metrics.csv's columns, plus ``epochs`` (the rows).

    For each column c but the axes, the learning rate and the seconds
    (NOT_CURVES): ``c`` and ``final_c`` (its last value), ``best_c`` (min for
    a name that :func:`lower_is_better`, else max) and ``mean_c``. NaN cells
    are skipped; a column with no value gets no keys. The columns are the
    file's (a script logs what it likes).
    """
    metrics = {"epochs": float(count)}
    for col, cells in columns.items():
        if col in NOT_CURVES:
            continue
        values = [v for v in cells if v == v]  # NaN is the only value unequal to itself
        if not values:
            continue
        metrics[col] = metrics[f"final_{col}"] = values[-1]
        metrics[f"best_{col}"] = min(values) if lower_is_better(col) else max(values)
        metrics[f"mean_{col}"] = _mean(values)
    return metrics


def _mean(values: list[float]) -> float:
    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # finite values whose sum is past the largest float: divide first
        return math.fsum(v / len(values) for v in values)


def lower_is_better(name: str) -> bool:
    """Whether a metric's best value is its lowest: losses, errors and times."""
    return any(word in name for word in ("loss", "error", "seconds"))


def _add_metric(metrics: dict, key: str, value) -> None:
    if is_number(value) and not is_missing(value):
        metrics[key] = float(value)
