"""nnexp export: runs into MLflow, TensorBoard, CSV and Parquet, each read back by the tool's own reader.

The store: a sweep of three trainer runs (per-epoch rows, one with a tag, a note and a plot,
and a plot that is a link out of the store) and a script's run (nnexp.init) with per-step rows,
per-epoch rows, config keys MLflow refuses as they are, and a summary value of its own.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from ui_store import epoch_row, make_run, png

from nnexp.cli import main
from nnexp.tracking import RunStore
from nnexp.tracking.api import init as track
from nnexp.tracking.records import read_metric_rows
from nnexp.tracking.sweeps import SweepFolder

T0 = 1_767_000_000.0
SWEEP = "lrs-00aa11bb"
STEPS = (0, 5, 10, 15)


def build_store(root: Path) -> dict:
    store = RunStore(root)
    made = {"sweep": []}
    for trial, lr in enumerate((0.001, 0.003, 0.01)):
        run = make_run(store, f"lrs-t{trial}", lr, 0, 3, 0.9 + lr, T0 + trial, run_id=f"{SWEEP}-t{trial:03d}",
                       tags=["best"] if trial == 2 else (), extra={"sweep": SWEEP, "trial": trial})
        made["sweep"].append(run.id)
    sweep = SweepFolder(root, SWEEP)
    sweep.make()
    sweep.write_state({"id": SWEEP, "name": "lrs", "status": "completed", "method": "grid", "trials": 3})
    best = made["sweep"][2]
    store.annotate(best, note="the one to beat")
    plots = root / best / "plots"
    plots.mkdir()
    (plots / "learning_curves.png").write_bytes(png())
    os.symlink("/etc/passwd", plots / "escape.png")  # leads out of the store: never exported
    with track(config={"my lr!": 0.5, "my lr?": 0.6, "net": {"a/../b": 2, "width": 8}, "use_bias": True, "note": None},
                    name="script", store=str(root), tags=["lr=0.5"]) as run:
        for step in STEPS:
            run.log({"loss": 1.0 / (step + 1), "acc!": 0.5, "acc?": 0.6}, step=step)
        run.log({"epoch": 1, "val_accuracy": 0.8}, step=STEPS[-1] + 1)
        run.summary["f1"] = 0.75
    made["script"] = run.id
    return made


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "runs"
    return root, build_store(root)


def csv_rows(root: Path, run_id: str) -> list[dict]:
    return read_metric_rows(root / run_id, run_id, columns=None)


# ---------------------------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def mlflow_export(made, tmp_path_factory):
    """The whole store exported once into a sqlite store; (uri, client, {nnexp id: MLflow run}, stderr)."""
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="nnexp[mlflow] is not installed").MlflowClient
    root, _ = made
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    code, out, err = run_cli("export", "mlflow", "--tracking-uri", uri, "--store", root)
    assert code == 0, err
    client = MlflowClient(tracking_uri=uri)
    return uri, client, exported_runs(client), err


def run_cli(*args):
    """The CLI in this process: (exit code, stdout, stderr); module fixtures cannot use capsys."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def exported_runs(client) -> dict:
    experiment = client.get_experiment_by_name("nnexp")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return {r.data.tags["nnexp.run_id"]: r for r in runs}


