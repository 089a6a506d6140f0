"""Sweep specs: parsing, errors, grid and random expansion, conditions, zips, seeds."""

import textwrap

import numpy as np
import pytest

from nnexp.errors import ConfigError
from nnexp.sweep import load_spec, plan
from nnexp.sweep.runner import Rungs
from nnexp.sweep.space import Param, Space, ZipGroup, point_key

BASE = """\
data: {dataset: mnist, val_size: 100, batch_size: 32, train_subset: 300}
model:
  layers:
    - {type: flatten}
    - {type: dense, units: 16}
    - {type: relu}
    - {type: dense, units: 10}
optimizer: {name: adam, lr: 0.002}
train: {epochs: 9, seed: 0}
tracking: {store: runs, plots: false}
"""


@pytest.fixture
def write_spec(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)

    def write(text, name="spec.yaml"):
        path = tmp_path / name
        path.write_text("base: base.yaml\n" + textwrap.dedent(text))
        return path
    return write


def test_grid_is_the_cross_product_times_repeats(write_spec):
    spec = load_spec(write_spec("""
        parameters:
          optimizer.lr: [0.001, 0.01, 0.1]
          data.batch_size: [32, 64]
        repeats: 3
    """))
    trials = plan(spec)
    assert len(trials) == 3 * 2 * 3
    assert [t.seed for t in trials[:3]] == [0, 1, 2]
    points = {(t.params["optimizer.lr"], t.params["data.batch_size"]) for t in trials}
    assert len(points) == 6
    t = trials[-1]
    assert t.config["optimizer"]["lr"] == 0.1 and t.config["data"]["batch_size"] == 64
    assert t.config["train"]["seed"] == 2


def test_yaml_exponent_strings_are_numbers(write_spec):
    trials = plan(load_spec(write_spec("parameters: {optimizer.lr: [1e-3, 3e-3]}\n")))
    assert [t.params["optimizer.lr"] for t in trials] == [0.001, 0.003]


def test_zip_group_varies_together(write_spec):
    trials = plan(load_spec(write_spec("""
        parameters:
          optimizer.weight_decay: [0.0, 0.01]
        zip:
          - {data.batch_size: [32, 64, 128], optimizer.lr: [0.001, 0.002, 0.004]}
    """)))
    assert len(trials) == 2 * 3
    pairs = {(t.params["data.batch_size"], t.params["optimizer.lr"]) for t in trials}
    assert pairs == {(32, 0.001), (64, 0.002), (128, 0.004)}


def test_conditional_parameter_only_where_its_condition_holds(write_spec):
    trials = plan(load_spec(write_spec("""
        parameters:
          optimizer.name: [adam, sgd]
          optimizer.momentum: {values: [0.0, 0.9], when: {optimizer.name: sgd}}
    """)))
    assert len(trials) == 1 + 2
    adam = [t for t in trials if t.params["optimizer.name"] == "adam"]
    assert len(adam) == 1 and "optimizer.momentum" not in adam[0].params
    sgd = sorted(t.params["optimizer.momentum"] for t in trials if t.params["optimizer.name"] == "sgd")
    assert sgd == [0.0, 0.9]


def test_random_is_reproducible_from_the_seed(write_spec):
    text = """
        method: random
        n_trials: 8
        seed: {seed}
        parameters:
          optimizer.lr: {{distribution: loguniform, low: 1e-4, high: 1e-1}}
          model.layers.1.units: {{distribution: int, low: 8, high: 64}}
          optimizer.name: {{distribution: choice, values: [adam, adamw]}}
    """
    a = [t.params for t in plan(load_spec(write_spec(text.format(seed=3), "a.yaml")))]
    b = [t.params for t in plan(load_spec(write_spec(text.format(seed=3), "b.yaml")))]
    c = [t.params for t in plan(load_spec(write_spec(text.format(seed=4), "c.yaml")))]
    assert a == b and a != c and len(a) == 8
    for p in a:
        assert 1e-4 <= p["optimizer.lr"] <= 1e-1
        assert 8 <= p["model.layers.1.units"] <= 64 and isinstance(p["model.layers.1.units"], int)


