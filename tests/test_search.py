"""Model-based search (method: tpe), several metrics and their Pareto front,
and the early-stopping rules beside ASHA (median, hyperband)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nnexp.compare.pareto import mark_front, pareto_front
from nnexp.sweep import SweepRunner, load_spec, plan
from nnexp.sweep.pruning import Hyperband, MedianRule, make_pruner
from nnexp.sweep.space import Param, Space, ZipGroup
from nnexp.sweep.spec import base_lookup
from nnexp.sweep.tpe import COMPLETE, FAILED, PRUNED, RUNNING, TpeSearch, Told

BASE = """\
data: {{dataset: mnist, val_size: 200, batch_size: 64, train_subset: {subset}}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 16}}
    - {{type: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: adam, lr: 0.002}}
train: {{epochs: {epochs}, seed: 0, eval_batch_size: 500}}
tracking: {{store: {store}, plots: false}}
"""

TPE = """
    method: tpe
    n_trials: 6
    startup_trials: 2
    seed: 5
    parameters:
      optimizer.lr: {distribution: loguniform, low: 1.0e-4, high: 0.05}
      model.layers.1.units: {distribution: int, low: 8, high: 48, log: true}
      data.batch_size: [32, 64, 128]
"""


@pytest.fixture
def sweep_dir(tmp_path, store):
    def make(spec, subset=300, epochs=1, name="spec.yaml"):
        (tmp_path / "base.yaml").write_text(BASE.format(subset=subset, epochs=epochs, store=store))
        path = tmp_path / name
        path.write_text("base: base.yaml\n" + textwrap.dedent(spec))
        return path
    return make


def proposals(store: Path) -> list[dict]:
    """plan.json of the one sweep in ``store``: (index, params, seed) of each proposed trial."""
    (plan_path,) = (store / "sweeps").glob("*/plan.json")
    return [{k: t[k] for k in ("index", "params", "seed")} for t in json.loads(plan_path.read_text())]


def summaries(store: Path) -> dict[int, dict]:
    out = {}
    for path in sorted(store.glob("*-t[0-9][0-9][0-9]")):
        if (path / "summary.json").exists():
            s = json.loads((path / "summary.json").read_text())
            out[s["trial"]] = s
    return out


# ------------------------------------------------------------------ pareto --


def test_pareto_front_on_a_hand_made_example():
    # accuracy (maximize), parameters (minimize)
    runs = np.array([
        [0.98, 500.0],   # 0 front: the most accurate
        [0.97, 100.0],   # 1 front
        [0.97, 100.0],   # 2 front: a tie with 1 dominates neither
        [0.96, 200.0],   # 3 dominated by 1 (worse on both)
        [0.97, 150.0],   # 4 dominated by 1 (equal accuracy, more parameters)
        [0.90, 10.0],    # 5 front: the smallest
        [np.nan, 1.0],   # 6 no accuracy: never on the front, dominates nothing
        [0.98, 500.0 + 1e-9],  # 7 dominated by 0
    ])
    front = pareto_front(runs, ["maximize", "minimize"])
    assert front.tolist() == [True, True, True, False, False, True, False, False]
    # the same runs with both goals flipped: the other corner
    flipped = pareto_front(runs, ["minimize", "maximize"])
    assert flipped.tolist() == [False, False, False, True, False, True, False, True]
    # three metrics: a run best on the third alone joins the front
    third = np.array([[0.98, 500, 9.0], [0.96, 200, 1.0], [0.97, 100, 5.0], [0.96, 210, 1.0]])
    assert pareto_front(third, ["maximize", "minimize", "minimize"]).tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="goals"):
        pareto_front(runs, ["maximize", "smallest"])


def test_the_pareto_column_of_a_comparison_table():
    from types import SimpleNamespace

    rows = [{"id": "a", "val_accuracy": 0.9, "n_params": 10}, {"id": "b", "val_accuracy": 0.8, "n_params": 5},
            {"id": "c", "val_accuracy": 0.7, "n_params": 7}]
    table = SimpleNamespace(columns=["id", "val_accuracy", "n_params"], table_rows=rows)
    mark_front(table, [("metric.val_accuracy", "maximize"), ("metric.n_params", "minimize")])
    assert table.columns == ["id", "pareto", "val_accuracy", "n_params"]
    assert [row["pareto"] for row in rows] == [True, True, False]


# ----------------------------------------------------------------- pruning --


def test_median_rule_on_crafted_values():
    rule = MedianRule([1, 2], min_trials=2, goal="maximize")
    assert rule.decide(1, 0.5) is None and rule.decide(1, 0.1) is None  # fewer than 2 others: no judgement
    reason = rule.decide(1, 0.2)  # the median of 0.5 and 0.1 is 0.3
    assert reason and "median 0.3 of the 2 trials" in reason
    assert rule.decide(1, 0.4) is None  # the median of 0.5, 0.1, 0.2 is 0.2
    reason = rule.decide(1, 0.15)  # the median of 0.5, 0.1, 0.2, 0.4 is 0.3
    assert reason and "median 0.3 of the 4 trials" in reason
    assert rule.decide(2, 0.0) is None  # another epoch has its own values
    losses = MedianRule([1], min_trials=1, goal="minimize")
    assert losses.decide(1, 0.5) is None and losses.decide(1, 0.7) is not None and losses.decide(1, 0.4) is None
    assert losses.decide(1, float("nan")) is not None


def test_median_rule_prunes_a_value_below_the_median_once_enough_trials_reported():
    rule = MedianRule([3], min_trials=2, goal="maximize")
    rule.record(3, 0.5)
    rule.record(3, 0.7)
    assert rule.decide(3, 0.59) is not None  # median 0.6
    assert rule.decide(3, 0.61) is None


def test_hyperband_brackets_and_decisions():
    band = Hyperband([1, 3], eta=3, goal="maximize")  # max 9 epochs: brackets at 1, 3 and none
    # Hyperband's shares for s_max = 2: 9 points start at epoch 1, 5 at epoch 3, 3 train to the end
    assert [band.bracket(i) for i in range(17)] == [0] * 9 + [1] * 5 + [2] * 3
    assert band.bracket(17) == 0  # the cycle starts again
    assert band.epochs(0) == [1, 3] and band.epochs(9) == [3] and band.epochs(14) == []
    assert band.decide(1, 0.5, trial=0) is None
    assert band.decide(1, 0.4, trial=1) is not None  # bracket 0: best 1 of 2
    assert band.decide(3, 0.1, trial=9) is None  # bracket 1 has its own rung at epoch 3: the first there
    reason = band.decide(3, 0.05, trial=10)
    assert reason and "hyperband bracket 1" in reason
    repeated = Hyperband([1, 3], eta=3, goal="maximize", repeats=2)  # a point's repeats share a bracket
    assert [repeated.bracket(i) for i in (16, 17, 18, 19)] == [0, 0, 1, 1]


def test_make_pruner_follows_the_spec(sweep_dir):
    spec = load_spec(sweep_dir("parameters: {optimizer.lr: [0.1]}\nhalving: {rule: median, min_epochs: 2}\n",
                               epochs=5))
    rule = make_pruner(spec.halving, spec.goal)
    assert isinstance(rule, MedianRule) and rule.epochs() == [2, 3, 4] and rule.min_trials == 3
    spec = load_spec(sweep_dir("parameters: {optimizer.lr: [0.1]}\nhalving: {rule: hyperband, eta: 2}\n",
                               epochs=8))
    assert isinstance(make_pruner(spec.halving, spec.goal), Hyperband)


@pytest.mark.parametrize("rule", ["median", "hyperband"])
def test_a_resumed_sweep_replays_the_rule_and_decides_as_one_never_stopped(nnexp, sweep_dir, store, rule):
    """The later trials' folders removed: the rerun replays the earlier
    trials' epochs into the rule, so its decisions are the unstopped sweep's."""
    extra = "min_trials: 2" if rule == "median" else "eta: 2"
    spec = sweep_dir(f"""
        method: random
        n_trials: 8
        seed: 2
        parameters:
          optimizer.lr: {{distribution: loguniform, low: 1.0e-5, high: 0.01}}
        halving: {{rule: {rule}, min_epochs: 1, {extra}}}
    """, subset=300, epochs=4)
    code, out, err = nnexp("sweep", spec, "--workers", "1", "-q")
    assert code == 0, err
    whole = {t: s["status"] for t, s in summaries(store).items()}
    assert sorted(whole) == list(range(8)) and "pruned" in whole.values()
    assert {whole[t] for t in range(4, 8)} >= {"pruned"}
    for path in store.glob("*-t00[4-7]"):
        shutil.rmtree(path)
    code, out, err = nnexp("sweep", spec, "--workers", "1")
    assert code == 0, err
    assert "4 of 8 trials already finished, 4 to run" in err
    assert {t: s["status"] for t, s in summaries(store).items()} == whole
    reasons = [s["reason"] for s in summaries(store).values() if s["status"] == "pruned"]
    assert all(("median rule" if rule == "median" else "hyperband bracket") in r for r in reasons)


# --------------------------------------------------------------------- tpe --


def test_the_same_seed_proposes_the_same_trials(nnexp, sweep_dir, tmp_path):
    spec = sweep_dir(TPE)
    runs = []
    for name in ("a", "b"):
        code, out, err = nnexp("sweep", spec, "-j", "1", "-q", "--store", tmp_path / name)
        assert code == 0, err
        runs.append(proposals(tmp_path / name))
    assert len(runs[0]) == 6 and runs[0] == runs[1]
    other = load_spec(spec, seed=6)  # --seed: another sweep of the same spec
    assert other.seed == 6 and other.name == "spec-seed6" and other.id != load_spec(spec).id


def test_seed_on_a_grid_is_a_config_error(nnexp, sweep_dir, store):
    code, out, err = nnexp("sweep", sweep_dir("parameters: {optimizer.lr: [0.1, 0.2]}\n"), "--seed", "3")
    assert code == 2 and "--seed" in err and "is a grid" in err and not store.exists()


def test_a_proposal_depends_only_on_the_seed_the_index_and_the_history(sweep_dir):
    spec = load_spec(sweep_dir(TPE))
    search = TpeSearch(spec.space, ["maximize"], spec.seed, base_lookup(spec), startup=2)
    assert search.ask(0, []) != TpeSearch(spec.space, ["maximize"], spec.seed + 1, base_lookup(spec)).ask(0, [])
    points = [{"optimizer.lr": 0.001 * (i + 1), "model.layers.1.units": 8 + 4 * i, "data.batch_size": 64}
              for i in range(4)]
    history = [Told(points[0], COMPLETE, [0.5]), Told(points[1], PRUNED, intermediate={1: 0.2}),
               Told(points[2], FAILED), Told(points[3], COMPLETE, [0.7])]
    first = search.ask(4, history)
    again = TpeSearch(spec.space, ["maximize"], spec.seed, base_lookup(spec), startup=2)
    assert again.ask(4, history) == first  # a fresh searcher (a resumed sweep) proposes the same
    assert search.ask(5, history) != first  # another index: another draw
    other = history[:3] + [Told(points[3], COMPLETE, [0.1])]
    assert search.ask(4, other) != first  # the model learns from what it is told
    assert set(first) == {"optimizer.lr", "model.layers.1.units", "data.batch_size"}
    assert 1e-4 <= first["optimizer.lr"] <= 0.05 and first["data.batch_size"] in (32, 64, 128)
    assert search.ask(4, history[:2] + [Told(points[2], RUNNING)] + history[3:]) is not None


def test_the_start_up_points_are_random_search_s_first_points(sweep_dir):
    tpe_spec = load_spec(sweep_dir(TPE))
    random_spec = load_spec(sweep_dir(TPE.replace("method: tpe", "method: random").replace(
        "    startup_trials: 2\n", ""), name="random.yaml"))
    search = TpeSearch(tpe_spec.space, ["maximize"], tpe_spec.seed, base_lookup(tpe_spec), startup=2)
    random_points = [t.params for t in plan(random_spec)]
    assert [search.ask(i, []) for i in range(2)] == random_points[:2]


def test_a_killed_tpe_sweep_resumes_to_the_trials_of_one_never_killed(nnexp, sweep_dir, store, tmp_path):
    """SIGKILL to the driver and its worker while trial 2 trains (one worker),
    the same command again: the same proposals, statuses and values as a sweep
    run in one go -- the searcher rebuilt from the run folders."""
    spec = sweep_dir(TPE, subset=3000, epochs=2)
    env = dict(os.environ, NNEXP_STORE=str(store))
    driver = subprocess.Popen([sys.executable, "-m", "nnexp", "sweep", str(spec), "-j", "1", "-q"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while (summaries(store).get(2, {}).get("status") != "running" and driver.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    killed = summaries(store)
    assert 2 in killed and killed[2]["status"] == "running"  # killed mid-trial, recorded as nothing else
    assert len(proposals(store)) == 3
    code, out, err = nnexp("sweep", spec, "-j", "1", "-q")
    assert code == 0, err
    other = tmp_path / "other"
    code, out, err = nnexp("sweep", spec, "-j", "1", "-q", "--store", other)
    assert code == 0, err
    assert proposals(store) == proposals(other)
    resumed, whole = summaries(store), summaries(other)
    assert [(s["status"], s["final_val_accuracy"]) for s in resumed.values()] == \
           [(s["status"], s["final_val_accuracy"]) for s in whole.values()]
    assert resumed[2]["attempt"] == 2 and len(resumed) == 6


def test_conditional_parameters_and_repeats_under_tpe(nnexp, sweep_dir, store):
    spec_path = sweep_dir("""
        method: tpe
        n_trials: 4
        startup_trials: 2
        seed: 1
        repeats: 2
        parameters:
          optimizer.name: [adam, sgd]
          optimizer.lr: {distribution: loguniform, low: 1.0e-3, high: 0.1}
          optimizer.momentum: {distribution: uniform, low: 0.0, high: 0.9, when: {optimizer.name: sgd}}
    """)
    code, out, err = nnexp("sweep", spec_path, "-j", "2", "-q")
    assert code == 0, err
    trials = proposals(store)
    assert len(trials) == 8 and [t["seed"] for t in trials] == [0, 1] * 4
    names = set()
    for first, second in zip(trials[::2], trials[1::2]):
        assert first["params"] == second["params"]  # a point's repeats
        names.add(first["params"]["optimizer.name"])
        assert ("optimizer.momentum" in first["params"]) == (first["params"]["optimizer.name"] == "sgd")
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 4
    # the sampler is told each point's mean over its repeats
    spec = load_spec(spec_path)
    runner = SweepRunner(spec, plan(spec), store, workers=1, log=lambda *a: None, progress=False)
    runner.trials = runner.proposed_trials()
    told = runner.history(4)
    done = summaries(store)
    for point, t in enumerate(told):
        assert t.state == COMPLETE and t.point == trials[2 * point]["params"]
        mean = (done[2 * point]["final_val_accuracy"] + done[2 * point + 1]["final_val_accuracy"]) / 2
        assert t.values == [pytest.approx(mean, abs=1e-12)]


def test_batches_are_proposed_alike_with_one_worker_or_two(nnexp, sweep_dir, tmp_path):
    spec = sweep_dir(TPE.replace("n_trials: 6", "n_trials: 6\n    batch: 2"))
    for workers in ("1", "2"):
        code, out, err = nnexp("sweep", spec, "-j", workers, "-q", "--store", tmp_path / f"j{workers}")
        assert code == 0, err
    assert proposals(tmp_path / "j1") == proposals(tmp_path / "j2")


def test_tpe_with_halving_tells_pruned_trials_as_pruned(nnexp, sweep_dir, store):
    spec_path = sweep_dir(TPE.replace("n_trials: 6", "n_trials: 5") + "    halving: {min_epochs: 1, eta: 3}\n",
                          epochs=3)
    code, out, err = nnexp("sweep", spec_path, "-j", "1", "-q")
    assert code == 0, err
    done = summaries(store)
    pruned = [t for t, s in done.items() if s["status"] == "pruned"]
    assert pruned
    spec = load_spec(spec_path)
    runner = SweepRunner(spec, [], store, workers=1, log=lambda *a: None, progress=False)
    runner.trials = runner.proposed_trials()
    told = runner.history(5)
    for t in pruned:
        (run,) = store.glob(f"*-t{t:03d}")
        rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
        column = rows[0].index("val_accuracy")
        curve = {int(r[0]): float(r[column]) for r in rows[1:]}
        assert told[t].state == PRUNED and told[t].intermediate == curve
        assert sorted(curve) == list(range(1, done[t]["epochs_completed"] + 1))
    assert {told[t].state for t in done if t not in pruned} == {COMPLETE}


def test_without_optuna_method_tpe_exits_2_with_the_pip_command(nnexp, sweep_dir, store, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna fails as if not installed
    code, out, err = nnexp("sweep", sweep_dir(TPE), "-q")
    assert code == 2
    assert 'pip install "nnexp[tpe]"' in err and "Traceback" not in err
    assert not store.exists()  # nothing written


def test_a_multi_objective_sweep_is_searched_and_compared_on_its_pareto_front(nnexp, sweep_dir, store, tmp_path):
    spec = sweep_dir(TPE.replace("n_trials: 6", "n_trials: 5")
                     + "    metrics: [{name: val_accuracy, goal: maximize}, {name: params, goal: minimize}]\n")
    code, out, err = nnexp("sweep", spec, "-j", "1", "-q")
    assert code == 0, err
    (state_path,) = (store / "sweeps").glob("*/sweep.json")
    state = json.loads(state_path.read_text())
    assert state["metrics"] == [{"name": "val_accuracy", "goal": "maximize"}, {"name": "params", "goal": "minimize"}]
    code, out, err = nnexp("compare", "--sweep", state["id"], "--store", store, "--json",
                           "--plots", tmp_path / "plots")
    assert code == 0, err
    rows = json.loads(out)
    values = np.array([[r["val_accuracy"], r["n_params"]] for r in rows])
    assert [r["pareto"] for r in rows] == pareto_front(values, ["maximize", "minimize"]).tolist()
    assert any(r["pareto"] for r in rows)
    assert (tmp_path / "plots" / "pareto_front.png").stat().st_size > 0
    code, out, err = nnexp("compare", "--sweep", state["id"], "--store", store, "--best-so-far", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    accuracy = [r["val_accuracy"] for r in sorted(rows, key=lambda r: int(r["id"].rsplit("-t", 1)[1]))]
    assert row["trials"] == 5 and row["val_accuracy@5"] == max(accuracy)


def test_best_so_far_of_several_sweeps_side_by_side():
    import pandas as pd

    from nnexp.compare.best_so_far import best_so_far_table

    runs = pd.DataFrame({
        "sweep": ["b"] * 6 + ["a"] * 3,
        "trial": [5, 4, 3, 2, 1, 0, 0, 1, 2],  # any order: trial numbers decide
        "status": ["completed", "completed", "pruned", "completed", "completed", "completed"] + ["completed"] * 3,
        "metric.val_loss": [0.1, 0.5, 0.01, 0.3, 0.4, 0.6, 0.9, 0.2, 0.8],
    })
    table = best_so_far_table(runs, "metric.val_loss", "minimize", every=2)
    assert list(table.columns) == ["sweep", "trials", "val_loss@2", "val_loss@4", "val_loss@6"]
    assert table["sweep"].tolist() == ["a", "b"]
    assert table.iloc[1, 2:].tolist() == [0.4, 0.3, 0.1]  # b: the pruned 0.01 does not count
    assert table.iloc[0, 2] == 0.2 and np.isnan(table.iloc[0, 3:]).all()  # a has 3 trials: not 4 or 6


def test_a_trial_whose_metric_is_not_finite_does_not_count_toward_the_median():
    rule = MedianRule([1], min_trials=2, goal="maximize")
    assert rule.decide(1, float("nan")) is not None  # pruned, and not one of the trials to compare with
    assert rule.decide(1, 0.5) is None and rule.decide(1, 0.7) is None  # fewer than 2 finite others
    reason = rule.decide(1, 0.4)
    assert reason and "median 0.6 of the 2 trials" in reason


def test_a_hyperband_reason_is_the_halving_reason_with_its_bracket():
    band = Hyperband([1, 3], eta=3, goal="maximize")
    band.decide(3, 0.1, trial=9)
    assert band.decide(3, 0.05, trial=10) == ("pruned at epoch 3: 0.05 is not in the best 1 of 2 trials at this "
                                              "rung (halving, eta 3, hyperband bracket 1)")


def test_make_pruner_gives_each_trial_its_own_bracket_without_repeats(sweep_dir):
    spec = load_spec(sweep_dir("parameters: {optimizer.lr: [0.1]}\nhalving: {rule: hyperband, eta: 2}\n",
                               epochs=8))
    band = make_pruner(spec.halving, spec.goal)
    assert [band.bracket(i) for i in range(len(band.cycle))] == band.cycle


def test_the_sampler_is_told_only_values_the_space_can_hold():
    space = Space((Param("lr", "uniform", low=0.0, high=1.0), Param("bs", "choice", values=(32, 64)),
                   Param("units", "int", low=1, high=4)), (ZipGroup(("a", "b"), ((1, 2), (3, 4))),))
    search = TpeSearch(space, ["maximize"], 0, lambda key: None, startup=0)
    params, dists = search.encode({"a": 3, "b": 4, "lr": 0.5, "bs": 64, "units": 2})
    assert params == {"zip[0]": 1, "lr": 0.5, "bs": 1, "units": 2} and set(dists) == set(params)
    # a zip row, a choice, a range the space does not have; a flag or a text where a number goes
    assert search.encode({"a": 3, "b": 5, "lr": 1.5, "bs": 48, "units": True})[0] == {}
    assert search.encode({"lr": "0.5", "units": 9})[0] == {}


def test_a_pruned_trial_is_told_with_its_values_per_epoch():
    space = Space((Param("lr", "uniform", low=0.0, high=1.0),))
    search = TpeSearch(space, ["maximize"], 0, lambda key: None, startup=0)
    told = search._frozen(Told({"lr": 0.5}, PRUNED, intermediate={1: 0.2, 2: 0.3}))
    assert told.state == search.optuna.trial.TrialState.PRUNED and told.intermediate_values == {1: 0.2, 2: 0.3}
