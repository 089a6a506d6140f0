"""Ensembles: the averaging math by hand, then `nnexp ensemble` on two tiny real-MNIST runs."""

import json
import math
import shutil
import textwrap

import numpy as np
import pytest

from nnexp.cli import main
from nnexp.data import load_dataset
from nnexp.ensemble import EnsembleModel, accuracy, ensemble_probabilities, log_loss
from nnexp.nn.losses import SoftmaxCrossEntropy, softmax
from nnexp.nn.model import build_model, load_weights

# ------------------------------------------------------------- the math --

LABELS = np.array([0, 1, 2])
# Member A is wrong on image 0 (0.55 on class 1), member B on image 1 (0.50 on class 0).
A = np.array([[0.45, 0.55, 0.00],
              [0.10, 0.80, 0.10],
              [0.20, 0.20, 0.60]])
B = np.array([[0.90, 0.05, 0.05],
              [0.50, 0.40, 0.10],
              [0.10, 0.30, 0.60]])


def test_the_average_of_two_members_is_right_where_each_was_wrong():
    mean = ensemble_probabilities([A, B])
    # By hand: (A + B) / 2 = [[0.675, 0.30, 0.025], [0.30, 0.60, 0.10], [0.15, 0.25, 0.60]]
    np.testing.assert_allclose(mean, [[0.675, 0.30, 0.025], [0.30, 0.60, 0.10], [0.15, 0.25, 0.60]])
    np.testing.assert_allclose(mean.sum(axis=1), 1.0)
    # Each member: 2 of 3 right. The ensemble's argmax is 0, 1, 2: 3 of 3.
    assert accuracy(A, LABELS) == accuracy(B, LABELS) == pytest.approx(2 / 3)
    assert accuracy(mean, LABELS) == 1.0
    # Loss: -(ln 0.675 + ln 0.60 + ln 0.60) / 3 = (0.39304 + 0.51083 + 0.51083) / 3 = 0.47157
    assert log_loss(mean, LABELS) == pytest.approx(0.47157, abs=1e-5)


def test_the_mean_of_probabilities_is_not_a_majority_vote():
    unsure_1 = np.array([[0.45, 0.55]])
    sure_0 = np.array([[0.99, 0.01]])
    # Two votes for class 1, but the mean is (0.45 + 0.45 + 0.99) / 3 = 0.63 for class 0.
    mean = ensemble_probabilities([unsure_1, unsure_1, sure_0])
    np.testing.assert_allclose(mean, [[0.63, 0.37]])
    assert accuracy(mean, [0]) == 1.0


def test_log_loss_clips_a_zero_probability_and_shapes_must_match():
    assert log_loss([[0.0, 1.0]], [0]) == pytest.approx(-math.log(1e-12))  # finite, not inf
    assert log_loss([[0.25, 0.75]], [1]) == pytest.approx(-math.log(0.75))
    with pytest.raises(ValueError, match="one shape"):
        ensemble_probabilities([A, A[:2]])
    with pytest.raises(ValueError, match="no member"):
        ensemble_probabilities([])


class FixedLogits:
    """A stand-in model that returns the same logits whatever the input."""

    def __init__(self, logits):
        self.logits = np.asarray(logits, dtype=np.float64)

    def forward(self, x, training=False):
        return self.logits[: len(x)].copy()

    def predict_proba(self, x, batch_size=1000):
        return softmax(self.forward(x)).astype(np.float32)

    def parameters(self):
        return [("w", self.logits, self.logits)]

    def num_parameters(self):
        return self.logits.size