def test_random_never_repeats_a_point_of_a_discrete_space(write_spec):
    logs = []
    spec = load_spec(write_spec("""
        method: random
        n_trials: 10
        parameters:
          optimizer.lr: [0.001, 0.002, 0.004]
          data.batch_size: [32, 64]
    """))
    trials = plan(spec, log=logs.append)
    keys = [(t.params["optimizer.lr"], t.params["data.batch_size"]) for t in trials]
    assert len(keys) == 6 == len(set(keys))  # the whole space, once each
    assert "only 6 distinct configurations" in logs[0]
    fewer = plan(load_spec(write_spec(spec.path.read_text().replace("n_trials: 10", "n_trials: 4"), "f.yaml")))
    assert len({tuple(t.params.values()) for t in fewer}) == 4


def test_sweep_id_is_stable_and_changes_with_the_spec(write_spec):
    a = load_spec(write_spec("parameters: {optimizer.lr: [0.1, 0.2]}\n", "s.yaml"))
    b = load_spec(write_spec("parameters: {optimizer.lr: [0.1, 0.2]}\n", "s.yaml"))
    c = load_spec(write_spec("parameters: {optimizer.lr: [0.1, 0.3]}\n", "s.yaml"))
    assert a.id == b.id != c.id and a.id.startswith("s-")


@pytest.mark.parametrize("text, message", [
    ("parameter: {optimizer.lr: [0.1]}\n", "unknown key 'parameter'; did you mean 'parameters'"),
    ("parameters: {optimizer.lrr: [0.1, 0.2]}\n", "optimizer.lrr"),
    ("parameters: {optimizer.lr: 0.1}\n", "belongs under 'overrides'"),
    ("parameters: {optimizer.lr: {distribution: loguniform, low: 0, high: 1}}\nmethod: random\nn_trials: 2\n",
     "needs low > 0"),
    ("parameters: {optimizer.lr: {distribution: uniform, low: 0.1, high: 0.01}}\nmethod: random\nn_trials: 2\n",
     "must be below high"),
    ("parameters: {optimizer.lr: {distribution: uniform, low: 0.01, high: 0.1}}\n", "a grid needs discrete values"),
    ("method: random\nparameters: {optimizer.lr: [0.1, 0.2]}\n", "missing 'n_trials'"),
    ("method: bayes\nparameters: {optimizer.lr: [0.1]}\n", "choose grid, random or tpe (model-based search is "
                                                            "method: tpe)"),
    ("method: tpe\nparameters: {optimizer.lr: [0.1, 0.2]}\n", "missing 'n_trials'"),
    ("method: tpe\nn_trials: 3\nrepeats: 2\n", "this spec has none"),
    ("parameters: {optimizer.lr: [0.1]}\nbatch: 2\n", "'batch' is for method: tpe"),
    ("method: random\nn_trials: 2\nstartup_trials: 2\nparameters: {optimizer.lr: [0.1]}\n", "for method: tpe"),
    ("parameters: {optimizer.lr: [0.1]}\nhalving: {rule: bohb}\n", "halving.rule is 'bohb'; choose one of asha, "
                                                                     "median, hyperband"),
    ("parameters: {optimizer.lr: [0.1]}\nhalving: {rule: median, eta: 3}\n", "halving.eta is for the asha"),
    ("parameters: {optimizer.lr: [0.1]}\nhalving: {min_trials: 3}\n", "min_trials is for rule: median"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: [val_accuracy]\n", "two or more metrics"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: {val_accuracy: maximize, params: minimize}\n",
     "'metrics' must list two or more"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: [val_accuracy, {name: flops}]\n", "metrics[1].name is 'flops'"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: [val_accuracy, {name: params, goal: smallest}]\n",
     "metrics[1].goal is 'smallest'"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: [params, train_seconds]\n", "needs val_accuracy or val_loss"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: [val_accuracy, params, params]\n", "lists params twice"),
    ("parameters: {optimizer.lr: [0.1]}\nmetric: val_loss\nmetrics: [val_accuracy, params]\n", "not both"),
    ("parameters: {optimizer.lr: [0.1]}\nmetrics: [val_accuracy, params]\nhalving: {min_epochs: 1}\n",
     "with several 'metrics' leave it out"),
    ("zip: [{optimizer.lr: [0.1, 0.2], data.batch_size: [32]}]\n", "equally long"),
    ("parameters: {optimizer.momentum: {values: [0.9], when: {optimizer.nam: sgd}}}\n", "optimizer.nam"),
    ("parameters: {optimizer.lr: [0.1, 0.1]}\n", "lists a value twice"),
    ("parameters: {optimizer.lr: [0.1, -1.0]}\n", "trial 1"),
    ("parameters: {optimizer.lr: [0.1]}\nhalving: {min_epochs: 9}\n", "nothing is ever pruned"),
    ("parameters: {train.seed: [1, 2]}\nrepeats: 2\n", "swept and repeated"),
    ("metric: test_accuracy\nparameters: {optimizer.lr: [0.1]}\n", "validation set"),
    ("description: nothing\n", "nothing to sweep"),
])
def test_spec_mistakes_are_config_errors_naming_the_key(write_spec, text, message):
    with pytest.raises(ConfigError) as info:
        plan(load_spec(write_spec(text)))
    assert message in str(info.value) and "spec.yaml" in str(info.value)
    assert "\n" not in str(info.value)  # one line


