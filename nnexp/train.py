"""The training loop: from a resolved config to a finished run folder.

One readable function, :func:`train`, in the spirit of nanoGPT's train.py:
load data, build the model, then for each epoch shuffle, step through
mini-batches (forward, loss, backward, optimizer step), evaluate on the
validation set and log a row. The test set is touched once, at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import checkpoint, devices
from .augment import Augmenter
from .config import describe_layers, dump_yaml
from .data import load_dataset
from .diagnostics import Diagnostics
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
from .tracking.run import CHECKPOINT, FAILED, MODEL


class Diverged(NnexpError):
    """The loss became NaN or infinite."""


def make_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams, so that changing the model never changes the data order."""
    init, shuffle, augment = np.random.SeedSequence(seed).spawn(3)
    return {"init": np.random.default_rng(init), "shuffle": np.random.default_rng(shuffle),
            "augment": np.random.default_rng(augment)}


def load_data(cfg: dict, log=print):
    d = cfg["data"]
    data = load_dataset(d["dataset"], val_size=d["val_size"], split_seed=d["split_seed"],
                        cache_dir=d["cache_dir"], local_dir=d["local_dir"], mirrors=d["mirrors"],
                        csv_path=d["csv_path"], test_csv_path=d["test_csv_path"],
                        test_size=d["test_size"], path=d["path"], log=log)
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


class EarlyStopping:
    """Stop when a validation metric has not improved for ``patience`` epochs."""

    def __init__(self, metric="val_accuracy", patience=None, min_delta=0.0):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.sign = 1.0 if metric.endswith("accuracy") else -1.0  # maximise accuracy, minimise loss
        self.best, self.best_epoch, self.bad_epochs = -math.inf, 0, 0

    def update(self, epoch: int, row: dict) -> bool:
        """Record an epoch; True if it is the best so far."""
        value = self.sign * row[self.metric]
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience


def train_one_epoch(steps, optimizer, schedule, x, y, batch_size, rngs, epoch, step, bar,
                    augment=None, ema=None, before_last_step=None):
    """One pass over the shuffled training set; returns (mean loss, accuracy, next step).

    ``steps`` (the engine's, see nnexp/engines.py) computes each batch's
    loss and gradients: forward, loss, backward, in one piece or in shards
    (``train.data_parallel``). ``augment`` (an
    Augmenter or None) transforms each training batch, drawing from its own
    random stream; ``ema`` (a WeightEMA or None) is updated after every step.
    ``before_last_step()``, if given, is called just before the epoch's last
    optimizer step (the diagnostics copy the weights there).
    """
    n = len(x)
    order = rngs["shuffle"].permutation(n)
    full_batch = batch_size >= n  # plain gradient descent: order is irrelevant, skip the copy
    dtype, xp = model_dtype(steps.model), steps.model.xp
    loss_sum, correct = 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging loss is reported below, by name
        for batch, start in enumerate(range(0, n, batch_size), start=1):
            idx = xp.asarray(order[start:start + batch_size])   # the order is drawn on the host
            xb, yb = (x, y) if full_batch else (x[idx], y[idx])
            xb = xb.astype(dtype, copy=False)
            if augment is not None:
                xb = augment(xb, rngs["augment"])
            loss, right = steps.step(xb, yb, step)
            if not math.isfinite(loss):
                raise Diverged(f"diverged at epoch {epoch}, batch {batch}: loss is {loss}")
            if before_last_step is not None and start + batch_size >= n:
                before_last_step()
            optimizer.step(schedule(step))
            if ema is not None:
                ema.update()
            step += 1
            loss_sum += loss * len(idx)
            correct += right
            bar.update(1)
    return loss_sum / n, correct / n, step


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
    t_start = time.perf_counter()
    xp = devices.array_module(cfg["train"]["device"])   # before anything is written: CuPy and a GPU, or exit 2
    ckpt = _checkpoint_to_resume(run, cfg) if resume else None
    data = data if data is not None else load_data(cfg, log=log)
    t_data = time.perf_counter() - t_start
    rngs = make_rngs(cfg["train"]["seed"])
    model, loss_fn, optimizer = build(cfg, data.x_train.shape[1:], rngs, xp)
    ema = WeightEMA(model, cfg["train"]["ema"]) if cfg["train"]["ema"] else None
    if ckpt is not None:
        _restore(ckpt, model, optimizer, rngs, ema)  # before the run is touched: a bad checkpoint changes nothing

    name = cfg["tracking"]["name"] or "run"
    run = run or RunStore(cfg["tracking"]["store"]).create(name)
    t = cfg["train"]
    if resume:  # config.yaml is rewritten if it changed (resumed on another device: nnexp resume --device)
        tracked = TrackedRun.resume(run, dump_yaml(cfg), resumed_from_epoch=ckpt.epoch if ckpt else 0,
                                    **provenance(), **devices.facts(xp), **(extra_summary or {}))
    else:
        for copied in save_copies(run.path, cfg):   # the user's layer files, if any, and their sha256
            run.notify_file(copied)   # observers (Ray's shipper) carry them to the store
        tracked = TrackedRun.start(
            run, name, dump_yaml(cfg), dataset=cfg["data"]["dataset"], classes=list(data.classes), seed=t["seed"],
            tags=cfg["tracking"]["tags"], params=model.num_parameters(), layers=describe_layers(cfg["model"]["layers"]),
            epochs_planned=t["epochs"], epochs_completed=0,
            train_size=len(data.x_train), val_size=len(data.x_val), test_size=len(data.x_test),
            input_shape=list(data.x_train.shape[1:]), **data.facts, **provenance(), **devices.facts(xp), **(extra_summary or {}),
        )
    log(f"run {run.id}: {model.num_parameters():,} parameters, {len(data.x_train):,} training images"
        + (f"; resuming after epoch {ckpt.epoch}" if ckpt else "; no checkpoint, from epoch 1" if resume else ""))
    steps = ENGINES[cfg["model"]["engine"]].steps(model, loss_fn, t["data_parallel"], seed=t["seed"])
    try:
        _fit(cfg, tracked, data, steps, optimizer, rngs, t_data, t_start, log, progress, on_epoch, ckpt, ema)
    except Diverged as exc:
        tracked.end(FAILED, str(exc))
        raise
    except BaseException as exc:  # Ctrl-C: interrupted; anything else: failed, with the traceback
        tracked.fail(exc)
        raise
    finally:
        steps.close()
    return run


