"""nnexp compare and nnexp.load_runs on hand-made run folders with known numbers."""

import csv
import json
import math
import re

import pytest

import nnexp
from nnexp.config import dump_yaml, validate

LAYERS = [{"type": "flatten"}, {"type": "dense", "units": 16}, {"type": "relu"}, {"type": "dense", "units": 10}]


def fake_run(store, run_id, lr, seed, val_acc, name="adam", sweep=None, tags=(), test_acc=None):
    """A run folder as the trainer writes it; val_acc is the per-epoch curve."""
    cfg = validate({"model": {"layers": LAYERS}, "optimizer": {"name": name, "lr": lr},
                    "train": {"seed": seed, "epochs": len(val_acc)}, "tracking": {"tags": list(tags)}})
    path = store / run_id
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(dump_yaml(cfg))
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"])
        for epoch, acc in enumerate(val_acc, start=1):
            w.writerow([epoch, 1.0 / epoch, acc, 1.0 - acc, acc, lr, 1.0])
    summary = {"id": run_id, "name": run_id, "status": "completed", "seed": seed, "tags": list(tags),
               "start_time": 1000.0 + len(list(store.iterdir())), "params": 12730,
               "test_accuracy": val_acc[-1] if test_acc is None else test_acc, "train_seconds": 2.0}
    if sweep:
        summary.update(sweep=sweep, trial=int(run_id.rsplit("t", 1)[1]), trial_params={"optimizer.lr": lr})
    (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def grid_store(store):
    """lr 0.001 and 0.01, three seeds each; final val accuracies chosen by hand."""
    finals = {(0.001, 0): 0.90, (0.001, 1): 0.92, (0.001, 2): 0.94, (0.01, 0): 0.95, (0.01, 1): 0.96, (0.01, 2): 0.97}
    for i, ((lr, seed), acc) in enumerate(finals.items()):
        fake_run(store, f"s-aaaa-t{i:03d}", lr, seed, [0.5, acc - 0.1, acc], sweep="s-aaaa")
    sweeps = store / "sweeps" / "s-aaaa"
    sweeps.mkdir(parents=True)
    (sweeps / "sweep.json").write_text(json.dumps({"id": "s-aaaa", "name": "s", "metric": "val_accuracy",
                                                   "goal": "maximize", "status": "completed", "trials": 6}))
    return store


def test_grouped_over_seeds_with_mean_std_ci(nnexp, grid_store):
    code, out, err = nnexp("compare", "--sweep", "s", "--json", "--store", grid_store)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["optimizer.lr"] for r in rows] == [0.01, 0.001]  # best first
    best = rows[0]
    # hand computed: mean(0.95, 0.96, 0.97) = 0.96, sd = 0.01, ci95 = t(0.975, 2) * 0.01 / sqrt(3)
    assert best["val_accuracy"] == pytest.approx(0.96)
    assert best["val_accuracy std"] == pytest.approx(0.01)
    assert best["val_accuracy ci95"] == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    assert best["val_accuracy n"] == 3 and best["runs"] == 3
    assert rows[1]["val_accuracy"] == pytest.approx(0.92) and rows[1]["val_accuracy std"] == pytest.approx(0.02)
    assert "train.seed" not in best and "optimizer.name" not in best  # only what differs


def test_aggregates_best_and_mean_over_epochs(nnexp, grid_store):
    code, out, _ = nnexp("compare", "--sweep", "s", "--json", "--agg", "mean", "--no-group", "--store", grid_store)
    rows = {r["id"]: r for r in json.loads(out)}
    # curve 0.5, 0.85, 0.95 for trial 3
    assert rows["s-aaaa-t003"]["mean_val_accuracy"] == pytest.approx((0.5 + 0.85 + 0.95) / 3)
    code, out, _ = nnexp("compare", "--sweep", "s", "--json", "--agg", "best", "--sort", "val_loss",
                         "--no-group", "--store", grid_store)
    rows = json.loads(out)
    assert rows[0]["id"] == "s-aaaa-t005" and rows[0]["best_val_loss"] == pytest.approx(0.03)  # ascending loss