def test_mlflow_runs_carry_params_tags_note_and_summary_values(made, mlflow_export):
    root, ids = made
    _, client, runs, _ = mlflow_export
    assert sorted(runs) == sorted(ids["sweep"] + [ids["script"]])
    best = runs[ids["sweep"][2]]
    assert best.data.params["optimizer.lr"] == "0.01"
    assert best.data.params["model.layers"] == "flatten | dense(16) | relu | dense(10)"
    assert best.data.params["train.epochs"] == "3"
    assert "tracking.name" not in best.data.params  # how the run is filed is not a param
    assert best.data.tags["best"] == "true" and best.data.tags["nnexp.tags"] == "best"
    assert best.data.tags["mlflow.note.content"] == "the one to beat"
    assert best.data.tags["nnexp.sweep"] == SWEEP and best.data.tags["nnexp.status"] == "completed"
    assert best.info.run_name == "lrs-t2" and best.info.status == "FINISHED"
    assert best.info.start_time == int((T0 + 2) * 1000)
    assert best.data.metrics["test_accuracy"] == pytest.approx(0.91)
    assert best.data.metrics["best_val_accuracy"] == max(r["val_accuracy"] for r in csv_rows(root, best.data.tags[
        "nnexp.run_id"]))
    plain = runs[ids["sweep"][0]]
    assert "best" not in plain.data.tags and "mlflow.note.content" not in plain.data.tags


def test_mlflow_metrics_are_logged_at_the_epoch_or_the_logged_step(made, mlflow_export):
    root, ids = made
    _, client, runs, _ = mlflow_export
    run_id = ids["sweep"][1]
    history = client.get_metric_history(runs[run_id].info.run_id, "val_accuracy")
    rows = csv_rows(root, run_id)
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        [(int(r["epoch"]), r["val_accuracy"]) for r in rows]
    assert [m.step for m in history] != [0, 1, 2]
    script = runs[ids["script"]].info.run_id
    assert sorted(m.step for m in client.get_metric_history(script, "loss")) == list(STEPS)
    assert [(m.step, m.value) for m in client.get_metric_history(script, "val_accuracy")] == [(STEPS[-1] + 1, 0.8)]
    assert [(m.step, m.value) for m in client.get_metric_history(script, "epoch")] == [(STEPS[-1] + 1, 1.0)]
    assert runs[ids["script"]].data.metrics["f1"] == 0.75  # run.summary's own value


def test_mlflow_params_are_flattened_and_names_it_refuses_escaped(made, mlflow_export):
    _, ids = made
    _, _, runs, err = mlflow_export
    params = runs[ids["script"]].data.params
    assert params["my lr_"] == "0.5"            # '!' is not a character MLflow takes; '?' neither: the first is kept
    assert err.count("'my lr?' and 'my lr!' are both 'my lr_'") == 1, err
    assert err.count("'acc?' and 'acc!' are both 'acc_'") == 1, err   # told once, not at every row
    assert runs[ids["script"]].data.metrics["acc_"] == 0.5
    assert params["net.a_.._b"] == "2"          # 'a/../b' would read as another path
    assert params["net.width"] == "8" and params["use_bias"] == "true" and params["note"] == "null"
    tags = runs[ids["script"]].data.tags
    assert tags["nnexp.tags"] == "lr=0.5" and tags["lr_0.5"] == "true"


def test_mlflow_artifacts_are_the_config_and_the_plots_never_a_link(made, mlflow_export):
    _, ids = made
    _, client, runs, _ = mlflow_export
    mlflow_id = runs[ids["sweep"][2]].info.run_id
    assert {a.path for a in client.list_artifacts(mlflow_id)} == {"config.yaml", "plots"}
    assert [a.path for a in client.list_artifacts(mlflow_id, "plots")] == ["plots/learning_curves.png"]
    assert {a.path for a in client.list_artifacts(runs[ids["sweep"][0]].info.run_id)} == {"config.yaml"}


