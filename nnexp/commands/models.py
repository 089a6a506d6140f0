"""``nnexp evaluate``, ``predict`` and ``ensemble``: using trained runs."""

from __future__ import annotations

import json

import click
import numpy as np

from ..ensemble import build_ensemble, resolve_members, sweep_members
from ..data.custom import as_input
from ..preprocess import load_digit
from ..tracking import RunStore
from ..train import evaluate as evaluate_model
from ..train import load_data
from ..trained import load_trained
from .options import JSON_OPTION, STORE_OPTION
from .progress import log


@click.command()
@click.argument("run_ref", metavar="RUN")
@STORE_OPTION
@JSON_OPTION
def evaluate(run_ref, store, as_json):
    """Reload a run's weights and recompute its test metrics."""
    info = RunStore(store).resolve(run_ref)
    cfg, model = load_trained(info)
    data = load_data(cfg, log=log)
    loss, acc, _ = evaluate_model(model, data.x_test, data.y_test, cfg["train"]["eval_batch_size"])
    recorded = info.summary.get("test_accuracy")
    result = {"id": info.id, "test_loss": loss, "test_accuracy": acc, "recorded_test_accuracy": recorded,
              "matches_recorded": recorded is not None and abs(acc - recorded) < 1e-12}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    note = "" if recorded is None else (" (matches the recorded value)" if result["matches_recorded"]
                                        else f" (recorded: {recorded:.4%})")
    click.echo(f"{info.id}: test accuracy {acc:.4%}, loss {loss:.4f} on {len(data.x_test):,} images{note}")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@STORE_OPTION
@JSON_OPTION
def predict(run_ref, images, store, as_json):
    """Classify PNG images of digits (or, for a run on an image folder, images like its own) with a run's model."""
    info = RunStore(store).resolve(run_ref)
    cfg, model = load_trained(info)
    classes = info.summary.get("classes") or [str(i) for i in range(10)]
    shape = tuple(info.summary.get("input_shape") or (1, 28, 28))
    if shape == (1, 28, 28):   # digits: centred and scaled as MNIST's are (nnexp/preprocess.py)
        batch = np.stack([load_digit(path) for path in images])[:, None]
    else:   # a run on images of the user's own: taken as its training images were
        batch = np.stack([as_input(path, shape) for path in images])
    probs = model.predict_proba(batch)
    results = [{"image": str(path), "prediction": classes[int(p.argmax())], "probability": float(p.max()),
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}}
               for path, p in zip(images, probs)]
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        others = ", ".join(f"{c} {v:.1%}" for c, v in top[1:])
        click.echo(f"{r['image']}: {r['prediction']} ({r['probability']:.1%}; next: {others})")


@click.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option("--sweep", "sweep_ref", metavar="SWEEP",
              help="Add every completed run of this sweep (id, prefix or name) as a member.")
@click.option("--name", default="ensemble", show_default=True, help="Name of the ensemble's own run.")
@STORE_OPTION
@JSON_OPTION
def ensemble(run_refs, sweep_ref, name, store, as_json):
    """Average several runs' softmax outputs on the test set; record the ensemble as a run.

    Members are the RUNs named, plus with --sweep the completed runs of a sweep."""
    runs = RunStore(store)
    refs = list(run_refs) + (sweep_members(runs, sweep_ref) if sweep_ref else [])
    infos = resolve_members(runs, refs)
    # Every member's weights load before the dataset does: a run without
    # model.npz is reported in a moment, not after the test set is read.
    members = [(info, *load_trained(info)) for info in infos]
    s = build_ensemble(runs, members, name, log=log).summary
    if as_json:
        click.echo(json.dumps({"id": s["id"], "path": str(runs.root / s["id"]), **s}, indent=2))
        return
    each = ", ".join(f"{s['member_test_accuracy'][i]:.2%}" for i in s["members"])
    click.echo(f"ensemble of {len(s['members'])} runs: test accuracy {s['test_accuracy']:.2%} (members {each})"
               f"  |  run {runs.root / s['id']}")