def test_where_filters_on_params_metrics_and_tags(nnexp, store):
    fake_run(store, "a", 0.001, 0, [0.96, 0.98], name="adam", tags=["baseline"])
    fake_run(store, "b", 0.1, 0, [0.90, 0.95], name="sgd")
    fake_run(store, "c", 0.002, 0, [0.90, 0.96], name="adam")
    code, out, err = nnexp("compare", "--where", "optimizer.name == 'adam' and val_accuracy > 0.97", "--json",
                           "--store", store)
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == ["a"]
    code, out, _ = nnexp("compare", "--where", "'baseline' in tags or optimizer.lr >= 1e-1", "--csv",
                         "--store", store)
    lines = out.strip().splitlines()
    assert lines[0].startswith("id,status,tags,optimizer.lr,optimizer.name") and len(lines) == 3


@pytest.mark.parametrize("where, message", [
    ("optimizr.name == 'adam'", "did you mean 'optimizer.name'"),
    ("val_accuracy >", "expected"),
    ("(val_accuracy > 0.9", "never closed"),
    ("__import__('os').system('true')", "--where"),
])
def test_invalid_filters_exit_2_with_one_message(nnexp, store, where, message):
    fake_run(store, "a", 0.001, 0, [0.9])
    code, out, err = nnexp("compare", "--where", where, "--store", store)
    assert code == 2 and message in err and "Traceback" not in err and out == ""


