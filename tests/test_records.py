"""Run records: config flattening, layer strings, curve metrics, damaged folders."""

import json
import math

import pytest

from nnexp.config import describe_layers, dump_yaml, validate
from nnexp.tracking import DamagedRun, RunStore, flatten_config, layers_text, make_record

CONFIG = {
    "data": {"dataset": "mnist", "batch_size": 64, "cache_dir": "/tmp/cache", "mirrors": ["http://a", "http://b"],
             "augment": {"rotate": 10.0, "shift": 2.0}},
    "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 32, "init": "xavier"}, {"type": "relu"},
                         {"type": "dropout", "p": 0.2}, {"type": "dense", "units": 10}]},
    "optimizer": {"name": "adam", "lr": 0.002},
    "train": {"epochs": 3, "seed": 7},
    "tracking": {"name": "tiny", "tags": ["a", "b"], "store": "somewhere"},
}

METRICS = """\
epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds
1,0.9,0.70,0.8,0.75,0.002,1.5
2,0.5,0.85,0.6,0.80,0.002,1.5
3,0.4,0.90,0.7,0.78,0.001,1.5
"""


def write_run(root, name="run-a", summary=None, config=CONFIG, metrics=METRICS):
    """A run folder as the trainer leaves it, written by hand."""
    path = root / name
    path.mkdir(parents=True)
    if config is not None:
        (path / "config.yaml").write_text(dump_yaml(validate(config)) if isinstance(config, dict) else config)
    if metrics is not None:
        (path / "metrics.csv").write_text(metrics)
    if summary is None:
        summary = {"id": name, "name": "tiny", "status": "completed", "start_time": 1000.0, "params": 25450,
                   "test_accuracy": 0.97, "test_loss": 0.1, "train_seconds": 4.5, "total_seconds": 6.0}
    if isinstance(summary, bytes):
        (path / "summary.json").write_bytes(summary)
    else:
        (path / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return path


def test_record_of_a_finished_run(tmp_path):
    path = write_run(tmp_path)
    rec = make_record(path)
    assert rec["id"] == "run-a" and rec["path"] == str(path)
    assert rec["summary"]["status"] == "completed"
    p = rec["params"]
    assert p["optimizer.lr"] == 0.002 and p["optimizer.name"] == "adam"
    assert p["data.batch_size"] == 64 and p["train.seed"] == 7
    assert p["data.augment.rotate"] == 10.0 and p["data.augment.shift"] == 2.0
    assert p["model.layers"] == "flatten | dense(32) | relu | dropout(0.2) | dense(10)"
    assert p["train.early_stopping"] is None  # resolved default, kept as an explicit None
    m = rec["metrics"]
    assert m["epochs"] == 3
    assert m["val_accuracy"] == m["final_val_accuracy"] == 0.78
    assert m["best_val_accuracy"] == 0.80 and m["best_val_loss"] == 0.6  # max for accuracy, min for loss
    assert m["mean_train_loss"] == pytest.approx((0.9 + 0.5 + 0.4) / 3)
    assert (m["test_accuracy"], m["test_loss"], m["n_params"]) == (0.97, 0.1, 25450)
    assert (m["train_seconds"], m["total_seconds"]) == (4.5, 6.0)
    assert "lr" not in m and "seconds" not in m
    json.dumps(rec, allow_nan=False)  # JSON-serialisable, without NaN


def test_location_and_tracking_keys_are_left_out(tmp_path):
    p = make_record(write_run(tmp_path))["params"]
    assert not [k for k in p if k.startswith("tracking.")]
    for key in ("data.cache_dir", "data.local_dir", "data.mirrors", "data.csv_path", "data.test_csv_path"):
        assert key not in p


def test_trial_params_override_and_lists_become_json(tmp_path):
    summary = {"status": "completed", "sweep": "s1", "trial": 3,
               "trial_params": {"optimizer.lr": 0.01, "model.layers.1.units": 64, "data.shape": [1, 28, 28]}}
    p = make_record(write_run(tmp_path, summary=summary))["params"]
    assert p["optimizer.lr"] == 0.01  # the sweep's value wins
    assert p["model.layers.1.units"] == 64
    assert p["data.shape"] == "[1,28,28]"


def test_flatten_config_nests_with_dots_and_lists_as_compact_json():
    flat = flatten_config({"a": {"b": {"c": 1}, "l": [1, "x"], "e": {}}, "tracking": {"name": "x"}, "t": True})
    assert flat == {"a.b.c": 1, "a.l": '[1,"x"]', "a.e": None, "t": True}
    with pytest.raises(ValueError, match="expected a mapping, got list"):
        flatten_config([1, 2])


@pytest.mark.parametrize("layer, text", [
    ({"type": "dense", "units": 512, "init": "he"}, "dense(512)"),
    ({"type": "dropout", "p": 0.2}, "dropout(0.2)"),
    ({"type": "dropout", "p": 0.5}, "dropout"),  # the default
    ({"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 1, "padding": 1, "init": "he"},
     "conv2d(32,3,1,1)"),
    ({"type": "conv2d", "out_channels": 8, "kernel_size": 5}, "conv2d(8,5)"),
    ({"type": "maxpool2d", "kernel_size": 2, "stride": None}, "maxpool2d"),
    ({"type": "maxpool2d", "kernel_size": 3, "stride": 2}, "maxpool2d(3,2)"),
    ({"type": "batchnorm", "momentum": 0.1, "eps": 1e-5}, "batchnorm"),
    ({"type": "leaky_relu", "alpha": 0.2}, "leaky_relu(0.2)"),
    ({"type": "relu"}, "relu"),
    ({"type": "mystery", "width": 4, "mode": "x"}, "mystery(4)"),  # unknown to this nnexp: numbers kept
])
def test_describe_layers_leaves_out_the_defaults(layer, text):
    assert describe_layers([layer]) == text


def test_layers_text_without_defaults_shows_every_numeric_option_in_order():
    layers = [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 0, "init": "he"},
              {"type": "maxpool2d", "kernel_size": 2, "stride": None}, {"type": "dropout", "p": 0.5}]
    assert layers_text(layers) == "conv2d(8,3,1,0) | maxpool2d(2) | dropout(0.5)"
    defaults = {"dropout": [("p", 0.5)], "maxpool2d": [("kernel_size", 2), ("stride", None)]}
    assert layers_text(layers, defaults) == "conv2d(8,3,1,0) | maxpool2d | dropout"


def test_the_layers_text_the_trainer_recorded_is_the_param(tmp_path):
    summary = {"status": "completed", "layers": "dense(32) | dropout | dense(10)"}
    config = {**CONFIG, "model": {"layers": [{"type": "dense", "units": 32}, {"type": "dropout", "p": 0.5},
                                             {"type": "dense", "units": 10}]}}
    p = make_record(write_run(tmp_path, "recorded", summary=summary, config=config))["params"]
    assert p["model.layers"] == summary["layers"]
    p = make_record(write_run(tmp_path, "without", summary={"status": "completed"}, config=config))["params"]
    assert p["model.layers"] == "dense(32) | dropout(0.5) | dense(10)"  # a run recorded without it


def test_layers_text_joins_with_bars_and_rejects_non_lists():
    assert layers_text([{"type": "flatten"}, {"type": "dense", "units": 10}]) == "flatten | dense(10)"
    with pytest.raises(ValueError, match="expected a list of layer mappings, got dict"):
        layers_text({"type": "relu"})


def test_half_written_last_metrics_line_is_ignored(tmp_path):
    rec = make_record(write_run(tmp_path, metrics=METRICS + "4,0.3,0.9"))  # no newline yet: being written
    assert rec["metrics"]["epochs"] == 3 and rec["metrics"]["train_loss"] == 0.4


def test_unparsable_metric_rows_and_empty_cells_are_skipped(tmp_path):
    metrics = ("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n"
               "1,0.9,0.7,,,0.1,1\n"
               "garbage\n"
               "2,0.5,0.8,,,0.1,1\n")
    m = make_record(write_run(tmp_path, metrics=metrics))["metrics"]
    assert m["epochs"] == 2 and m["train_loss"] == 0.5
    assert not [k for k in m if "val_" in k]  # no validation set: no val metrics at all, not NaN


def test_missing_files_give_partial_records(tmp_path):
    summary = {"status": "running", "test_loss": math.nan}
    rec = make_record(write_run(tmp_path, summary=summary, config=None, metrics=None))
    assert rec["params"] == {} and rec["metrics"] == {"epochs": 0.0}  # NaN test_loss left out


@pytest.mark.parametrize("summary, message", [
    ("{not json", "invalid summary.json"),
    ("[1, 2]", "summary.json is a JSON list, not an object"),
    (b'{"a": "\xff\xfe"}', "invalid summary.json"),  # not UTF-8
])
def test_damaged_summary_raises(tmp_path, summary, message):
    path = write_run(tmp_path, summary=summary)
    with pytest.raises(DamagedRun, match=message) as err:
        make_record(path)
    assert "run-a" in str(err.value)


def test_damaged_config_raises(tmp_path):
    with pytest.raises(DamagedRun, match="invalid config.yaml"):
        make_record(write_run(tmp_path, "r1", config="data: {a: [1, 2\n"))
    with pytest.raises(DamagedRun, match="config.yaml is a list"):
        make_record(write_run(tmp_path, "r2", config="- 1\n- 2\n"))


def test_missing_summary_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DamagedRun, match="no summary.json"):
        make_record(tmp_path / "empty")


