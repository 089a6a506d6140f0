"""Ensembles: several trained runs voting with their probabilities.

``nnexp ensemble A B C`` loads each run's model, computes its softmax
probabilities on the test set, and averages them (the arithmetic mean of the
probability vectors, one per image); the ensemble predicts the class with the
largest mean probability. The result is recorded as a run folder of its own::

    summary.json      kind "ensemble", members (run ids), member_test_accuracy,
                      test_accuracy, test_loss, params (the members' sum), ...
    config.yaml       {ensemble: {members: [...], combine: mean_probabilities},
                       model: {layers: "mean of 3 x (...)"}, data: {dataset: ...}}
    predictions.npz   probabilities (N, C) float32, labels (N,), members
    plots/confusion_matrix.png

so it is listed by ``nnexp runs`` and can be put next to its members by
``nnexp compare``. The run has no model.npz: ``nnexp/trained.py`` rebuilds an
:class:`EnsembleModel` from the members' weights, which is what lets
``nnexp evaluate`` and ``nnexp predict`` work on an ensemble run unchanged.

An ensemble of ensembles is refused: averaging two averages weights the
members unequally (a member of a 2-run ensemble would count for more than one
of a 3-run ensemble), so the message asks for the member runs instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .compare.select import RunQuery, select_runs
from .config import describe_layers, dump_yaml
from .errors import ConfigError, NnexpError
from .nn.losses import softmax
from .tracking import Run, RunInfo, RunStore
from .tracking.provenance import provenance
from .tracking.run import COMPLETED, INTERRUPTED, PREDICTIONS
from .train import load_data
from .values import is_number

KIND = "ensemble"
COMBINE = "mean_probabilities"  # recorded in config.yaml: how the members' outputs are combined
EPS = 1e-12  # probabilities are clipped to [EPS, 1] before the log: one sure mistake must not make the loss inf


# ------------------------------------------------------------------ math --


def ensemble_probabilities(member_probs) -> np.ndarray:
    """The arithmetic mean of the members' (N, C) probability arrays, in float64.

    Each row of the result sums to 1 when the members' rows do.
    """
    arrays = [np.asarray(p, dtype=np.float64) for p in member_probs]
    if not arrays:
        raise ValueError("ensemble_probabilities: no member probabilities")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1 or arrays[0].ndim != 2:
        raise ValueError(f"ensemble_probabilities: members need (N, C) arrays of one shape, got {sorted(shapes)}")
    return np.mean(arrays, axis=0)


def accuracy(probs, labels) -> float:
    """Fraction of rows whose most probable class is the label."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else float("nan")


def log_loss(probs, labels, eps: float = EPS) -> float:
    """Mean cross-entropy -log p(true class), with p clipped to [eps, 1]."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if not len(labels):
        return float("nan")
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


class EnsembleModel:
    """Trained models acting as one, for evaluation and prediction only.

    ``forward`` returns the log of the averaged probabilities: as softmax(log p)
    = p / sum(p) = p, code that applies a softmax to a model's output (the
    test-set evaluation, the loss) sees exactly the ensemble's probabilities.
    """

    def __init__(self, models: list) -> None:
        self.models = list(models)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            raise NnexpError("an ensemble is not trained as a whole; train its member runs")
        probs = ensemble_probabilities([softmax(m.forward(x, training=False)) for m in self.models])
        return np.log(np.clip(probs, EPS, 1.0))

    def logits(self, x: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """forward's output batch by batch, as Sequential.logits (each member's batches
        computed as that member computes them)."""
        per_member = [m.logits(x, batch_size) for m in self.models]
        return [np.log(np.clip(ensemble_probabilities([softmax(z) for z in batch]), EPS, 1.0))
                for batch in zip(*per_member)]

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Averaged class probabilities (N, C) float32, as Sequential.predict_proba."""
        return ensemble_probabilities([m.predict_proba(x, batch_size) for m in self.models]).astype(np.float32)

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def parameters(self) -> list:
        return [(f"member{i}.{name}", p, g) for i, m in enumerate(self.models) for name, p, g in m.parameters()]

    def num_parameters(self) -> int:
        return sum(m.num_parameters() for m in self.models)