def test_runs_by_reference_and_markdown(nnexp, store):
    fake_run(store, "first-run", 0.001, 0, [0.9])
    fake_run(store, "second-run", 0.002, 0, [0.95])
    fake_run(store, "third-run", 0.004, 0, [0.97])
    code, out, _ = nnexp("compare", "first-run", "second", "--markdown", "--store", store)
    lines = out.strip().splitlines()
    assert lines[0].startswith("| id | status | optimizer.lr |") and lines[1].startswith("| --- |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["second-run", "first-run"]
    assert "95.00%" in lines[2]


def test_nothing_selected_and_unknown_sweep_are_clear_errors(nnexp, store):
    fake_run(store, "a", 0.001, 0, [0.9])
    code, _, err = nnexp("compare", "--where", "val_accuracy > 0.99", "--store", store)
    assert code == 1 and "no runs to compare" in err
    code, _, err = nnexp("compare", "--sweep", "nope", "--store", store)
    assert code == 1 and "no sweep 'nope'" in err
    code, _, err = nnexp("compare", "--sort", "val_acuracy", "--store", store)
    assert code == 2 and "val_acuracy" in err


def started_sweep(store, lrs):
    """A sweep whose trials are training their first epoch: no metric recorded yet."""
    for i, lr in enumerate(lrs):
        path = fake_run(store, f"s-aaaa-t{i:03d}", lr, i, [0.9], sweep="s-aaaa")
        (path / "metrics.csv").write_text("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n")
        summary = json.loads((path / "summary.json").read_text())
        summary.update(status="running", test_accuracy=None)
        (path / "summary.json").write_text(json.dumps(summary))
    sweeps = store / "sweeps" / "s-aaaa"
    sweeps.mkdir(parents=True)
    (sweeps / "sweep.json").write_text(json.dumps({"id": "s-aaaa", "name": "s", "metric": "val_accuracy",
                                                   "goal": "maximize", "status": "running", "trials": len(lrs)}))


@pytest.mark.parametrize("lrs", [(0.001, 0.01), (0.001, 0.001)], ids=["two settings", "one setting twice"])
def test_runs_before_their_first_epoch_compare_without_an_error(nnexp, store, tmp_path, lrs):
    """Freshly started runs have no val_accuracy yet: the default sort has nothing
    to sort on and keeps their order; only a --sort the user wrote must exist."""
    started_sweep(store, lrs)
    code, out, err = nnexp("compare", "--json", "--store", store)
    assert code == 0, err
    rows = json.loads(out)
    if lrs[0] == lrs[1]:  # one setting over two seeds: one group of two runs
        assert [r["runs"] for r in rows] == [2]
    else:
        assert [r["id"] for r in rows] == ["s-aaaa-t000", "s-aaaa-t001"]
    code, out, err = nnexp("compare", "--sweep", "s", "--best-so-far", "--json", "--store", store)
    assert code == 0, err
    assert json.loads(out) == [{"sweep": "s-aaaa", "trials": 2, "val_accuracy@2": None}]
    code, _, err = nnexp("compare", "--sweep", "s", "--plots", tmp_path / "plots", "--report", tmp_path / "r.html",
                         "--store", store)
    assert code == 0 and "no run has val_accuracy yet: its plots are left out" in err, err
    assert "2 runs; sorted by metric.val_accuracy" in (tmp_path / "r.html").read_text()
    code, _, err = nnexp("compare", "--sort", "val_accuracy", "--store", store)
    assert code == 2 and "--sort: no metric or parameter 'val_accuracy'" in err


def test_the_dashboard_shows_a_sweep_before_its_first_epoch(store):
    from nnexp.ui.api import Api
    from nnexp.ui.snapshot import StoreSnapshot

    started_sweep(store, (0.001, 0.01))
    snapshot = StoreSnapshot(store)
    snapshot.load()
    api = Api(store, snapshot)
    sweep = api.sweep("s-aaaa")
    assert [t["status"] for t in sweep["trials"]] == ["running", "running"]
    assert sweep["runs"] == ["s-aaaa-t000", "s-aaaa-t001"]  # the trials' parameters, nothing to rank yet
    assert api.compare({"sweep": "s-aaaa"})["runs"] == ["s-aaaa-t000", "s-aaaa-t001"]


def test_load_runs_gives_flat_param_and_metric_columns(grid_store):
    df = nnexp.load_runs(grid_store)
    assert len(df) == 6 and list(df["id"]) == sorted(df["id"])
    assert {"param.optimizer.lr", "param.train.seed", "metric.val_accuracy", "metric.best_val_accuracy",
            "metric.test_accuracy", "sweep", "status"} <= set(df.columns)
    means = df.groupby("param.optimizer.lr")["metric.val_accuracy"].mean()
    assert means[0.01] == pytest.approx(0.96) and means[0.001] == pytest.approx(0.92)
    only = nnexp.load_runs(grid_store, where="optimizer.lr == 0.01 and train.seed > 0")
    assert sorted(only["param.train.seed"]) == [1, 2]


def test_plots_and_report_are_written(nnexp, grid_store, tmp_path):
    report = tmp_path / "report.html"
    code, out, err = nnexp("compare", "--sweep", "s", "--plots", tmp_path / "plots", "--report", report,
                           "--store", grid_store)
    assert code == 0, err
    pngs = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"learning_curves.png", "best_so_far.png"} <= pngs and any(n.startswith("metric_vs_") for n in pngs)
    html = report.read_text()
    charts = json.loads(re.search(r'<script type="application/json" id="nnexp-charts">(.*?)</script>', html,
                                  re.DOTALL).group(1))
    assert {"curves", "best-so-far", "metric-vs-optimizer.lr"} <= {c["id"] for c in charts} and "s-aaaa" in html
    assert "<img" not in html  # interactive charts, not images
    assert ">p_holm<" in html and ">paired<" in html and "adjusted over the 1 group tested" in html


def test_varied_params_skip_keys_that_only_follow_another():
    from nnexp.compare.table import varied_params

    columns = {
        "param.optimizer.name": ["adam", "sgd", "adam"],
        "param.optimizer.beta1": [0.9, None, 0.9],  # exists for adam only: not a difference of its own
        "param.optimizer.lr": [0.1, 0.1, 0.1],
        "param.train.seed": [0, 1, 2],
        "param.model.layers.1.units": [16, 32, 64],
        "param.model.layers": ["dense(16)", "dense(32)", "dense(64)"],  # text of the line above
    }
    rows = [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(3)]
    assert varied_params(rows) == ["param.model.layers.1.units", "param.optimizer.name"]