def test_every_trial_config_is_validated_before_anything_runs(write_spec):
    # the third value is bad: the error names that trial, and comes from planning alone
    with pytest.raises(ConfigError, match=r"trial 2 \(optimizer.name=rmsprop.*beta1"):
        plan(load_spec(write_spec("""
            overrides: {optimizer.beta1: 0.8}
            parameters: {optimizer.name: [adam, adamw, rmsprop]}
        """)))


def test_missing_base_config_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: nowhere.yaml\nparameters: {optimizer.lr: [0.1]}\n")
    with pytest.raises(ConfigError, match="base config 'nowhere.yaml' not found"):
        load_spec(path)


def test_halving_rungs_and_max_epochs(write_spec):
    spec = load_spec(write_spec("parameters: {optimizer.lr: [0.1, 0.2]}\nhalving: {min_epochs: 1, eta: 3}\n"))
    assert spec.halving.rungs == [1, 3]  # 9 epochs: rungs below 9
    spec = load_spec(write_spec("parameters: {optimizer.lr: [0.1]}\nhalving: {min_epochs: 2, eta: 2, max_epochs: 16}\n"))
    assert spec.halving.rungs == [2, 4, 8]
    assert plan(spec)[0].config["train"]["epochs"] == 16


def test_rungs_keep_the_best_fraction():
    rungs = Rungs([1, 3], eta=3, goal="maximize")
    assert rungs.decide(1, 0.5) is None  # the first trial at a rung has nothing to lose to
    assert rungs.decide(1, 0.4) is not None  # best 1 of 2: 0.5
    assert rungs.decide(1, 0.6) is None  # new best
    assert "best 1 of 4" in rungs.decide(1, 0.55)
    assert rungs.decide(1, 0.3) is not None
    assert rungs.decide(1, 0.58) is None  # best 2 of 6: 0.6, 0.58
    losses = Rungs([1], eta=2, goal="minimize")
    assert losses.decide(1, 0.5) is None and losses.decide(1, 0.7) is not None and losses.decide(1, 0.2) is None
    assert losses.decide(1, float("nan")) is not None


