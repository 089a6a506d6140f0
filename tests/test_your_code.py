"""nnexp.init / log / finish: tracking a script's own training loop (nnexp/tracking/api.py).

Every script runs in a process of its own, as a user's would: the API hooks
the process's exit, its uncaught exceptions and SIGTERM.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nnexp as nnexp_api
from nnexp.tracking.records import make_record, read_metric_columns, read_metric_rows
from nnexp.tracking.run import read_summary
from nnexp.tracking.usage import tree_size


def script(tmp_path: Path, code: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def run_script(path: Path, store: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, NNEXP_STORE=str(store)), cwd=path.parent, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def start_script(path: Path, store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NNEXP_STORE=str(store)), cwd=path.parent)


def only_run(store: Path) -> Path:
    [run] = [p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def wait_for_rows(run_glob_store: Path, n: int, proc: subprocess.Popen, deadline: float = 30.0) -> Path:
    """The script's run folder once its metrics.csv holds ``n`` rows (the process still running)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read()
        runs = [p for p in run_glob_store.glob("*") if (p / "metrics.csv").exists()]
        if runs and len(read_metric_rows(runs[0], columns=None)) >= n:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"metrics.csv did not reach {n} rows")


LOOP = """\
import nnexp
run = nnexp.init(config={"lr": 0.1, "hidden": 10, "opt": {"name": "sgd"}}, name="numpy-net", tags=["tutorial"],
                 notes="first try", seed=7)
for epoch in range(1, 4):
    run.log({"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10})
run.summary["test_accuracy"] = 0.875
"""


def test_a_finished_script_is_a_completed_run_that_listings_and_filters_see(tmp_path, store, nnexp):
    run_script(script(tmp_path, LOOP + "run.finish()\n"), store)
    run = only_run(store)
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["kind"] == "script" and summary["name"] == "numpy-net"
    assert summary["seed"] == 7 and summary["note"] == "first try" and summary["tags"] == ["tutorial"]
    assert [(r["epoch"], r["train_loss"], r["val_accuracy"]) for r in rows(run)] == [
        ("1", "1.0", "0.6"), ("2", "0.5", "0.7"), ("3", "0.3333333333333333", "0.8")]
    record = make_record(run)
    assert record["params"] == {"lr": 0.1, "hidden": 10, "opt.name": "sgd", "seed": 7}
    assert record["metrics"]["test_accuracy"] == 0.875 and record["metrics"]["best_train_loss"] == 1.0 / 3
    assert record["metrics"]["best_val_accuracy"] == 0.8
    code, out, err = nnexp("runs", "--store", store, "--json", "--where", "lr == 0.1 and test_accuracy > 0.8")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == [run.name]
    code, out, _ = nnexp("runs", "--store", store, "--json", "--where", "hidden > 10")
    assert json.loads(out) == []
    code, out, _ = nnexp("runs", "--store", store)
    assert "numpy-net" in out and "completed" in out and "80.00%" in out and "87.50%" in out


def test_a_script_that_ends_without_finish_is_completed_at_exit(tmp_path, store):
    run_script(script(tmp_path, LOOP), store)
    run = only_run(store)
    assert read_summary(run)["status"] == "completed" and len(rows(run)) == 3


def test_an_exception_in_the_with_block_fails_the_run_with_its_traceback_and_propagates(tmp_path, store):
    code = """\
    import nnexp
    with nnexp.init(config={"lr": 1.0}) as run:
        run.log({"epoch": 1, "train_loss": 0.5})
        raise ValueError("the loss exploded")
    """
    done = run_script(script(tmp_path, code), store, check=False)
    assert done.returncode == 1 and "ValueError: the loss exploded" in done.stderr
    run = only_run(store)
    summary = read_summary(run)
    assert summary["status"] == "failed" and summary["reason"] == "ValueError: the loss exploded"
    error = (run / "error.txt").read_text()
    assert error.startswith("Traceback") and 'raise ValueError("the loss exploded")' in error
    assert len(rows(run)) == 1


def test_an_uncaught_exception_outside_a_with_block_fails_the_run_too(tmp_path, store):
    code = """\
    import nnexp
    run = nnexp.init()
    run.log({"loss": 0.5})
    1 / 0
    """
    done = run_script(script(tmp_path, code), store, check=False)
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr
    run = only_run(store)
    assert read_summary(run)["status"] == "failed" and "ZeroDivisionError" in (run / "error.txt").read_text()
    assert rows(run) == [{"step": "0", "loss": "0.5"}]