def test_an_option_that_differs_only_by_each_optimizers_default_is_no_difference(nnexp, store, tmp_path):
    """sgd fills in momentum 0.0, momentum 0.9: a sweep of optimizer.name varies the name alone, in the
    table, the charts of the report and the plots alike; a momentum a person set is a difference."""
    for i, (name, seed) in enumerate([(n, s) for n in ("sgd", "momentum") for s in (0, 1)]):
        path = fake_run(store, f"o-bbbb-t{i:03d}", 0.01, seed, [0.5, 0.9 + 0.01 * i], name=name, sweep="o-bbbb")
        summary = json.loads((path / "summary.json").read_text())
        summary["trial_params"] = {"optimizer.name": name}
        (path / "summary.json").write_text(json.dumps(summary))
    (store / "sweeps" / "o-bbbb").mkdir(parents=True)
    (store / "sweeps" / "o-bbbb" / "sweep.json").write_text(json.dumps(
        {"id": "o-bbbb", "name": "o", "metric": "val_accuracy", "goal": "maximize", "status": "completed"}))
    code, out, err = nnexp("compare", "--sweep", "o", "--json", "--report", tmp_path / "r.html", "--plots",
                           tmp_path / "plots", "--store", store)
    assert code == 0, err
    assert [k for k in json.loads(out)[0] if k.startswith("optimizer.")] == ["optimizer.name"]
    html = (tmp_path / "r.html").read_text()
    charts = json.loads(re.search(r'<script type="application/json" id="nnexp-charts">(.*?)</script>', html,
                                  re.DOTALL).group(1))
    assert "metric-vs-optimizer.name" in {c["id"] for c in charts}
    assert not [c["id"] for c in charts if "momentum" in c["id"]]
    assert not [p.name for p in (tmp_path / "plots").iterdir() if "momentum" in p.name]

    for i, device in enumerate(("cpu", "gpu")):  # on the GPU the config resolves model.engine to reference
        path = fake_run(store, f"d-cccc-t{i:03d}", 0.01, 0, [0.5, 0.8], sweep="d-cccc")
        config = (path / "config.yaml").read_text()
        if device == "gpu":
            config = config.replace("device: cpu", "device: gpu").replace("engine: fast", "engine: reference")
        (path / "config.yaml").write_text(config)
        summary = json.loads((path / "summary.json").read_text())
        (path / "summary.json").write_text(json.dumps(dict(summary, trial_params={"train.device": device})))
    code, out, err = nnexp("compare", "--where", "sweep == 'd-cccc'", "--json", "--store", store)
    assert code == 0, err
    assert [k for k in json.loads(out)[0] if "." in k] == ["train.device"]

    for name in ("sgd", "momentum"):  # runs of no sweep
        fake_run(store, f"plain-{name}", 0.01, 0, [0.5, 0.8], name=name)
    code, out, err = nnexp("compare", "plain-sgd", "plain-momentum", "--json", "--store", store)
    assert code == 0, err
    assert [k for k in json.loads(out)[0] if k.startswith("optimizer.")] == ["optimizer.name"]
    config = (store / "plain-momentum" / "config.yaml").read_text()
    (store / "plain-momentum" / "config.yaml").write_text(config.replace("momentum: 0.9", "momentum: 0.5"))
    code, out, err = nnexp("compare", "plain-sgd", "plain-momentum", "--json", "--store", store)
    assert code == 0, err
    assert [k for k in json.loads(out)[0] if k.startswith("optimizer.")] == ["optimizer.momentum", "optimizer.name"]


def test_summary_fields_as_text():
    from nnexp.compare.fmt import summary_text
    from nnexp.timestamps import timestamp

    assert summary_text("start_time", 1797000000.25) == timestamp(1797000000.25)
    assert summary_text("best_val_value", 0.9512, {"best_val_metric": "val_accuracy"}) == "95.12%"
    assert summary_text("best_val_value", 0.1234567, {"best_val_metric": "val_loss"}) == "0.1235"
    assert summary_text("train_seconds", 12345.6) == "12,346" and summary_text("train_seconds", 1.68392) == "1.684"
    assert summary_text("params", 535818) == "535,818" and summary_text("pid", 28616) == "28616"
    assert summary_text("versions", {"python": "3.11.7", "numpy": "2.4.6"}) == "python 3.11.7, numpy 2.4.6"
    assert summary_text("input_shape", [1, 28, 28]) == "1, 28, 28" and summary_text("reason", None) == "-"