def test_record_of_a_folder_written_through_the_run_api(tmp_path):
    run = RunStore(tmp_path).create("api")
    run.write_config(dump_yaml(validate(CONFIG)))
    for epoch, acc in ((1, 0.5), (2, 0.75)):
        run.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": acc, "val_loss": 1.0,
                       "val_accuracy": acc, "lr": 0.1, "seconds": 0.5})
    run.start("api", params=100)
    run.finish("completed", test_accuracy=0.7)
    rec = make_record(run.path)
    assert rec["id"] == run.id and rec["metrics"]["best_val_accuracy"] == 0.75
    assert rec["metrics"]["mean_train_loss"] == 0.75 and rec["metrics"]["n_params"] == 100


@pytest.mark.parametrize("gap", [False, True])
def test_a_long_metrics_file_reads_back_every_bit(tmp_path, gap):
    """Long files take another parser than short ones; both give exactly what float() gives."""
    import random

    from nnexp.tracking.records import NUMPY_ROWS, read_metric_columns

    rng = random.Random(0)
    rows = NUMPY_ROWS + 5
    cells = [[repr(rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300)) for _ in range(3)] for _ in range(rows)]
    cells[7][1] = repr(5e-324)
    cells[9][2] = "1e308"
    if gap:
        cells[rows // 2][1] = ""  # an empty cell: NaN, and the row kept
    (tmp_path / "metrics.csv").write_text("step,a,b\n" + "".join(",".join(c) + "\n" for c in cells))
    columns, count = read_metric_columns(tmp_path, "r")
    assert count == rows
    for j, name in enumerate(("step", "a", "b")):
        want = [float(c[j]) if c[j] else math.nan for c in cells]
        got = columns[name]
        assert all(w == g or (math.isnan(w) and math.isnan(g)) for w, g in zip(want, got, strict=True))