def test_int_and_continuous_grids_with_n_points():
    assert Param("a", "loguniform", low=1e-4, high=1e-2, n=3).grid_values() == pytest.approx([1e-4, 1e-3, 1e-2])
    assert Param("b", "int", low=2, high=5).grid_values() == [2, 3, 4, 5]
    space = Space((Param("a", "uniform", low=0.0, high=1.0),))
    points, exhausted = space.sample(5, seed=0, base_lookup=lambda k: None)
    assert len(points) == 5 and not exhausted and all(0 <= p["a"] <= 1 for p in points)
    rng = np.random.default_rng(0)
    logs = [Param("c", "int", low=1, high=1000, log=True).sample(rng) for _ in range(200)]
    assert min(logs) >= 1 and max(logs) <= 1000 and np.median(logs) < 100  # log scale favours small values


def test_an_int_grid_on_a_log_scale_is_geometric():
    assert Param("units", "int", low=1, high=1000, log=True, n=4).grid_values() == [1, 10, 100, 1000]
    assert Param("units", "int", low=1, high=1000, n=4).grid_values() == [1, 334, 667, 1000]


def test_random_ints_reach_both_ends_of_their_range():
    # next to a continuous parameter the int is drawn, not enumerated: high is included too
    space = Space((Param("layers", "int", low=1, high=2), Param("lr", "uniform", low=0.0, high=1.0)))
    points, _ = space.sample(40, seed=0, base_lookup=lambda k: None)
    assert {p["layers"] for p in points} == {1, 2}


def test_random_points_of_a_continuous_space_take_a_zip_group_s_row_together():
    rows = ((16, 0.1), (64, 0.2), (256, 0.3))
    space = Space((Param("lr", "uniform", low=0.0, high=1.0),), (ZipGroup(("units", "dropout"), rows),))
    points, _ = space.sample(30, seed=0, base_lookup=lambda k: None)
    assert {(p["units"], p["dropout"]) for p in points} == set(rows)


def test_the_size_of_a_discrete_space_counts_every_parameter_and_zip_group():
    ten = Param("a", "int", low=0, high=9), Param("b", "int", low=0, high=9)
    assert Space(ten).size_at_most(100) and not Space(ten).size_at_most(99)
    zipped = Space(ten, (ZipGroup(("c", "d"), ((1, 2), (3, 4), (5, 6))),))
    assert zipped.size_at_most(300) and not zipped.size_at_most(299)
    assert not Space(ten).size_at_most(5)


def test_equal_points_have_one_key_whatever_their_order():
    assert point_key({"a": 1, "b": [2, 3]}) == point_key({"b": [2, 3], "a": 1})
    assert point_key({"a": 1}) != point_key({"a": 1.5})


def test_every_mistake_of_a_spec_is_named_in_one_message_with_exit_2(write_spec, nnexp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the base config's store, runs/, would be made here
    path = write_spec("""
        method: random
        n_trials: 0
        repeat: 2
        parameters:
          optimizer.lr: {distribution: loguniform, low: 0, high: 0.1}
          optimizer.name: {values: [adam, sgd], when: {optimizer.nam: x}}
    """)
    code, out, err = nnexp("sweep", path)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"error: {path}: 4 problems:"
    assert lines[1:] == ["  unknown key 'repeat'; did you mean 'repeats'?",
                         "  'n_trials' must be >= 1, got 0",
                         "  parameters.optimizer.lr: a log scale needs low > 0, got 0.0",
                         "  parameters.optimizer.name.when: 'optimizer.nam' is neither a parameter declared before "
                         "it nor a key of the base config"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml", "spec.yaml"]  # nothing written


def test_a_wrong_part_of_a_spec_does_not_hide_the_other_parts(write_spec):
    with pytest.raises(ConfigError) as info:
        load_spec(write_spec("""
            seeds: [1, 1]
            halving: {rule: median, eta: 2, min_epochs: 0}
            zip: [{optimizer.lr: [0.1, 0.2], data.batch_size: [32]}]
            metrics: [val_accuracy, {name: flops}]
        """))
    problems = info.value.problems
    assert len(problems) == 5, problems
    for part in ("'seeds' lists a seed twice", "halving.eta is for the asha", "'halving.min_epochs' must be >= 1",
                 "zip[0]: the lists must be equally long", "metrics[1].name is 'flops'"):
        assert sum(part in p for p in problems) == 1, (part, problems)