def test_an_accuracy_reads_the_same_in_runs_show_compare_and_sweeps(nnexp, grid_store):
    code, out, _ = nnexp("show", "s-aaaa-t005", "--store", grid_store)
    assert "test_accuracy         97.00%" in out.splitlines()
    code, out, _ = nnexp("runs", "--store", grid_store)
    assert "97.00%" in [line for line in out.splitlines() if "s-aaaa-t005" in line][0].split()
    code, out, _ = nnexp("compare", "s-aaaa-t005", "s-aaaa-t000", "--store", grid_store)
    assert "97.00%" in [line for line in out.splitlines() if line.startswith("s-aaaa-t005")][0].split()
    state = grid_store / "sweeps" / "s-aaaa" / "sweep.json"
    state.write_text(json.dumps(dict(json.loads(state.read_text()), best={"trial": 5, "value": 0.97})))
    code, out, _ = nnexp("sweeps", "--store", grid_store)
    assert "val_accuracy 97.00%" in out


def test_runs_listing_takes_the_same_selection(nnexp, grid_store):
    code, out, _ = nnexp("runs", "--where", "optimizer.lr == 0.01", "--json", "--store", grid_store)
    assert code == 0 and sorted(r["seed"] for r in json.loads(out)) == [0, 1, 2]
    code, out, _ = nnexp("runs", "--sweep", "s", "--store", grid_store)
    assert code == 0 and len(out.strip().splitlines()) == 1 + 6
    code, _, err = nnexp("runs", "--where", "optimizer.lr ==", "--store", grid_store)
    assert code == 2 and "expected a value" in err


@pytest.fixture
def three_groups(store):
    """lr 0.01 (best, seeds 0-2), 0.001 (the same seeds: paired) and 0.1 (seeds 0-3: Welch)."""
    finals = {(0.01, 0): 0.95, (0.01, 1): 0.96, (0.01, 2): 0.975, (0.001, 0): 0.90, (0.001, 1): 0.92,
              (0.001, 2): 0.94, (0.1, 0): 0.93, (0.1, 1): 0.96, (0.1, 2): 0.94, (0.1, 3): 0.955}
    for i, ((lr, seed), acc) in enumerate(finals.items()):
        fake_run(store, f"g-{i:02d}", lr, seed, [0.5, acc])
    return store


