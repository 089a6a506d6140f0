"""Training a run again from what its folder records, and comparing the two bit for bit.

:func:`reproduce` retrains a completed run through :func:`nnexp.train.train`,
the entry point of ``nnexp run``, from the run's own config.yaml (seeds,
engine, data and its split included) in a store of its own, with the
recorded BLAS thread count; then compares every array of model.npz, every
metrics.csv column but the seconds, diagnostics.csv and the test and final
metrics of summary.json, and lists the environment each run recorded
(ENVIRONMENT) where the two differ.

What the folder does not record cannot be retrained: a script's own runs
(``nnexp.init``), ensembles, runs that did not complete (pruned by a sweep,
failed, still running) and resumed runs, whose epochs were trained by more
than one process of which the folder records the last only. Those are
refused with the reason (:class:`CannotReproduce`, exit 2).
"""

from __future__ import annotations

import contextlib
import csv
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import load_config
from .ensemble import KIND as ENSEMBLE
from .errors import NnexpError
from .layer_code import check_unchanged
from .tracking import RunStore
from .tracking.api import KIND as SCRIPT
from .tracking.reading import MAX_TABLE_FILE, read_bytes
from .tracking.records import read_metric_columns
from .tracking.run import COMPLETED, DIAGNOSTICS, MODEL, PRUNED, read_summary
from .train import train

#: metrics.csv columns not compared: how long an epoch took is never the same
NOT_COMPARED = ("seconds",)
#: summary.json's results compared
RESULTS = ("epochs_completed", "best_epoch", "best_val_value", "final_train_loss", "final_train_accuracy",
           "final_val_loss", "final_val_accuracy", "test_loss", "test_accuracy")


class CannotReproduce(NnexpError):
    """The run's folder does not record enough to train it again (exit code 2)."""

    exit_code = 2


def _changes(summary: dict):
    if "code_changes" not in summary:
        return None
    changes = summary["code_changes"]
    if not changes:
        return "none"
    if not isinstance(changes, dict):
        return str(changes)
    files = len(changes.get("changed") or ()) + len(changes.get("untracked") or ())
    return f"patch sha256 {str(changes.get('patch_sha256'))[:12]} ({files} file{'s' * (files != 1)})"


def _blas(key):
    def get(summary: dict):
        blas = summary.get("blas")
        return blas.get(key) if isinstance(blas, dict) else None
    return get


def _version(key):
    def get(summary: dict):
        versions = summary.get("versions")
        return versions.get(key) if isinstance(versions, dict) else None
    return get


def _field(key):
    return lambda summary: summary.get(key)


#: (what it is, how to read it from a summary): the environment a run records
ENVIRONMENT = (
    ("nnexp version", _version("nnexp")),
    ("nnexp commit", _field("git_commit")),
    ("uncommitted changes", _changes),
    ("Python", _version("python")),
    ("NumPy", _version("numpy")),
    ("BLAS", lambda s: " ".join(str(v) for v in (_blas("library")(s), _blas("version")(s)) if v) or None),
    ("BLAS kernel family", _blas("architecture")),
    ("BLAS threads", _blas("threads")),
    ("CPU", _field("cpu")),
    ("CPU cores", _field("cpu_count")),
    ("device", lambda s: " ".join(str(v) for v in (s.get("device"), s.get("gpu")) if v) or None),
    ("platform", _field("platform")),
    ("dataset digest", _field("dataset_sha256")),
)
NOT_RECORDED = "not recorded"


@dataclass
class Comparison:
    """One thing compared: ``what`` (``model.npz 0.W``, ``metrics.csv val_loss``, ...),
    whether it is identical, and the largest absolute difference (or why there is none)."""

    what: str
    identical: bool
    max_abs_diff: float | None = None
    note: str | None = None


@dataclass
class Reproduction:
    run_id: str
    reproduction: str | None   # the reproduction's folder, None once removed
    comparisons: list[Comparison]
    environment: list[dict]    # {"what", "recorded", "now", "differs"} per ENVIRONMENT line
    blas_threads_set: int | None = None
    not_compared: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(c.identical for c in self.comparisons)

    def as_json(self) -> dict:
        return {"run": self.run_id, "identical": self.identical, "reproduction": self.reproduction,
                "blas_threads_set": self.blas_threads_set, "not_compared": self.not_compared,
                "compared": [c.__dict__ for c in self.comparisons], "environment": self.environment}


def check_reproducible(info) -> None:
    """CannotReproduce naming why the folder of ``info`` (a RunInfo) cannot be trained again."""
    s, run_id = info.summary, info.id
    if s.get("kind") == SCRIPT:
        raise CannotReproduce(f"run {run_id} was made by a script of its own (nnexp.init): its folder has the "
                              "script's settings, not the script; run the script again instead")
    if s.get("kind") == ENSEMBLE:
        raise CannotReproduce(f"run {run_id} is an ensemble of other runs: there is nothing to train; "
                              "reproduce its members")
    status = s.get("status")
    if status == PRUNED:
        raise CannotReproduce(f"run {run_id} was pruned by its sweep after epoch {s.get('epochs_completed')} "
                              f"({s.get('reason')}): retrained alone it would not stop there")
    if status != COMPLETED:
        raise CannotReproduce(f"run {run_id} is {status}, not completed: there is no finished result to compare "
                              "(resume it first)")
    if s.get("resumes"):
        raise CannotReproduce(f"run {run_id} was resumed ({s['resumes']} time{'s' * (s['resumes'] != 1)}): its "
                              "epochs were trained by more than one process and its folder records the "
                              "environment of the last one only")
    for needed in ("config.yaml", MODEL):
        if not (info.path / needed).is_file():
            raise CannotReproduce(f"run {run_id} has no {needed}")


