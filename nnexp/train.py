"""The training loop: from a resolved config to a finished run folder.

Read top to bottom, in the spirit of nanoGPT's train.py: :func:`train` loads
the data and builds the model and what trains it (a :class:`Setup`, made
once); :func:`fit` then maps the training state (``TrainState``, see
nnexp/checkpoint.py) to the next, one epoch at a time (:func:`next_epoch`:
shuffle, step through mini-batches (forward, loss, backward, optimizer step),
evaluate on the validation set, log a row), and saves each as the checkpoint.
The test set is touched once, at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from . import checkpoint, devices
from .augment import Augmenter
from .checkpoint import Ending, TrainState
from .config import DATASET_KEYS, describe_layers, dump_yaml
from .data import load_dataset
from .diagnostics import Diagnostics
from .early_stopping import EarlyStopping, Patience
from .ema import WeightEMA
from .engines import ENGINES, load_optimizer_state, optimizer_state
from .errors import NnexpError
from .feature_maps import feature_maps, first_conv_weights
from .layer_code import save_copies
from .nn import SoftmaxCrossEntropy, make_schedule, save_weights
from .nn.arrays import to_numpy
from .tracking import Run, RunStore
from .tracking.api import Run as TrackedRun
from .tracking.provenance import provenance
from .tracking.run import CHECKPOINT, DIAGNOSTIC_COLUMNS, FAILED, METRIC_COLUMNS, MODEL


class Diverged(NnexpError):
    """The loss became NaN or infinite."""


def make_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams, so that changing the model never changes the data order."""
    init, shuffle, augment = np.random.SeedSequence(seed).spawn(3)
    return {"init": np.random.default_rng(init), "shuffle": np.random.default_rng(shuffle),
            "augment": np.random.default_rng(augment)}


def load_data(cfg: dict, log=print):
    """The dataset the data section's DATASET_KEYS describe."""
    d = cfg["data"]
    data = load_dataset(d["dataset"], **{k: d[k] for k in DATASET_KEYS if k not in ("dataset", "train_subset")},
                        log=log)
    if d["train_subset"] is not None:
        data.x_train = data.x_train[: d["train_subset"]]
        data.y_train = data.y_train[: d["train_subset"]]
    return data


def build(cfg: dict, input_shape, rngs, xp=np):
    """The model, the loss and the optimizer a config describes, made by its
    engine (``model.engine``: the reference network or the fast one), with the
    model's arrays in array module ``xp`` (CuPy: on the GPU)."""
    engine = ENGINES[cfg["model"]["engine"]]
    # Dropout draws from the same generator after initialisation has finished
    # with it, so adding dropout never changes the initial weights.
    model = engine.build_model(cfg["model"]["layers"], input_shape, rngs["init"], np.dtype(cfg["model"]["dtype"]),
                               cfg["model"]["deskew"])
    if xp is not np:
        model.to_device(xp)   # the initial weights are drawn on the host: the same on every device
    if cfg["train"]["data_parallel"] > 1:
        model.share_memory()   # the workers read the weights the optimizer writes (nnexp/nn/fast/data_parallel.py)
    opt_cfg = dict(cfg["optimizer"])
    opt_cls = engine.optimizers[opt_cfg.pop("name")]
    opt_cfg.pop("lr")
    optimizer = opt_cls(model.parameters(), **opt_cfg)
    loss_fn = SoftmaxCrossEntropy(label_smoothing=cfg["train"]["label_smoothing"])
    return model, loss_fn, optimizer