def _checkpoint_to_resume(run: Run, cfg: dict):
    """The run's checkpoint if it belongs to ``cfg`` (None if it has none)."""
    ckpt = checkpoint.load(run.path)
    if ckpt is not None and ckpt.config_digest != checkpoint.config_digest(cfg):
        raise checkpoint.ConfigChanged(
            f"run {run.id}: its checkpoint was written for another config than its config.yaml "
            "(was config.yaml edited?); nothing was changed")
    return ckpt


def _restore(ckpt, model, optimizer, rngs, ema=None) -> None:
    """Weights, optimizer buffers, the weights' average and random generators as they were at the checkpoint."""
    try:
        model.load_state_dict(ckpt.model)
        load_optimizer_state(optimizer, ckpt.optim)
        if ema is not None:
            ema.load_state_dict(ckpt.ema or {})
    except (ValueError, KeyError, TypeError) as exc:
        raise checkpoint.CheckpointError(f"the checkpoint does not fit the model: {exc}") from None
    checkpoint.restore_rngs(rngs, ckpt.rng_states)


def _fit(cfg, run: TrackedRun, data, steps, optimizer, rngs, t_data, t_start, log, progress, on_epoch=None,
         ckpt=None, ema=None):
    t, batch_size, model = cfg["train"], cfg["data"]["batch_size"], steps.model
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    sched_cfg = dict(cfg["schedule"])
    schedule = make_schedule(sched_cfg.pop("name"), cfg["optimizer"]["lr"], t["epochs"] * steps_per_epoch,
                             steps_per_epoch, **sched_cfg)
    augment = Augmenter(**cfg["data"]["augment"]) if cfg["data"]["augment"] else None
    if augment is not None and augment.is_identity:
        augment = None
    es_cfg = t["early_stopping"] or {}
    stopper = EarlyStopping(es_cfg.get("metric", "val_accuracy"), es_cfg.get("patience"),
                            es_cfg.get("min_delta", 0.0))
    has_val = len(data.x_val) > 0
    # on the model's device once, not per batch (the same arrays on the CPU)
    x_train, y_train, x_val, y_val = (model.xp.asarray(a) for a in (data.x_train, data.y_train, data.x_val,
                                                                     data.y_val))
    diagnostics = Diagnostics(model, data.x_train) if t["diagnostics"] else None
    # Everything below is what a checkpoint carries from one process to the next.
    done, step, train_seconds, log_seconds, rows, best_state, stop = 0, 0, 0.0, 0.0, [], None, None
    diagnostics_seconds = 0.0
    if ckpt is not None:
        done, step, train_seconds, log_seconds = ckpt.epoch, ckpt.step, ckpt.train_seconds, ckpt.log_seconds
        rows, best_state, stop = ckpt.rows, ckpt.best, ckpt.stop
        diagnostics_seconds = ckpt.diagnostics_seconds
        stopper.__dict__.update(ckpt.stopper)
    run.rewind(rows)  # a resumed run drops rows logged after its checkpoint
    run.folder.truncate_diagnostics(done)
    ckpt_seconds = 0.0
    for epoch in range(done + 1, t["epochs"] + 1):
        if stop is not None:
            break
        t0 = time.perf_counter()
        lr = schedule(step)
        with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{t['epochs']}", leave=False,
                  disable=None if progress else True, unit="batch") as bar:  # None: bar only on a terminal
            train_loss, train_acc, step = train_one_epoch(
                steps, optimizer, schedule, x_train, y_train, batch_size, rngs, epoch, step, bar, augment,
                ema, before_last_step=diagnostics.before_last_step if diagnostics is not None else None)
        with ema.applied() if ema is not None else contextlib.nullcontext():  # validate what will be kept
            val_loss, val_acc, _ = evaluate(model, x_val, y_val, t["eval_batch_size"])
            improved = has_val and stopper.update(epoch, dict(val_loss=val_loss, val_accuracy=val_acc))
            if improved and t["restore_best"]:
                best_state = model.state_dict()  # copies
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        row = dict(epoch=epoch, train_loss=train_loss, train_accuracy=train_acc, val_loss=val_loss,
                   val_accuracy=val_acc, lr=lr, seconds=seconds)
        rows.append(row)
        if diagnostics is not None:  # outside the epoch's seconds: its cost is diagnostics_seconds
            t_diag = time.perf_counter()
            run.folder.log_diagnostics(diagnostics.rows(epoch))
            diagnostics_seconds += time.perf_counter() - t_diag
        t_log = time.perf_counter()
        run.log(row)
        run.flush()  # on disk before the checkpoint that counts it
        best = {} if not has_val else dict(best_epoch=stopper.best_epoch,
                                           best_val_metric=es_cfg.get("metric", "val_accuracy"),
                                           best_val_value=stopper.sign * stopper.best)
        run.update(epochs_completed=epoch, train_seconds=train_seconds, peak_rss_mib=peak_rss_mib(),
                           rss_mib=rss_mib(), **({"rss_mib_epoch_1": rss_mib()} if epoch == 1 else {}), **best,
                           **({"diagnostics_seconds": diagnostics_seconds} if diagnostics is not None else {}))
        log_seconds += time.perf_counter() - t_log
        val_text = f"  val loss {val_loss:.4f} acc {val_acc:.2%}" if has_val else ""
        log(f"epoch {epoch:3d}/{t['epochs']}  train loss {train_loss:.4f} acc {train_acc:.2%}{val_text}"
            f"  {seconds:.1f}s")
        if has_val and stopper.should_stop:
            log(f"early stopping: {stopper.metric} has not improved for {stopper.patience} epochs")
            stop = {"status": "completed", "reason": None}
        pruned = on_epoch(epoch, row) if on_epoch is not None and epoch < t["epochs"] and stop is None else None
        if pruned:
            log(f"pruned after epoch {epoch}: {pruned}")
            stop = {"status": "pruned", "reason": pruned}
        done = epoch
        t_ckpt = time.perf_counter()
        checkpoint.save(run.path, checkpoint.Checkpoint(
            epoch=epoch, step=step, train_seconds=train_seconds, log_seconds=log_seconds, rows=rows,
            stopper={k: v for k, v in stopper.__dict__.items() if k in ("best", "best_epoch", "bad_epochs")},
            rng_states=checkpoint.rng_states(rngs), config_digest=checkpoint.config_digest(cfg), stop=stop,
            model=model.state_dict(), optim=optimizer_state(optimizer), best=best_state,
            ema=ema.state_dict() if ema is not None else None, diagnostics_seconds=diagnostics_seconds))
        run.folder.notify_file(CHECKPOINT)
        ckpt_seconds += time.perf_counter() - t_ckpt
    if best_state is not None:
        model.load_state_dict(best_state)
        log(f"restored the weights of epoch {stopper.best_epoch} (best {stopper.metric})")
    elif ema is not None:
        ema.copy_to_model()  # the average is what is tested and saved
    stop = stop or {"status": "completed", "reason": None}
    _finish(cfg, run, data, model, train_seconds, log_seconds, t_data, t_start, done, log,
            status=stop["status"], reason=stop["reason"], checkpoint_seconds=ckpt_seconds)


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