def test_mlflow_a_second_export_updates_the_runs_it_made(tmp_path, monkeypatch):
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="nnexp[mlflow] is not installed").MlflowClient
    root = tmp_path / "runs"
    store = RunStore(root)
    run = make_run(store, "grows", 0.01, 0, 2, 0.9, T0, status=None, tags=["draft"])
    other = make_run(store, "other", 0.02, 0, 1, 0.9, T0 + 1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_cli("export", "mlflow", "--tracking-uri", uri, "--store", root)[0] == 0
    client = MlflowClient(tracking_uri=uri)
    first = exported_runs(client)
    assert first[run.id].info.status == "RUNNING"

    sent = []  # a store that keeps every point it is sent (not all dedupe) must get nothing twice
    log_batch = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, run_id, metrics=(), **kw: (
        sent.extend(metrics), log_batch(self, run_id, metrics=metrics, **kw))[1])
    code, out, _ = run_cli("export", "mlflow", "--tracking-uri", uri, "--store", root)  # nothing changed
    assert code == 0 and "0 created, 2 updated" in out
    assert sent == []
    again = exported_runs(client)
    assert {k: r.info.run_id for k, r in again.items()} == {k: r.info.run_id for k, r in first.items()}
    mlflow_id = first[run.id].info.run_id
    assert [m.step for m in client.get_metric_history(mlflow_id, "val_loss")] == [1, 2]
    assert [m.value for m in client.get_metric_history(mlflow_id, "best_val_loss")] == [epoch_row(2, 0.9)["val_loss"]]

    run.log_epoch(epoch_row(3, 0.9))  # a third epoch, a new tag instead of the old, a note, then the end
    store.annotate(run.id, add=["final"], remove=["draft"], note="done")
    run.finish("completed", test_accuracy=0.93, train_seconds=4.5)
    assert run_cli("export", "mlflow", "--tracking-uri", uri, "--store", root, "--where", "name == 'grows'")[0] == 0
    updated = exported_runs(client)
    assert len(updated) == 2
    mine = updated[run.id]
    assert mine.info.run_id == mlflow_id and mine.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(mlflow_id, "val_loss")) == [1, 2, 3]
    assert mine.data.tags["final"] == "true" and "draft" not in mine.data.tags
    assert mine.data.tags["mlflow.note.content"] == "done"
    assert mine.data.metrics["test_accuracy"] == 0.93
    assert updated[other.id].info.run_id == first[other.id].info.run_id


def test_mlflow_store_that_cannot_be_written_is_one_line(made, tmp_path, nnexp):
    pytest.importorskip("mlflow", reason="nnexp[mlflow] is not installed")
    root, _ = made
    code, out, err = nnexp("export", "mlflow", "--tracking-uri", f"sqlite:///{tmp_path / 'nowhere' / 'm.db'}",
                           "--store", root)
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err, err
    code, _, err = nnexp("export", "mlflow", "--tracking-uri", "mlflow.db", "--store", root)
    assert code == 2 and "is not a URI" in err, err
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------------------------------------- TensorBoard


def event_accumulator(folder: Path):
    reader = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="nnexp[tensorboard] is not installed")
    accumulator = reader.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_scalars_per_epoch_or_step_and_the_config_as_hparams(made, tmp_path, nnexp):
    api_pb2 = pytest.importorskip("tensorboard.plugins.hparams.api_pb2", reason="nnexp[tensorboard] is not installed")
    metadata = pytest.importorskip("tensorboard.plugins.hparams.metadata")
    root, ids = made
    out_dir = tmp_path / "tb"
    code, out, err = nnexp("export", "tensorboard", out_dir, "--store", root)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(ids["sweep"] + [ids["script"]])
    run_id = ids["sweep"][1]
    acc = event_accumulator(out_dir / run_id)
    rows = csv_rows(root, run_id)
    assert [(e.step, e.value) for e in acc.Scalars("val_accuracy")] == \
        [(int(r["epoch"]), pytest.approx(r["val_accuracy"], rel=1e-6)) for r in rows]
    assert acc.Scalars("test_accuracy")[0].step == len(rows)
    script = event_accumulator(out_dir / ids["script"])
    assert [e.step for e in script.Scalars("loss")] == list(STEPS)

    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(0.003)
    assert start.hparams["model.layers"].string_value == "flatten | dense(16) | relu | dense(10)"
    assert start.hparams["optimizer.name"].string_value == "adam"
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    hp = metadata.parse_session_start_info_plugin_data(
        script.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]).hparams
    assert hp["use_bias"].bool_value is True and hp["net.a/../b"].number_value == 2 and "note" not in hp