# ------------------------------------------------------------- members --


def resolve_members(store: RunStore, refs) -> list[RunInfo]:
    """The runs ``refs`` name (ids, prefixes, names, 'latest'), checked for an ensemble:
    at least two, none twice, none an ensemble itself."""
    refs = list(refs)
    if len(refs) < 2:
        raise ConfigError(f"an ensemble needs at least 2 runs, got {len(refs)}: {' '.join(refs) or '(none)'}")
    infos, seen = [], {}
    for ref in refs:
        info = store.resolve(ref)
        if info.id in seen:
            same = f" ({seen[info.id]!r} and {ref!r})" if seen[info.id] != ref else ""
            raise ConfigError(f"run {info.id} is listed twice{same}; an ensemble's members must differ")
        if info.summary.get("kind") == KIND:
            members = " ".join(info.summary.get("members") or [])
            raise NnexpError(f"run {info.id} is itself an ensemble; list its members instead: {members}")
        seen[info.id] = ref
        infos.append(info)
    return infos


def sweep_members(store: RunStore, sweep_ref: str) -> list[str]:
    """Ids of a sweep's completed runs, in trial order (a trial re-run after a
    failure counts once: only its completed run is taken)."""
    chosen = select_runs(store.root, RunQuery(sweeps=(sweep_ref,)))
    runs, sweep = chosen.records, chosen.sweep
    done = [r for r in runs if r["summary"].get("status") == COMPLETED]
    if not done:
        raise NnexpError(f"sweep {sweep['id']} has no completed run yet ({len(runs)} runs in all); "
                         f"run or resume it first")
    return [r["id"] for r in sorted(done, key=lambda r: r["summary"].get("trial", 0))]


def dataset_key(cfg: dict) -> dict:
    """What decides a config's test set: the dataset, and for Kaggle CSVs the
    files and the carved split (MNIST's test files are pinned by checksum)."""
    d = cfg["data"]
    key = {"dataset": d["dataset"]}
    if d["dataset"] == "kaggle-csv":
        key.update(csv_path=d["csv_path"], test_csv_path=d["test_csv_path"], test_size=d["test_size"],
                   split_seed=d["split_seed"])
    return key


def check_same_test_set(infos: list[RunInfo], cfgs: list[dict]) -> None:
    """Refuse members trained on different datasets: their outputs cannot be averaged image by image."""
    first = dataset_key(cfgs[0])
    for info, cfg in zip(infos[1:], cfgs[1:]):
        key = dataset_key(cfg)
        if key != first:
            raise NnexpError(f"runs {infos[0].id} and {info.id} use different test sets ({_describe(first)} vs "
                             f"{_describe(key)}); an ensemble's members must share one dataset")
        classes = info.summary.get("classes")
        if classes and infos[0].summary.get("classes") and classes != infos[0].summary["classes"]:
            raise NnexpError(f"runs {infos[0].id} and {info.id} have different classes")


def _describe(key: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in key.items())


# ------------------------------------------------------------- the run --


def ensemble_config(members: list[str], cfgs: list[dict]) -> str:
    """The ensemble run's config.yaml: its members, how they are combined, the dataset.

    ``model.layers`` describes the ensemble as the members' layers, e.g.
    ``mean of 3 x (flatten | dense(64) | relu | dense(10))``. Comparisons show
    only the parameters that differ between runs; without a key the members
    also have, an ensemble put next to its members would look like one more
    seed of them and be averaged into their row.
    """
    texts = [describe_layers(cfg["model"]["layers"]) for cfg in cfgs]
    if len(set(texts)) == 1:
        layers = f"mean of {len(texts)} x ({texts[0]})"
    else:
        layers = "mean of " + " + ".join(f"({t})" for t in texts)
    return dump_yaml({KIND: {"members": members, "combine": COMBINE}, "model": {"layers": layers},
                      "data": dataset_key(cfgs[0])})