SLOW = """\
import time, nnexp
run = nnexp.init(config={"lr": 0.1})
for step in range(5):
    run.log({"loss": 1.0 / (step + 1)})
while True:
    time.sleep(0.1)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_mark_the_run_interrupted_and_keep_its_rows(tmp_path, store, sig):
    proc = start_script(script(tmp_path, SLOW), store)
    run = wait_for_rows(store, 5, proc)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    summary = read_summary(run)
    assert summary["status"] == "interrupted" and len(rows(run)) == 5


def test_a_script_killed_with_sigkill_is_dead_with_every_row_it_flushed(tmp_path, store, nnexp):
    proc = start_script(script(tmp_path, SLOW), store)
    run = wait_for_rows(store, 5, proc)  # written by the flusher within a second, while the loop sleeps
    proc.kill()
    proc.wait()
    code, out, _ = nnexp("runs", "--store", store, "--json")
    [listed] = json.loads(out)
    assert read_summary(run)["status"] == "running" and listed["status"] == "running"
    code, out, _ = nnexp("runs", "--store", store, "--where", "status == 'dead'", "--json")
    assert [r["id"] for r in json.loads(out)] == [run.name]
    assert [r["loss"] for r in rows(run)] == ["1.0", "0.5", "0.3333333333333333", "0.25", "0.2"]


def test_steps_epochs_and_slips_follow_the_rules(tmp_path, store):
    code = """\
    import numpy as np, nnexp
    run = nnexp.init()
    run.log({"loss": 3.0})                          # step 0
    run.log({"loss": 2.0})                          # step 1
    run.log({"loss": 1.5}, step=5)
    run.log({"acc": 0.5}, step=5)                   # the same step: one row
    run.log({"loss": 9.0}, step=3)                  # lower: not written, warned
    run.log({"loss": 8.0}, step=4)                  # lower: not written, not warned again
    run.log({"loss": np.float32(0.25), "acc": np.array(0.75), "name": "x", "bad,key": 1.0, "ok": True})
    run.log({"part": 1.0}, commit=False)
    run.log({"loss": 0.125}, step=10)               # commits part with it
    run.finish()
    """
    done = run_script(script(tmp_path, code), store)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("nnexp:")]
    assert len([w for w in warnings if "step 3 comes after step 5" in w]) == 1
    assert not any("step 4" in w for w in warnings)
    assert any("'name' is a str, not a number" in w for w in warnings)
    assert any("'bad,key'" in w and "comma" in w for w in warnings)
    got = rows(only_run(store))
    assert [(r["step"], r["loss"], r["acc"]) for r in got] == [
        ("0", "3.0", ""), ("1", "2.0", ""), ("5", "1.5", "0.5"), ("6", "0.25", "0.75"), ("10", "0.125", "")]
    assert got[3]["ok"] == "1" and got[4]["part"] == "1.0" and "name" not in got[0]


def test_rows_with_epochs_only_have_no_step_column_and_lower_epochs_are_dropped(tmp_path, store):
    code = """\
    import nnexp
    run = nnexp.init()
    for epoch in (1, 2, 1, 3):
        run.log({"epoch": epoch, "val_loss": 1.0 / epoch})
    """
    done = run_script(script(tmp_path, code), store)
    assert "epoch 1 comes after epoch 2" in done.stderr
    got = rows(only_run(store))
    assert list(got[0]) == ["epoch", "val_loss"] and [r["epoch"] for r in got] == ["1", "2", "3"]


def test_a_new_key_later_in_the_run_adds_a_column_and_keeps_the_earlier_rows(tmp_path, store):
    code = """\
    import time, nnexp
    run = nnexp.init()
    for step in range(3):
        run.log({"train_loss": 1.0})
    run.flush()
    run.log({"train_loss": 0.5, "val_loss": 0.25}, step=3)
    run.log({"epoch": 1, "train_loss": 0.4}, step=4)
    """
    run_script(script(tmp_path, code), store)
    run = only_run(store)
    text = (run / "metrics.csv").read_text()
    assert text.splitlines()[0] == "step,epoch,train_loss,val_loss"
    assert [(r["step"], r["epoch"], r["val_loss"]) for r in rows(run)] == [
        ("0", "", ""), ("1", "", ""), ("2", "", ""), ("3", "", "0.25"), ("4", "1", "")]
    assert make_record(run)["metrics"]["val_loss"] == 0.25  # the last value logged, not the last row's gap


def test_logged_values_read_back_exactly_in_any_key_order_and_of_any_number_type(tmp_path, store):
    code = """\
    import json, random, numpy as np, nnexp
    rng = random.Random(3)
    values = [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(600)]
    values += [5e-324, 1.7976931348623157e308, -0.0, 0.1 + 0.2, 2**60 + 1, -7]
    json.dump(values, open("values.json", "w"))
    run = nnexp.init()
    for i, v in enumerate(values):
        if i % 3:
            run.log({"a": v, "b": -v, "flag": i % 2 == 0})
        else:  # the same names in another order, a NumPy scalar among them
            run.log({"flag": np.float64(v), "b": -v, "a": v})
    run.log({"a": 1.0, "b": 2.0, "flag": 3.0, 'bad"name': 4.0})
    """
    done = run_script(script(tmp_path, code), store)
    assert "the metric name 'bad\"name'" in done.stderr
    values = json.loads((tmp_path / "values.json").read_text())
    run = only_run(store)
    got = rows(run)[:-1]
    assert sorted(rows(run)[-1]) == ["a", "b", "flag", "step"] and rows(run)[-1]["a"] == "1.0"
    assert [r["a"] for r in got] == [repr(v) for v in values]  # ints stay ints, floats keep every digit
    assert [r["b"] for r in got] == [repr(-v) for v in values]
    assert [r["flag"] for r in got] == [repr(float(v)) if i % 3 == 0 else str(int(i % 2 == 0))
                                         for i, v in enumerate(values)]
    columns, count = read_metric_columns(run)
    assert count == len(values) + 1 and columns["a"][:-1] == [float(v) for v in values]
    assert columns["step"] == [float(i) for i in range(count)]
    metrics = make_record(run)["metrics"]
    assert metrics["best_b"] == max(-v for v in values) and metrics["final_flag"] == 3.0
    assert metrics["mean_a"] == math.fsum(v / count for v in [*values, 1.0])  # a sum past the largest float


WANDB_SCRIPT = """\
import argparse
import nnexp as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
wandb.init(project="mnist-numpy", config=args, name="wandb-shaped", tags=["baseline"], group="lr")
wandb.config.update({"hidden": 10})
lr = wandb.config.lr
for epoch in range(3):
    loss = 1.0 / (epoch + 1) / lr
    wandb.log({"epoch": epoch, "train/loss": loss, "val_accuracy": 0.8 + epoch * 0.05})