def _finish(cfg, run: TrackedRun, data, model, train_seconds, log_seconds, t_data, t_start, epochs_done, log,
            status="completed", reason=None, checkpoint_seconds=0.0):
    """Final evaluation on the test set, weights, plots and the completed summary."""
    eval_bs = cfg["train"]["eval_batch_size"]
    # Final train metrics are the last epoch's running averages (training mode),
    # as in metrics.csv; re-evaluating 55k images would cost as much as an epoch.
    last = pd.read_csv(run.folder.metrics_path).iloc[-1]
    metrics = {"final_train_loss": float(last["train_loss"]), "final_train_accuracy": float(last["train_accuracy"])}
    if len(data.x_val):
        loss, acc, _ = evaluate(model, data.x_val, data.y_val, eval_bs)
        metrics.update(final_val_loss=loss, final_val_accuracy=acc)
    t0 = time.perf_counter()
    test_loss, test_acc, probs = evaluate(model, data.x_test, data.y_test, eval_bs)
    test_seconds = time.perf_counter() - t0
    save_weights(run.folder.model_path, model)
    run.folder.notify_file(MODEL)
    if cfg["tracking"]["plots"]:
        make_plots(run.folder, data, probs, model, image_index=cfg["tracking"]["feature_map_image"], log=log)
    run.end(
        status, reason, epochs_completed=epochs_done,
        test_loss=test_loss, test_accuracy=test_acc, **metrics,
        data_seconds=t_data, train_seconds=train_seconds, test_seconds=test_seconds,
        logging_seconds=log_seconds, checkpoint_seconds=checkpoint_seconds,
        total_seconds=time.perf_counter() - t_start,
    )
    checkpoint.remove(run.path)  # the run is finished: model.npz holds what is kept
    run.folder.notify_file(CHECKPOINT)
    log(f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}) after {epochs_done} epochs, "
        f"training {train_seconds:.1f}s")