def test_tensorboard_a_second_export_replaces_the_event_file(made, tmp_path, nnexp):
    pytest.importorskip("tensorboard", reason="nnexp[tensorboard] is not installed")
    root, ids = made
    out_dir = tmp_path / "tb"
    run_id = ids["sweep"][0]
    for _ in range(2):
        assert nnexp("export", "tensorboard", out_dir, "--store", root, "--sweep", SWEEP)[0] == 0
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(ids["sweep"])
    assert len(list((out_dir / run_id).iterdir())) == 1
    assert [e.step for e in event_accumulator(out_dir / run_id).Scalars("val_loss")] == [1, 2, 3]


def test_tensorboard_into_a_file_is_one_line(made, tmp_path, nnexp):
    pytest.importorskip("tensorboard", reason="nnexp[tensorboard] is not installed")
    root, _ = made
    (tmp_path / "taken").write_text("x")
    code, _, err = nnexp("export", "tensorboard", tmp_path / "taken", "--store", root)
    assert code == 2 and "not a folder" in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------------------------------- tables


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_hold_one_row_per_run_and_one_per_metric_cell(made, tmp_path, nnexp, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="nnexp[parquet] is not installed")
    root, ids = made
    target = tmp_path / f"runs.{fmt}"
    code, out, err = nnexp("export", fmt, target, "--store", root)
    assert code == 0, err
    assert f"runs-metrics.{fmt}" in out
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    runs = read(target)
    assert list(runs["id"]) == ids["sweep"] + [ids["script"]]
    assert list(runs["param.optimizer.lr"][:3]) == [0.001, 0.003, 0.01]
    assert runs.set_index("id").loc[ids["sweep"][2], "tags"] == "best"
    assert runs.set_index("id").loc[ids["script"], "metric.f1"] == 0.75
    long = read(tmp_path / f"runs-metrics.{fmt}")
    assert list(long.columns) == ["run_id", "step", "epoch", "metric", "value"]
    expected = []
    for run_id in ids["sweep"]:
        for row in csv_rows(root, run_id):
            expected += [(run_id, int(row["epoch"]), row["epoch"], k, v) for k, v in row.items() if k != "epoch"]
    mine = long[long["run_id"].isin(ids["sweep"])]
    assert [tuple(r) for r in mine.itertuples(index=False)] == expected
    script = long[long["run_id"] == ids["script"]]
    assert list(script[script["metric"] == "loss"]["step"]) == list(STEPS)


def test_parquet_takes_a_param_that_is_a_number_in_one_run_and_text_in_another(tmp_path, nnexp):
    pytest.importorskip("pyarrow", reason="nnexp[parquet] is not installed")
    root = tmp_path / "runs"
    for value in (3, "three"):
        with track(config={"width": value}, name="mixed", store=str(root)):
            pass
    assert nnexp("export", "parquet", tmp_path / "t.parquet", "--store", root)[0] == 0
    assert list(pd.read_parquet(tmp_path / "t.parquet")["param.width"]) == ["3", "three"]


def test_selection_by_tag_and_sweep_is_the_listing_s(made, tmp_path, nnexp):
    root, ids = made
    code, out, err = nnexp("export", "csv", tmp_path / "t.csv", "--store", root, "--tag", "best", "--json")
    assert code == 0, err
    assert json.loads(out)["count"] == 1
    assert list(pd.read_csv(tmp_path / "t.csv")["id"]) == [ids["sweep"][2]]
    code, _, _ = nnexp("export", "csv", tmp_path / "s.csv", "--store", root, "--sweep", SWEEP,
                       "--where", "optimizer.lr > 0.002")
    assert code == 0 and list(pd.read_csv(tmp_path / "s.csv")["id"]) == ids["sweep"][1:]


# ---------------------------------------------------------------------------------------------- bad input