def test_every_group_is_tested_against_the_best(nnexp, three_groups):
    from scipy import stats

    code, out, err = nnexp("compare", "--json", "--store", three_groups)
    assert code == 0, err
    rows = {r["optimizer.lr"]: r for r in json.loads(out)}
    assert rows[0.01]["test"] == "ref" and rows[0.01]["p"] is None
    paired = stats.ttest_rel([0.90, 0.92, 0.94], [0.95, 0.96, 0.975])
    assert rows[0.001]["test"] == "paired" and rows[0.001]["p"] == pytest.approx(paired.pvalue, rel=1e-9)
    low, high = paired.confidence_interval()
    assert (rows[0.001]["val_accuracy diff_low"], rows[0.001]["val_accuracy diff_high"]) == (
        pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    welch = stats.ttest_ind([0.93, 0.96, 0.94, 0.955], [0.95, 0.96, 0.975], equal_var=False)
    assert rows[0.1]["test"] == "welch" and rows[0.1]["p"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert rows[0.1]["val_accuracy diff"] == pytest.approx(0.94625 - 0.961666666, abs=1e-8)
    smaller, larger = sorted([rows[0.001]["p"], rows[0.1]["p"]])
    assert sorted([rows[0.001]["p_holm"], rows[0.1]["p_holm"]]) == pytest.approx([2 * smaller, max(2 * smaller,
                                                                                                    larger)])
    assert isinstance(rows[0.1]["seeds_80"], int) and rows[0.1]["seeds_80"] > 3

    code, out, err = nnexp("compare", "--store", three_groups)
    header = re.split(r"\s{2,}", out.splitlines()[0])
    assert header[-7:] == ["test", "diff", "diff 95% CI", "p", "p (Holm)", "effect", "seeds@80%"]
    assert "ref" in out and "paired" in out and "welch" in err and "Holm" in err
    code, out, _ = nnexp("compare", "--csv", "--store", three_groups)
    assert "val_accuracy diff_low" in out.splitlines()[0] and ",paired," in out
    code, out, _ = nnexp("compare", "--markdown", "--store", three_groups)
    assert "| diff 95% CI |" in out.splitlines()[0]


def test_the_tests_read_as_one_line_each_with_their_verdict(three_groups):
    from scipy import stats

    from nnexp.compare.cli import comparison, test_lines
    from nnexp.compare.select import select_runs

    records = select_runs(three_groups).records
    reference, welch, paired = test_lines(comparison(records))
    assert reference == "reference: optimizer.lr=0.01 (3 runs, val_accuracy 96.17%)"
    p_paired = stats.ttest_rel([0.90, 0.92, 0.94], [0.95, 0.96, 0.975]).pvalue
    p_welch = stats.ttest_ind([0.93, 0.96, 0.94, 0.955], [0.95, 0.96, 0.975], equal_var=False).pvalue
    assert p_paired < 0.025 < 0.05 < p_welch  # Holm: the smaller doubled, still below 0.05
    assert welch.startswith("optimizer.lr=0.1: Welch's t-test, val_accuracy -1.54pp (95% CI -")
    assert welch.endswith(f"p = {p_welch:.3g}, Holm {p_welch:.3g}: no clear difference at the 5% level")
    assert paired.startswith("optimizer.lr=0.001: paired t-test over the seeds both ran, val_accuracy -4.17pp")
    assert paired.endswith(f"p = {p_paired:.3g}, Holm {2 * p_paired:.3g}: a difference at the 5% level")


@pytest.mark.parametrize("baseline, reference", [("3", 0.001), ("lr=0.001", 0.001), ("optimizer.lr=0.1", 0.1),
                                                 ("param.optimizer.lr=1e-1", 0.1)])
def test_baseline_names_the_reference_by_row_or_values(nnexp, three_groups, baseline, reference):
    code, out, err = nnexp("compare", "--baseline", baseline, "--json", "--store", three_groups)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["optimizer.lr"] for r in rows if r["test"] == "ref"] == [reference]
    assert all(r["test"] in ("paired", "welch") for r in rows if r["optimizer.lr"] != reference)


@pytest.mark.parametrize("baseline, message", [
    ("9", "rows 1 to 3"), ("lr=0.5", "matches no group"), ("seed=1", "not a parameter that differs"),
    ("lr", "row number or key=value"),
])
def test_an_unknown_baseline_is_one_line_and_exit_2(nnexp, three_groups, baseline, message):
    code, out, err = nnexp("compare", "--baseline", baseline, "--store", three_groups)
    assert code == 2 and message in err and out == "" and len(err.strip().splitlines()) == 1


def test_baseline_needs_groups(nnexp, three_groups):
    code, _, err = nnexp("compare", "--baseline", "1", "--no-group", "--store", three_groups)
    assert code == 2 and "not grouped" in err


def test_the_comparison_keeps_its_statistics_for_other_callers(three_groups):
    from nnexp.compare.select import select_runs
    from nnexp.compare.table import compare

    result = compare(select_runs(three_groups).records, limit=1)
    assert len(result.table_rows) == 1 and len(result.tests) == 1 and result.tests[0] is None and result.tested == 2
    assert result.reference["optimizer.lr"] == 0.01 and result.reference["test"] == "ref"
    full = compare(select_runs(three_groups).records)
    assert [t["test"] if t else None for t in full.tests] == [None, "welch", "paired"]
    assert list(full.table.columns) == full.columns and len(full.runs) == 10


def test_a_best_group_of_one_run_tests_nothing_and_says_so(nnexp, three_groups):
    fake_run(three_groups, "solo", 0.5, 0, [0.5, 0.99])  # the best, with a single seed
    code, out, err = nnexp("compare", "--json", "--store", three_groups)
    rows = json.loads(out)
    assert rows[0]["optimizer.lr"] == 0.5 and rows[0]["test"] == "ref"
    assert all(r["p"] is None for r in rows)
    code, out, err = nnexp("compare", "--store", three_groups)
    assert "none, each needs two runs or more in both groups" in err
    code, out, err = nnexp("compare", "--baseline", "lr=0.01", "--json", "--store", three_groups)
    assert sum(r["p"] is not None for r in json.loads(out)) == 2  # the single run is still not tested