@dataclass
class EnsembleResult:
    """The test-set outcome of an ensemble, before it is recorded."""

    members: list[str]  # run ids
    member_accuracy: dict[str, float]
    probs: np.ndarray  # (N, C) averaged probabilities
    labels: np.ndarray  # (N,)
    accuracy: float
    loss: float


def evaluate_members(infos: list[RunInfo], models: list, x: np.ndarray, y: np.ndarray,
                     batch_size: int) -> EnsembleResult:
    """Each member's probabilities and accuracy on (x, y), and the ensemble's."""
    member_probs = [model.predict_proba(x, batch_size) for model in models]
    probs = ensemble_probabilities(member_probs)
    return EnsembleResult(
        members=[i.id for i in infos],
        member_accuracy={i.id: accuracy(p, y) for i, p in zip(infos, member_probs)},
        probs=probs, labels=y, accuracy=accuracy(probs, y), loss=log_loss(probs, y),
    )


def build_ensemble(store: RunStore, members: list[tuple], name: str = "ensemble", log=print, plots: bool = True) -> Run:
    """Evaluate the ensemble of ``members`` ((info, cfg, model) triples, as
    resolve_members and ``nnexp.trained.load_trained`` give them) on the test
    set and record it as a new run of ``store``. Nothing is written on a user error."""
    t_start, start_time = time.perf_counter(), time.time()
    infos, cfgs, models = (list(t) for t in zip(*members))
    check_same_test_set(infos, cfgs)
    data = load_data(cfgs[0], log=log)
    t_data = time.perf_counter() - t_start
    for info in infos:
        size = info.summary.get("test_size")
        if isinstance(size, int) and size != len(data.x_test):
            raise NnexpError(f"run {info.id} was tested on {size:,} images, but its dataset now has "
                             f"{len(data.x_test):,}; the members' test sets differ")
    t0 = time.perf_counter()
    result = evaluate_members(infos, models, data.x_test, data.y_test, cfgs[0]["train"]["eval_batch_size"])
    test_seconds = time.perf_counter() - t0

    run = store.create(name)
    train_seconds = [i.summary.get("train_seconds") for i in infos]
    run.start(
        name, started_at=start_time, kind=KIND, members=result.members,
        dataset=cfgs[0]["data"]["dataset"], classes=list(data.classes), seed=None, tags=[KIND],
        # What the ensemble costs: all its members' weights, and their training time.
        params=sum(m.num_parameters() for m in models),
        train_size=None, val_size=None, test_size=len(data.x_test), **provenance(),
    )
    try:
        run.write_config(ensemble_config(result.members, cfgs))
        np.savez_compressed(run.predictions_path, probabilities=result.probs.astype(np.float32),
                            labels=result.labels, members=np.array(result.members))
        run.notify_file(PREDICTIONS)
        if plots:
            _plot(run, result, data.classes)
        run.finish(
            COMPLETED,
            member_test_accuracy=result.member_accuracy, test_accuracy=result.accuracy, test_loss=result.loss,
            data_seconds=t_data, test_seconds=test_seconds,
            train_seconds=sum(train_seconds) if all(is_number(s) for s in train_seconds) else None,
            total_seconds=time.perf_counter() - t_start,
        )
    except KeyboardInterrupt:
        run.finish(INTERRUPTED, "interrupted by the user (Ctrl-C)")
        raise
    except BaseException as exc:  # a readable folder that says what happened, as a training run's
        run.record_crash(exc)
        raise
    return run


def _plot(run: Run, result: EnsembleResult, classes) -> None:
    from .tracking.plots import plot_confusion_matrix  # matplotlib (heavy): only when plotting

    run.plots_dir.mkdir(exist_ok=True)
    plot_confusion_matrix(result.labels, result.probs.argmax(1), classes, run.plots_dir / "confusion_matrix.png",
                          title=f"Ensemble of {len(result.members)} runs: test set confusion matrix")