wandb.run.summary["best_val_accuracy"] = 0.9
wandb.summary["test_accuracy"] = 0.88
print(wandb.run.id, wandb.run.name, wandb.run.dir)
wandb.finish()
"""


def test_a_script_written_for_wandb_runs_with_import_nnexp_as_wandb(tmp_path, store):
    done = run_script(script(tmp_path, WANDB_SCRIPT), store, "--lr", "0.5")
    run = only_run(store)
    run_id, name, folder = done.stdout.split()
    assert (run_id, name, Path(folder).resolve()) == (run.name, "wandb-shaped", run.resolve())
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["project"] == "mnist-numpy" and summary["group"] == "lr"
    record = make_record(run)
    assert record["params"] == {"lr": 0.5, "hidden": 10}
    assert [r["train/loss"] for r in rows(run)] == ["2.0", "1.0", "0.6666666666666666"]
    assert record["metrics"]["test_accuracy"] == 0.88 and record["metrics"]["best_val_accuracy"] == 0.9


@pytest.mark.parametrize("call,message", [
    ('nnexp.init(entity="team")', "nnexp.init: entity is not supported"),
    ('nnexp.init(resume="allow", id="abc")', "nnexp.init: id, resume are not supported"),
    ('nnexp.init(mode="disabled")', "mode='disabled' is not supported"),
    ('nnexp.log({"loss": 1.0})', "nnexp.log: no run is open; call nnexp.init() first"),
])
def test_what_nnexp_does_not_support_is_an_error_naming_it(tmp_path, store, call, message):
    done = run_script(script(tmp_path, f"import nnexp\n{call}\n"), store, check=False)
    assert done.returncode == 1 and message in done.stderr
    assert not store.exists() or not [p for p in store.iterdir() if p.is_dir()]


def test_runs_over_seeds_are_grouped_by_compare(tmp_path, store, nnexp):
    code = """\
    import sys, nnexp
    lr, seed = float(sys.argv[1]), int(sys.argv[2])
    with nnexp.init(config={"lr": lr}, seed=seed) as run:
        run.log({"epoch": 1, "val_accuracy": lr + seed / 100})
    """
    path = script(tmp_path, code)
    for lr in (0.1, 0.3):
        for seed in (0, 1, 2):
            run_script(path, store, lr, seed)
    code, out, err = nnexp("compare", "--store", store, "--json")
    assert code == 0, err
    table = json.loads(out)
    assert [(r["lr"], r["runs"], r["test"]) for r in table] == [(0.3, 3, "ref"), (0.1, 3, "paired")]
    assert table[0]["val_accuracy"] == pytest.approx(0.31) and table[1]["val_accuracy"] == pytest.approx(0.11)


def test_save_weights_and_save_file_go_into_the_run_folder(tmp_path, store):
    code = """\
    import numpy as np, nnexp
    run = nnexp.init()
    run.save_weights({"W1": np.ones((3, 2)), "b1": np.zeros(2)})
    open("notes.txt", "w").write("hello")
    run.save_file("notes.txt")
    run.finish()
    """
    run_script(script(tmp_path, code), store)
    run = only_run(store)
    import numpy as np
    with np.load(run / "weights.npz", allow_pickle=False) as weights:
        assert weights["W1"].shape == (3, 2) and weights["b1"].tolist() == [0.0, 0.0]
    assert (run / "files" / "notes.txt").read_text() == "hello"


def test_the_run_page_draws_a_long_run_against_its_steps_downsampled_with_its_spike():
    from nnexp.ui.run_charts import MAX_POINTS, run_charts

    rows = [{"step": float(s), "train_loss": 1.0 / (1 + s), "lr": 0.1} for s in range(50_000)]
    rows[31_337]["train_loss"] = 9.0  # one spike among 50,000 points
    rows += [{"step": 50_000.0, "train_loss": 0.5, "val_accuracy": 0.9, "lr": 0.1}]
    for row in rows[:-1]:
        row["val_accuracy"] = float("nan")
    [curves] = [c for c in run_charts(rows, {}) if c["id"] == "curves"]
    figure = curves["figure"]
    [loss] = [t for t in figure["data"] if t["name"] == "train_loss" or t["name"] == "train"]
    assert len(loss["x"]) <= MAX_POINTS and max(loss["y"]) == 9.0 and 31_337.0 in loss["x"]
    assert loss["x"][0] == 0.0 and loss["x"][-1] == 50_000.0 and loss["x"] == sorted(loss["x"])
    assert figure["layout"]["xaxis"]["title"]["text"] == "step"
    assert "of 50,002 points drawn" in figure["layout"]["title"]["subtitle"]["text"]


def test_the_dashboard_reads_a_growing_metrics_file_from_where_it_stopped(tmp_path):
    from nnexp.tracking import RunStore
    from nnexp.tracking.records import MetricRowsCache

    folder = RunStore(tmp_path / "runs").create("grow")
    folder.start("grow")
    cache = MetricRowsCache()
    folder.append_metrics([{"step": s, "loss": 1.0 / (s + 1)} for s in range(3)])
    assert cache.rows(folder.path) == read_metric_rows(folder.path, columns=None)
    with open(folder.metrics_path, "a") as f:
        f.write("3,0.25\r\n4,0.")  # a row, then a half-written one
    assert [r["step"] for r in cache.rows(folder.path)] == [0.0, 1.0, 2.0, 3.0]
    with open(folder.metrics_path, "a") as f:
        f.write("2\r\n")
    assert cache.rows(folder.path)[-1] == {"step": 4.0, "loss": 0.2}
    folder.append_metrics([{"step": 5, "loss": 0.1, "acc": 0.5}])  # a new column: the file is replaced
    assert cache.rows(folder.path) == read_metric_rows(folder.path, columns=None)
    assert cache.rows(folder.path)[-1] == {"step": 5.0, "loss": 0.1, "acc": 0.5}


STEPS = """\
import sys, numpy as np, nnexp
lr = float(sys.argv[1])
with nnexp.init(config={"lr": lr, "hidden": 10}, name="steps", seed=0) as run:
    for step in range(20):
        run.log({"train_loss": 1.0 / (1 + lr * step)}, step=step)
        if step % 5 == 4:
            run.log({"val_accuracy": 0.5 + lr * step / 40}, step=step)
    run.save_weights({"w": np.full((3, 2), lr)})