def test_no_runs_match_is_one_line_and_writes_nothing(made, tmp_path, nnexp):
    root, _ = made
    code, _, err = nnexp("export", "csv", tmp_path / "t.csv", "--store", root, "--where", "optimizer.lr > 5")
    assert code == 1 and "no runs in" in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("t*"))
    code, _, err = nnexp("export", "csv", tmp_path / "t.csv", "--store", root, "--where", "optimiser.lr > 5")
    assert code == 2 and "optimizer.lr" in err, err  # a misspelt field: the filter's own message
    code, _, err = nnexp("export", "csv", tmp_path / "t.csv", "--store", root, "--tag", "no tag")
    assert code == 2 and "invalid tag" in err, err


def test_unknown_format_and_unwritable_file_are_usage_errors(made, tmp_path, nnexp):
    root, _ = made
    code, _, err = nnexp("export", "xlsx", tmp_path / "t.xlsx", "--store", root)
    assert code == 2 and "xlsx" in err, err
    (tmp_path / "file").write_text("x")
    code, _, err = nnexp("export", "csv", tmp_path / "file" / "t.csv", "--store", root)
    assert code == 2 and "does not exist" in err and err.count("\n") == 1, err
    code, _, err = nnexp("export", "csv", tmp_path, "--store", root)
    assert code == 2 and "is a folder" in err, err
    code, _, err = nnexp("export", "csv", tmp_path / "file" / "t.csv", "--store", tmp_path / "empty")
    assert code == 2 and "does not exist" in err, err  # the usage error first, before the store is read


class Missing:
    """A meta-path finder for which the named packages are not installed."""

    def __init__(self, *names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}", name=name.split(".")[0])
        return None


@pytest.mark.parametrize("command, package, extra", [
    (("mlflow", "--tracking-uri", "sqlite:///{tmp}/m.db"), "mlflow", "mlflow"),
    (("tensorboard", "{tmp}/tb"), "tensorboard", "tensorboard"),
    (("parquet", "{tmp}/t.parquet"), "pyarrow", "parquet"),
])
def test_a_missing_extra_names_the_pip_command(made, tmp_path, nnexp, monkeypatch, command, package, extra):
    root, _ = made
    for name in [m for m in sys.modules if m.split(".")[0] == package]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Missing(package)] + sys.meta_path)
    code, _, err = nnexp("export", *[c.format(tmp=tmp_path) for c in command], "--store", root)
    assert code == 2 and f"pip install 'nnexp[{extra}]'" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_mlflow_and_tensorboard_load_only_for_their_exports(made, tmp_path):
    root, _ = made
    code = ("import sys, json\n"
            "from nnexp.cli import main\n"
            f"main(['export', 'csv', {str(tmp_path / 't.csv')!r}, '--store', {str(root)!r}])\n"
            "print(json.dumps(sorted(m for m in ('mlflow', 'tensorboard', 'sqlalchemy') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == []


@pytest.mark.integration
def test_a_trained_run_goes_to_mlflow_with_its_plots_and_commit(tiny_config, store, tmp_path, nnexp):
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="nnexp[mlflow] is not installed").MlflowClient
    assert nnexp("run", tiny_config, "--quiet")[0] == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = nnexp("export", "mlflow", "--tracking-uri", uri, "--store", store, "--json")
    assert code == 0, err
    (done,) = json.loads(out)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(done["mlflow_run_id"])
    summary = json.loads((store / done["id"] / "summary.json").read_text())
    assert run.data.tags.get("mlflow.source.git.commit") == summary.get("git_commit")
    assert run.data.metrics["test_accuracy"] == summary["test_accuracy"]
    assert run.data.params["optimizer.lr"] == "0.002" and run.data.params["train.epochs"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
    shipped = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert shipped == {f"plots/{p.name}" for p in (store / done["id"] / "plots").iterdir()}
    assert "plots/learning_curves.png" in shipped