def reproduce(store, run_ref: str, log=print, progress: bool = False, keep: bool = False,
              where=None) -> Reproduction:
    """Train run ``run_ref`` of ``store`` again and compare; the user's store is only read.

    The reproduction goes into a new store under ``where`` (default: the system's
    temporary folder), removed afterwards unless ``keep``.
    """
    info = RunStore(store).resolve(run_ref)
    check_reproducible(info)
    check_unchanged(info.path, info.id)   # a layer file of the user's: the same bytes, or exit 2
    scratch = Path(tempfile.mkdtemp(prefix="nnexp-reproduce-", dir=where))
    try:
        cfg = load_config(info.path / "config.yaml", [f"tracking.store={scratch}", "tracking.plots=false"])
        threads = _blas_threads(info.summary)
        with _blas_limit(threads):
            again = train(cfg, log=log, progress=progress)
        new_summary = read_summary(again.path)
        comparisons = compare_runs(info.path, again.path, info.summary, new_summary)
        environment = [{"what": what, "recorded": _shown(get(info.summary)), "now": _shown(get(new_summary)),
                        "differs": _shown(get(info.summary)) != _shown(get(new_summary))}
                       for what, get in ENVIRONMENT]
        return Reproduction(info.id, str(again.path) if keep else None, comparisons, environment,
                            blas_threads_set=threads, not_compared=[f"metrics.csv {c}" for c in NOT_COMPARED])
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _blas_threads(summary: dict) -> int | None:
    """The BLAS thread count to train with: the recorded one, if any."""
    threads = _blas("threads")(summary)
    return threads if isinstance(threads, int) and threads > 0 else None


@contextlib.contextmanager
def _blas_limit(threads: int | None):
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits  # only for a retraining: it reads the loaded libraries

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _shown(value) -> str:
    return NOT_RECORDED if value is None else str(value)


# ------------------------------------------------------------ comparing --


def compare_runs(old_dir, new_dir, old_summary: dict, new_summary: dict) -> list[Comparison]:
    """model.npz array by array, metrics.csv column by column, diagnostics.csv and RESULTS."""
    out = _compare_models(Path(old_dir) / MODEL, Path(new_dir) / MODEL)
    old_cols, _ = read_metric_columns(old_dir)
    new_cols, _ = read_metric_columns(new_dir)
    for column in list(old_cols) + [c for c in new_cols if c not in old_cols]:
        if column not in NOT_COMPARED:
            out.append(_compare_values(f"metrics.csv {column}", old_cols.get(column), new_cols.get(column)))
    old_diag, new_diag = _diagnostics(Path(old_dir)), _diagnostics(Path(new_dir))
    if old_diag is not None or new_diag is not None:
        out.append(_compare_keyed(DIAGNOSTICS, old_diag, new_diag))
    for key in RESULTS:
        if key in old_summary or key in new_summary:
            old, new = old_summary.get(key), new_summary.get(key)
            out.append(_compare_values(f"summary {key}", None if old is None else [old],
                                       None if new is None else [new]))
    return out


def _compare_models(old_path: Path, new_path: Path) -> list[Comparison]:
    with np.load(old_path, allow_pickle=False) as old, np.load(new_path, allow_pickle=False) as new:
        names = list(old.files) + [n for n in new.files if n not in old.files]
        return [_compare_arrays(f"{MODEL} {name}", old[name] if name in old.files else None,
                                new[name] if name in new.files else None) for name in names]


def _compare_values(what: str, old, new) -> Comparison:
    as_array = (lambda v: None if v is None else np.asarray(v, dtype=np.float64))
    return _compare_arrays(what, as_array(old), as_array(new))


def _compare_arrays(what: str, old, new) -> Comparison:
    if old is None or new is None:
        return Comparison(what, False, note="only in the " + ("reproduction" if old is None else "recorded run"))
    if old.shape != new.shape or old.dtype != new.dtype:
        return Comparison(what, False, note=f"{old.dtype}{list(old.shape)} vs {new.dtype}{list(new.shape)}")
    if np.ascontiguousarray(old).tobytes() == np.ascontiguousarray(new).tobytes():
        return Comparison(what, True, 0.0)
    if not np.issubdtype(old.dtype, np.number):
        return Comparison(what, False, note="differs")
    a, b = old.astype(np.float64), new.astype(np.float64)
    if (np.isnan(a) != np.isnan(b)).any():
        return Comparison(what, False, note="NaN in one where the other has a number")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff = np.where(np.isnan(a) | (a == b), 0.0, diff)   # NaN in both, or the same infinity, is no difference
    return Comparison(what, False, float(diff.max()) if diff.size else 0.0)


def _diagnostics(run_dir: Path) -> dict | None:
    """diagnostics.csv as {(epoch, layer, name, stat): value}, None without one."""
    try:
        text = read_bytes(run_dir / DIAGNOSTICS, MAX_TABLE_FILE).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    rows = list(csv.reader(text.splitlines()))[1:]
    return {tuple(row[:4]): float(row[4]) if row[4] else math.nan for row in rows if len(row) == 5}


def _compare_keyed(what: str, old: dict | None, new: dict | None) -> Comparison:
    if old is None or new is None:
        return Comparison(what, False, note="only in the " + ("reproduction" if old is None else "recorded run"))
    if old.keys() != new.keys():
        return Comparison(what, False, note=f"{len(old)} rows vs {len(new)}, not the same layers and epochs")
    keys = list(old)
    return _compare_values(what, [old[k] for k in keys], [new[k] for k in keys])