"""


def test_the_store_commands_take_script_runs(tmp_path, store, nnexp):
    """tag, note, diff, compare --report, load_runs, du, gc and rm on two runs made by nnexp.init."""
    path = script(tmp_path, STEPS)
    run_script(path, store, "0.1")
    run_script(path, store, "0.5")
    slow, fast = sorted((p for p in store.iterdir() if (p / "summary.json").exists()),
                        key=lambda p: make_record(p)["params"]["lr"])
    assert nnexp("tag", fast.name, "+best", "--store", store)[0] == 0
    assert nnexp("note", fast.name, "lr 0.5 wins", "--store", store)[0] == 0
    code, out, err = nnexp("runs", "--json", "--where", "'best' in tags", "--store", store)
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["id"] == fast.name and listed["note"] == "lr 0.5 wins"

    code, out, err = nnexp("diff", slow.name, fast.name, "--json", "--store", store)
    assert code == 0, err
    result = json.loads(out)
    assert result["params"] == [{"key": "lr", "a": 0.1, "b": 0.5}]
    metrics = {m["name"]: m for m in result["metrics"]}
    assert metrics["val_accuracy"]["diff"] == pytest.approx(0.4 * 19 / 40)
    assert result["axis"] == "step"  # plotted against the steps logged, not the row numbers
    assert result["curves"]["b"]["val_accuracy"] == [[float(s), 0.5 + 0.5 * s / 40] for s in (4, 9, 14, 19)]
    assert result["curves"]["a"]["train_loss"][-1] == [19.0, 1.0 / (1 + 0.1 * 19)]
    code, out, _ = nnexp("diff", slow.name, fast.name, "--store", store)
    assert "step  val_accuracy a" in out

    report = tmp_path / "report.html"
    code, out, err = nnexp("compare", "--where", "name == 'steps'", "--report", report, "--store", store)
    assert code == 0, err
    html = report.read_text()
    assert slow.name in html and fast.name in html and "val_accuracy" in html

    frame = nnexp_api.load_runs(store, where="lr > 0.2")
    assert list(frame["id"]) == [fast.name] and frame["metric.val_accuracy"].iloc[0] == 0.5 + 0.5 * 19 / 40

    code, out, err = nnexp("du", "--json", "--store", store)
    assert code == 0, err
    sizes = {r["id"]: r["bytes"] for r in json.loads(out)["runs"]}
    assert sizes.keys() == {slow.name, fast.name}
    assert sizes[fast.name] == tree_size(fast)[0] > 0

    code, out, err = nnexp("gc", "--store", store)
    assert code == 0, err
    assert out.strip().startswith("freed 0 B (0 items)")  # a finished script run has nothing to collect
    assert (fast / "weights.npz").exists() and (fast / "metrics.csv").exists()

    code, out, err = nnexp("rm", slow.name, "--yes", "--store", store)
    assert code == 0, err
    assert not slow.exists()
    code, out, _ = nnexp("runs", "--json", "--store", store)
    assert [r["id"] for r in json.loads(out)] == [fast.name]


def test_runs_shows_a_scripts_progress_as_its_epochs_or_its_last_step(tmp_path, store, nnexp):
    run_script(script(tmp_path, STEPS), store, "0.1")
    run_script(script(tmp_path, LOOP, "epochs.py"), store)
    code, out, err = nnexp("runs", "--store", store)
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert " step 19 " in lines["steps"] and "?" not in lines["steps"]
    assert lines["numpy-net"].split()[3] == "3"


def test_compare_agg_takes_the_best_or_mean_of_a_scripts_own_metric(tmp_path, store, nnexp):
    code = """\
    import sys, nnexp
    scores = [float(s) for s in sys.argv[1:]]
    with nnexp.init(config={"curve": sys.argv[1]}) as run:
        for score in scores:
            run.log({"score": score})
    """
    path = script(tmp_path, code)
    run_script(path, store, "0.9", "0.1")   # best 0.9, mean 0.5, final 0.1
    run_script(path, store, "0.5", "0.6")   # best 0.6, mean 0.55, final 0.6
    order = {}
    for agg in ("final", "best", "mean"):
        code, out, err = nnexp("compare", "--sort", "score", "--agg", agg, "--metrics", "score", "--json",
                               "--store", store)
        assert code == 0, err
        table = json.loads(out)
        order[agg] = [(r["curve"], r[f"{agg}_score" if agg != "final" else "score"]) for r in table]
    assert order == {"final": [("0.5", 0.6), ("0.9", 0.1)], "best": [("0.9", 0.9), ("0.5", 0.6)],
                     "mean": [("0.5", 0.55), ("0.9", 0.5)]}