def test_ensemble_model_outputs_logits_whose_softmax_is_the_mean():
    # What `nnexp evaluate` relies on: softmax(forward(x)) is the members' mean probability,
    # so the usual cross-entropy of the output is the ensemble's log loss.
    a, b = FixedLogits(np.log(A + 1e-3)), FixedLogits([[0.0, 2.0, -1.0], [1.0, 1.0, 3.0], [0.5, 0.0, 0.0]])
    model = EnsembleModel([a, b])
    x = np.zeros((3, 1, 28, 28), np.float32)
    expected = ensemble_probabilities([softmax(a.forward(x)), softmax(b.forward(x))])
    np.testing.assert_allclose(softmax(model.forward(x)), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(x), expected, rtol=1e-6)
    loss = SoftmaxCrossEntropy().forward(model.forward(x), LABELS)
    assert loss == pytest.approx(log_loss(expected, LABELS), rel=1e-9)
    assert model.num_parameters() == 18


# ------------------------------------------------------- end to end --

TINY = """\
data: {{dataset: mnist, val_size: 500, batch_size: 64, train_subset: 400}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 32}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.003}}
train: {{epochs: 1, seed: 0}}
tracking: {{store: {store}, name: tiny, plots: false}}
"""


def run_ids(store):
    return sorted(p.name for p in store.iterdir() if (p / "summary.json").exists())


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A store with two tiny one-epoch runs (seeds 1 and 2), trained once for this module."""
    root = tmp_path_factory.mktemp("ensemble")
    store = root / "runs"
    config = root / "tiny.yaml"
    config.write_text(textwrap.dedent(TINY.format(store=store)))
    for seed in (1, 2):
        main(["run", str(config), "-q", f"train.seed={seed}"])  # raises SystemExit on failure
    ids = run_ids(store)
    assert len(ids) == 2
    return store, ids


def summary(store, run_id):
    return json.loads((store / run_id / "summary.json").read_text())


def test_ensemble_run_is_recorded_listed_compared_and_evaluated(nnexp, members):
    store, (a, b) = members
    code, out, err = nnexp("ensemble", a, b, "--name", "pair", "--store", store)
    assert code == 0, err
    ens = next(i for i in run_ids(store) if i not in (a, b))
    assert out.startswith("ensemble of 2 runs: test accuracy ") and ens in out
    s = summary(store, ens)
    assert s["kind"] == "ensemble" and s["status"] == "completed" and s["name"] == "pair"
    assert s["members"] == [a, b] and s["seed"] is None and s["dataset"] == "mnist"
    assert s["params"] == 2 * (784 * 32 + 32 + 32 * 10 + 10)
    assert s["member_test_accuracy"] == {m: summary(store, m)["test_accuracy"] for m in (a, b)}

    # Recompute from the members' saved weights, independently of nnexp.ensemble.
    data = load_dataset("mnist", val_size=0, log=lambda m: None)
    probs = []
    for m in (a, b):
        model = build_model([{"type": "flatten"}, {"type": "dense", "units": 32}, {"type": "relu"},
                             {"type": "dense", "units": 10}], input_shape=(1, 28, 28))
        load_weights(store / m / "model.npz", model)
        probs.append(model.predict_proba(data.x_test, 2000).astype(np.float64))
    mean = (probs[0] + probs[1]) / 2
    assert s["test_accuracy"] == float(np.mean(mean.argmax(1) == data.y_test))
    assert s["test_loss"] == pytest.approx(-np.mean(np.log(mean[np.arange(len(mean)), data.y_test])), rel=1e-6)
    with np.load(store / ens / "predictions.npz", allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["probabilities"], mean, atol=1e-6)
        assert list(saved["members"]) == [a, b]
    assert (store / ens / "plots" / "confusion_matrix.png").stat().st_size > 0

    code, out, _ = nnexp("runs", "--store", store, "--json")
    assert code == 0 and {r["id"]: r.get("kind") for r in json.loads(out)}[ens] == "ensemble"
    code, out, err = nnexp("compare", ens, a, "--store", store, "--json")
    assert code == 0, err
    rows = json.loads(out)  # not grouped as two seeds of one setting: the ensemble's model.layers differs
    assert len(rows) == 2 and sorted(r["test_accuracy"] for r in rows) == sorted(
        [s["test_accuracy"], summary(store, a)["test_accuracy"]])
    assert any(r["model.layers"].startswith("mean of 2 x (flatten | dense(32)") for r in rows)
    code, out, err = nnexp("evaluate", ens, "--store", store, "--json")
    assert code == 0 and json.loads(out)["matches_recorded"] is True, err
    code, out, _ = nnexp("show", "pair", "--store", store)
    assert code == 0 and "members" in out and "predictions.npz" in out


def test_ensemble_mistakes_are_one_line_and_write_nothing(nnexp, members, tmp_path):
    source, members = members
    store = tmp_path / "runs"
    a, b = "20990101-000000-alpha-0001", "20990101-000000-beta-0002"  # ids whose prefixes are known
    for m, copy in zip(members, (a, b)):
        shutil.copytree(source / m, store / copy)
    no_model = store / "20990101-000000-nomodel-0003"
    shutil.copytree(store / a, no_model)
    (no_model / "model.npz").unlink()
    fashion = store / "20990101-000000-fashion-0004"
    shutil.copytree(store / b, fashion)
    config = fashion / "config.yaml"
    config.write_text(config.read_text().replace("dataset: mnist", "dataset: fashion-mnist"))
    nested = store / "20990101-000000-nested-0005"
    nested.mkdir()
    (nested / "summary.json").write_text(json.dumps(
        {"name": "nested", "status": "completed", "kind": "ensemble", "members": [a, "20990101-gone"]}))
    before = run_ids(store)

    cases = [
        (("ensemble", a), 2, "an ensemble needs at least 2 runs, got 1"),
        (("ensemble", a, "nope"), 1, "no run 'nope'"),
        (("ensemble", a, b, "20990101-000000-alph"), 2, f"run {a} is listed twice ('{a}' and '20990101-000000-alph')"),
        (("ensemble", a, no_model.name), 1, f"run {no_model.name} has no model.npz"),
        (("ensemble", a, fashion.name), 1, "use different test sets (dataset mnist vs dataset fashion-mnist)"),
        (("ensemble", a, nested.name), 1, f"run {nested.name} is itself an ensemble; list its members instead"),
        (("evaluate", nested.name), 1, "its member 20990101-gone is no longer in"),
    ]
    for args, want_code, message in cases:
        code, out, err = nnexp(*args, "--store", store)
        assert code == want_code and message in err, (args, code, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and out == "", (args, err)
    assert run_ids(store) == before
    code, _, err = nnexp("ensemble", "--store", store)  # no runs at all
    assert code == 2 and "an ensemble needs at least 2 runs, got 0" in err
    code, _, err = nnexp("ensemble", "--sweep", "nosuch", "--store", store)
    assert code == 1 and "no sweep 'nosuch'" in err
    assert run_ids(store) == before


def test_ensemble_of_a_sweep_takes_its_completed_runs(nnexp, tmp_path):
    store = tmp_path / "runs"
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(TINY.format(store=store)))
    (tmp_path / "seeds.yaml").write_text("name: seeds\nbase: tiny.yaml\nseeds: [3, 4]\n")
    code, _, err = nnexp("sweep", tmp_path / "seeds.yaml", "--workers", "1", "-q")
    assert code == 0, err
    trials = run_ids(store)
    code, out, err = nnexp("ensemble", "--sweep", "seeds", "--store", store, "--json")
    assert code == 0, err
    ens = json.loads(out)
    assert sorted(ens["members"]) == trials and ens["kind"] == "ensemble"
    # a failed trial is no member: mark one failed and only one member is left, too few
    path = store / trials[0] / "summary.json"
    path.write_text(json.dumps({**summary(store, trials[0]), "status": "failed"}))
    code, _, err = nnexp("ensemble", "--sweep", "seeds", "--store", store)
    assert code == 2 and "an ensemble needs at least 2 runs, got 1" in err