def evaluate(model, x, y, batch_size: int = 2000) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy (no label smoothing), accuracy and class probabilities."""
    if len(x) == 0:
        return float("nan"), float("nan"), np.empty((0, 0), np.float32)
    xp = getattr(model, "xp", np)   # the model's array module: inputs go to its device
    loss_fn, x = SoftmaxCrossEntropy(), xp.asarray(x).astype(model_dtype(model), copy=False)
    total_loss, probs = 0.0, []
    for start, batch_logits in zip(range(0, len(x), batch_size), model.logits(x, batch_size)):
        yb = y[start:start + batch_size]
        total_loss += loss_fn.forward(batch_logits, yb) * len(yb)
        probs.append(to_numpy(loss_fn.probs))
    probs, y = np.concatenate(probs), to_numpy(y)
    return total_loss / len(x), float(np.mean(probs.argmax(1) == y)), probs


def model_dtype(model) -> np.dtype:
    for _, p, _ in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


@dataclass(frozen=True)
class Setup:
    """What training works with and never replaces, made once per process: the
    config, the data, the network with what trains it, the run it is recorded
    in and those who asked to hear about each epoch."""

    cfg: dict
    data: object  # the Dataset (nnexp/data/dataset.py): the test set and the classes
    train_set: tuple  # (x, y) of the training set, on the model's device
    val_set: tuple  # (x, y) of the validation set, on the model's device
    model: object
    optimizer: object
    steps: object  # the engine's: computes each batch's loss and gradients (nnexp/engines.py)
    schedule: object  # step -> learning rate
    rngs: dict
    augment: Augmenter | None
    ema: WeightEMA | None
    diagnostics: Diagnostics | None
    stopping: EarlyStopping
    run: TrackedRun
    log: object
    progress: bool
    on_epoch: object  # on_epoch(epoch, row) -> a reason to stop (prune), or None; or None
    started: float  # perf_counter() when train() began
    data_seconds: float


def train(cfg: dict, log=print, progress: bool = True, *, run: Run | None = None, data=None,
          extra_summary: dict | None = None, on_epoch=None, resume: bool = False) -> Run:
    """Train the network a resolved config describes and record the run.

    The keywords are for sweeps and resuming: ``run`` is the run folder to
    fill (a new one is created otherwise), ``data`` a dataset already loaded
    for this config, ``extra_summary`` fields to record (sweep id, trial,
    values), and ``on_epoch(epoch, row)`` is asked after every epoch; a
    non-empty answer is the reason to stop early, and the run ends as
    ``pruned``. ``resume`` continues ``run`` (opened with ``Run.open``) from
    its checkpoint, or from the start if it has none.
    """
    started = time.perf_counter()
    xp = devices.array_module(cfg["train"]["device"])   # before anything is written: CuPy and a GPU, or exit 2
    saved = _checkpoint_to_resume(run, cfg) if resume else None
    data = data if data is not None else load_data(cfg, log=log)
    data_seconds = time.perf_counter() - started
    rngs = make_rngs(cfg["train"]["seed"])
    model, loss_fn, optimizer = build(cfg, data.x_train.shape[1:], rngs, xp)
    ema = WeightEMA(model, cfg["train"]["ema"]) if cfg["train"]["ema"] else None
    if saved is not None:
        _restore(saved, model, optimizer, rngs, ema)  # before the run is touched: a bad checkpoint changes nothing
    run = run or RunStore(cfg["tracking"]["store"]).create(cfg["tracking"]["name"] or "run")
    resumed_from = (saved.epoch if saved else 0) if resume else None
    tracked = _record_start(cfg, run, data, model, resumed_from,
                            {**provenance(), **devices.facts(xp), **(extra_summary or {})})
    log(f"run {run.id}: {model.num_parameters():,} parameters, {len(data.x_train):,} training images"
        + (f"; resuming after epoch {saved.epoch}" if saved else "; no checkpoint, from epoch 1" if resume else ""))
    t = cfg["train"]
    steps = ENGINES[cfg["model"]["engine"]].steps(model, loss_fn, t["data_parallel"], seed=t["seed"])
    try:
        setup = Setup(
            cfg, data, train_set=_on_device(model, data.x_train, data.y_train),
            val_set=_on_device(model, data.x_val, data.y_val), model=model, optimizer=optimizer, steps=steps,
            schedule=_schedule(cfg, len(data.x_train)), rngs=rngs, augment=_augmenter(cfg), ema=ema,
            diagnostics=Diagnostics(model, data.x_train) if t["diagnostics"] else None,
            stopping=EarlyStopping.from_config(t["early_stopping"]), run=tracked, log=log, progress=progress,
            on_epoch=on_epoch, started=started, data_seconds=data_seconds)
        _finish(setup, fit(setup, saved or TrainState(config_digest=checkpoint.config_digest(cfg))))
    except Diverged as exc:
        tracked.end(FAILED, str(exc))
        raise
    except BaseException as exc:  # Ctrl-C: interrupted; anything else: failed, with the traceback
        tracked.fail(exc)
        raise
    finally:
        steps.close()
    return run


def fit(s: Setup, state: TrainState) -> TrainState:
    """Epoch after epoch until the last planned one, early stopping or pruning; a
    checkpoint after each."""
    s.run.rewind(state.rows)  # a resumed run drops rows logged after its checkpoint
    s.run.folder.truncate_diagnostics(state.epoch)
    while state.epoch < s.cfg["train"]["epochs"] and state.stop is None:
        state = next_epoch(s, state)
        t_ckpt = time.perf_counter()
        checkpoint.save(s.run.path, state)
        s.run.folder.notify_file(CHECKPOINT)
        state = replace(state, checkpoint_seconds=state.checkpoint_seconds + time.perf_counter() - t_ckpt)
    return state


def next_epoch(s: Setup, state: TrainState) -> TrainState:
    """Epoch ``state.epoch + 1``: train, validate, record; the state after it."""
    epoch, epochs, t0 = state.epoch + 1, s.cfg["train"]["epochs"], time.perf_counter()
    lr = s.schedule(state.step)
    train_loss, train_acc, step = train_one_epoch(s, epoch, state.step)
    stopper, best, has_val = state.stopper, state.best, len(s.val_set[0]) > 0
    with s.ema.applied() if s.ema is not None else contextlib.nullcontext():  # validate what will be kept
        val_loss, val_acc, _ = evaluate(s.model, *s.val_set, s.cfg["train"]["eval_batch_size"])
        if has_val:
            stopper = s.stopping.update(stopper, epoch, dict(val_loss=val_loss, val_accuracy=val_acc))
            if stopper.best_epoch == epoch and s.cfg["train"]["restore_best"]:
                best = s.model.state_dict()  # copies
    seconds = time.perf_counter() - t0
    row = dict(zip(METRIC_COLUMNS, (epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds)))
    diagnostics, diagnostics_seconds = state.diagnostics, state.diagnostics_seconds
    if s.diagnostics is not None:  # outside the epoch's seconds: its cost is diagnostics_seconds
        t_diag = time.perf_counter()
        measured = s.diagnostics.rows(epoch)
        s.run.folder.log_diagnostics(measured)
        diagnostics = diagnostics + [list(r) for r in measured]
        diagnostics_seconds += time.perf_counter() - t_diag
    t_log = time.perf_counter()
    s.run.log(row)
    s.run.flush()  # on disk before the checkpoint that counts it
    train_seconds = state.train_seconds + seconds
    s.run.update(epochs_completed=epoch, train_seconds=train_seconds, peak_rss_mib=peak_rss_mib(),
                 rss_mib=rss_mib(), **({"rss_mib_epoch_1": rss_mib()} if epoch == 1 else {}),
                 **(best_fields(s.stopping, stopper) if has_val else {}),
                 **({"diagnostics_seconds": diagnostics_seconds} if s.diagnostics is not None else {}))
    log_seconds = state.log_seconds + time.perf_counter() - t_log
    val_text = f"  val loss {val_loss:.4f} acc {val_acc:.2%}" if has_val else ""
    s.log(f"epoch {epoch:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}{val_text}  {seconds:.1f}s")
    stop = None
    if has_val and s.stopping.should_stop(stopper):
        s.log(f"early stopping: {s.stopping.metric} has not improved for {s.stopping.patience} epochs")
        stop = Ending("completed")
    pruned = s.on_epoch(epoch, row) if s.on_epoch is not None and epoch < epochs and stop is None else None
    if pruned:
        s.log(f"pruned after epoch {epoch}: {pruned}")
        stop = Ending("pruned", pruned)
    return replace(state, epoch=epoch, step=step, rows=state.rows + [row], diagnostics=diagnostics, stopper=stopper,
                   stop=stop, train_seconds=train_seconds, log_seconds=log_seconds,
                   diagnostics_seconds=diagnostics_seconds, best=best, **snapshot(s))


def train_one_epoch(s: Setup, epoch: int, step: int) -> tuple[float, float, int]:
    """One pass over the shuffled training set, from optimizer step ``step``;
    returns (mean loss, accuracy, next step).

    ``s.steps`` (the engine's, see nnexp/engines.py) computes each batch's
    loss and gradients: forward, loss, backward, in one piece or in shards
    (``train.data_parallel``). ``s.augment`` (an Augmenter or None) transforms
    each training batch, drawing from its own random stream; ``s.ema`` (a
    WeightEMA or None) is updated after every step. ``s.diagnostics``, if
    set, copies the weights just before the epoch's last optimizer step.
    """
    (x, y), batch_size = s.train_set, s.cfg["data"]["batch_size"]
    n = len(x)
    order = s.rngs["shuffle"].permutation(n)
    full_batch = batch_size >= n  # plain gradient descent: order is irrelevant, skip the copy
    dtype, xp = model_dtype(s.model), s.model.xp
    loss_sum, correct = 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"), \
            tqdm(total=math.ceil(n / batch_size), desc=f"epoch {epoch}/{s.cfg['train']['epochs']}", leave=False,
                 disable=None if s.progress else True, unit="batch") as bar:  # None: a bar only on a terminal
        for batch, start in enumerate(range(0, n, batch_size), start=1):
            idx = xp.asarray(order[start:start + batch_size])   # the order is drawn on the host
            xb, yb = (x, y) if full_batch else (x[idx], y[idx])
            xb = xb.astype(dtype, copy=False)
            if s.augment is not None:
                xb = s.augment(xb, s.rngs["augment"])
            loss, right = s.steps.step(xb, yb, step)
            if not math.isfinite(loss):  # a diverging loss is reported here, by name
                raise Diverged(f"diverged at epoch {epoch}, batch {batch}: loss is {loss}")
            if s.diagnostics is not None and start + batch_size >= n:
                s.diagnostics.before_last_step()
            s.optimizer.step(s.schedule(step))
            if s.ema is not None:
                s.ema.update()
            step += 1
            loss_sum += loss * len(idx)
            correct += right
            bar.update(1)
    return loss_sum / n, correct / n, step


def _finish(s: Setup, state: TrainState) -> None:
    """The weights to keep, the final evaluation on the test set, weights, plots and the completed summary."""
    if state.best is not None:
        s.model.load_state_dict(state.best)
        s.log(f"restored the weights of epoch {state.stopper.best_epoch} (best {s.stopping.metric})")
    elif s.ema is not None:
        s.ema.copy_to_model()  # the average is what is tested and saved
    stop = state.stop or Ending("completed")
    eval_bs, data, folder = s.cfg["train"]["eval_batch_size"], s.data, s.run.folder
    # Final train metrics are the last epoch's running averages (training mode),
    # as in metrics.csv; re-evaluating 55k images would cost as much as an epoch.
    last = state.rows[-1]
    metrics = {"final_train_loss": float(last["train_loss"]), "final_train_accuracy": float(last["train_accuracy"])}
    if len(data.x_val):
        loss, acc, _ = evaluate(s.model, data.x_val, data.y_val, eval_bs)
        metrics.update(final_val_loss=loss, final_val_accuracy=acc)
    t0 = time.perf_counter()
    test_loss, test_acc, probs = evaluate(s.model, data.x_test, data.y_test, eval_bs)
    test_seconds = time.perf_counter() - t0
    save_weights(folder.model_path, s.model)
    folder.notify_file(MODEL)
    if s.cfg["tracking"]["plots"]:
        make_plots(folder, data, probs, state, s.model, image_index=s.cfg["tracking"]["feature_map_image"], log=s.log)
    s.run.end(
        stop.status, stop.reason, epochs_completed=state.epoch,
        test_loss=test_loss, test_accuracy=test_acc, **metrics,
        data_seconds=s.data_seconds, train_seconds=state.train_seconds, test_seconds=test_seconds,
        logging_seconds=state.log_seconds, checkpoint_seconds=state.checkpoint_seconds,
        total_seconds=time.perf_counter() - s.started,
    )
    checkpoint.remove(s.run.path)  # the run is finished: model.npz holds what is kept
    folder.notify_file(CHECKPOINT)
    s.log(f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}) after {state.epoch} epochs, "
          f"training {state.train_seconds:.1f}s")


def snapshot(s: Setup) -> dict:
    """The TrainState fields that copy the live objects: weights, optimizer buffers, the weights' average,
    the random generators."""
    return dict(model=s.model.state_dict(), optim=optimizer_state(s.optimizer),
                ema=s.ema.state_dict() if s.ema is not None else None, rng_states=checkpoint.rng_states(s.rngs))


def best_fields(stopping: EarlyStopping, stopper: Patience) -> dict:
    """The best epoch so far, as summary.json records it."""
    return dict(best_epoch=stopper.best_epoch, best_val_metric=stopping.metric,
                best_val_value=stopping.best_value(stopper))


def _record_start(cfg: dict, run: Run, data, model, resumed_from: int | None, facts: dict) -> TrackedRun:
    """The run's config and summary as training starts, or goes on after epoch ``resumed_from``;
    ``facts``: the summary fields about where and how it runs."""
    if resumed_from is not None:  # config.yaml is rewritten if it changed (nnexp resume --device)
        return TrackedRun.resume(run, dump_yaml(cfg), resumed_from_epoch=resumed_from, **facts)
    for copied in save_copies(run.path, cfg):   # the user's layer files, if any, and their sha256
        run.notify_file(copied)   # observers (Ray's shipper) carry them to the store
    t = cfg["train"]
    return TrackedRun.start(
        run, cfg["tracking"]["name"] or "run", dump_yaml(cfg), dataset=cfg["data"]["dataset"],
        classes=list(data.classes), seed=t["seed"], tags=cfg["tracking"]["tags"], params=model.num_parameters(),
        layers=describe_layers(cfg["model"]["layers"]), epochs_planned=t["epochs"], epochs_completed=0,
        train_size=len(data.x_train), val_size=len(data.x_val), test_size=len(data.x_test),
        input_shape=list(data.x_train.shape[1:]), **data.facts, **facts,
    )


def _on_device(model, x, y) -> tuple:
    """``x`` and ``y`` on the model's device, once, not per batch (the same arrays on the CPU)."""
    return model.xp.asarray(x), model.xp.asarray(y)


def _schedule(cfg: dict, train_size: int):
    """The learning rate at each optimizer step (``schedule`` and ``optimizer.lr``)."""
    steps_per_epoch = math.ceil(train_size / cfg["data"]["batch_size"])
    options = dict(cfg["schedule"])
    return make_schedule(options.pop("name"), cfg["optimizer"]["lr"], cfg["train"]["epochs"] * steps_per_epoch,
                         steps_per_epoch, **options)


def _augmenter(cfg: dict) -> Augmenter | None:
    augment = Augmenter(**cfg["data"]["augment"]) if cfg["data"]["augment"] else None
    return None if augment is None or augment.is_identity else augment


def _checkpoint_to_resume(run: Run, cfg: dict) -> TrainState | None:
    """The run's checkpoint if it belongs to ``cfg`` (None if it has none)."""
    saved = checkpoint.load(run.path)
    if saved is not None and saved.config_digest != checkpoint.config_digest(cfg):
        raise checkpoint.ConfigChanged(
            f"run {run.id}: its checkpoint was written for another config than its config.yaml "
            "(was config.yaml edited?); nothing was changed")
    return saved


def _restore(saved: TrainState, model, optimizer, rngs, ema=None) -> None:
    """Weights, optimizer buffers, the weights' average and random generators as they were at the checkpoint."""
    try:
        model.load_state_dict(saved.model)
        load_optimizer_state(optimizer, saved.optim)
        if ema is not None:
            ema.load_state_dict(saved.ema or {})
    except (ValueError, KeyError, TypeError) as exc:
        raise checkpoint.CheckpointError(f"the checkpoint does not fit the model: {exc}") from None
    checkpoint.restore_rngs(rngs, saved.rng_states)


def peak_rss_mib() -> float:
    """The most memory this process has held so far (its peak resident set), in MiB.
    A sweep worker trains several trials in one process: there it is the peak over them."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def make_plots(run: Run, data, probs, state: TrainState, model=None, image_index: int = 0, log=print) -> None:
    """Write the run's PNGs into plots/, from the rows ``state`` holds.

    Always the learning curves, the test confusion matrix and misclassified
    test images; diagnostics.png when the run records diagnostics.csv. For a
    model with a Conv2D layer also conv_filters.png (the first conv layer's
    kernels) and feature_maps.png (what each conv block makes of test image
    ``image_index``).

    The diagnostics and conv plots are extras: if one fails, the reason is
    logged and recorded in summary.json under ``plot_errors``, and the run
    still ends as it would have without it.
    """
    from .tracking import plots  # matplotlib (heavy): loaded by the runs that draw

    run.plots_dir.mkdir(exist_ok=True)
    plots.plot_learning_curves(state.rows, run.plots_dir / "learning_curves.png")
    y_pred = probs.argmax(1)
    plots.plot_confusion_matrix(data.y_test, y_pred, data.classes, run.plots_dir / "confusion_matrix.png",
                                title="Test set confusion matrix")
    plots.plot_misclassified(data.x_test, data.y_test, y_pred, probs, data.classes,
                             run.plots_dir / "misclassified.png")
    _extra_plots(plots, run, data, model, state, image_index, log)


def _extra_plots(plots, run: Run, data, model, state: TrainState, image_index: int, log) -> None:
    """diagnostics.png for a run with diagnostics.csv; conv_filters.png and
    feature_maps.png for a model with a Conv2D layer."""
    weights = first_conv_weights(model) if model is not None else None

    def diagnostics(path):
        plots.plot_diagnostics([dict(zip(DIAGNOSTIC_COLUMNS, row)) for row in state.diagnostics], path)

    def filters(path):
        plots.plot_conv_filters(weights, path)

    def maps(path):
        if not 0 <= image_index < len(data.x_test):
            raise ValueError(f"tracking.feature_map_image is {image_index}, but the test set has "
                             f"{len(data.x_test)} images")
        seen = feature_maps(model, data.x_test[image_index])
        plots.plot_feature_maps(seen.image, seen.rows, seen.probs, data.y_test[image_index], path,
                                classes=data.classes, title=f"Feature maps of test image {image_index}")

    planned = [("diagnostics.png", diagnostics)] if run.diagnostics_path.exists() else []
    if weights is not None:
        planned += [("conv_filters.png", filters), ("feature_maps.png", maps)]
    errors = {}
    for name, draw in planned:
        try:
            draw(run.plots_dir / name)
        except Exception as exc:  # noqa: BLE001 -- an extra plot must not fail a trained run
            (run.plots_dir / name).unlink(missing_ok=True)  # no half-written PNG left behind
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"warning: could not draw plots/{name}: {errors[name]}")
    if errors:
        run.update_summary(plot_errors=errors)