def make_plots(run: Run, data, probs, model=None, image_index: int = 0, log=print) -> None:
    """Write the run's PNGs into plots/.

    Always the learning curves, the test confusion matrix and misclassified
    test images; diagnostics.png when the run recorded diagnostics.csv. For a
    model with a Conv2D layer also conv_filters.png (the first conv layer's
    kernels) and feature_maps.png (what each conv block makes of test image
    ``image_index``).

    The diagnostics and conv plots are extras: if one fails, the reason is
    logged and recorded in summary.json under ``plot_errors``, and the run
    still ends as it would have without it.
    """
    from .tracking import plots  # matplotlib (heavy): loaded by the runs that draw

    run.plots_dir.mkdir(exist_ok=True)
    metrics = pd.read_csv(run.metrics_path)
    plots.plot_learning_curves(metrics, run.plots_dir / "learning_curves.png")
    y_pred = probs.argmax(1)
    plots.plot_confusion_matrix(data.y_test, y_pred, data.classes, run.plots_dir / "confusion_matrix.png",
                                title="Test set confusion matrix")
    plots.plot_misclassified(data.x_test, data.y_test, y_pred, probs, data.classes,
                             run.plots_dir / "misclassified.png")
    _extra_plots(plots, run, data, model, image_index, log)


def _extra_plots(plots, run: Run, data, model, image_index: int, log) -> None:
    """diagnostics.png for a run with diagnostics.csv; conv_filters.png and
    feature_maps.png for a model with a Conv2D layer."""
    weights = first_conv_weights(model) if model is not None else None

    def diagnostics(path):
        plots.plot_diagnostics(pd.read_csv(run.diagnostics_path), path)

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
