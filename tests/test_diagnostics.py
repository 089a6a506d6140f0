"""Per-layer diagnostics: diagnostics.csv, its statistics, the rules `nnexp show` warns with, and the plot."""

import copy
import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nnexp import checkpoint
from nnexp.config import validate
from nnexp.diagnostics import PROBE_SIZE, Diagnostics, layer_type, output_stats
from nnexp.nn import Dense, build_model
from nnexp.nn.fast import build_fast_model
from nnexp.tracking import RunStore, plots
from nnexp.tracking.health import RULES, diagnose, read_diagnostic_rows
from nnexp.tracking.plots import plot_diagnostics
from nnexp.tracking.run import DIAGNOSTIC_COLUMNS, DIAGNOSTIC_STATS
from nnexp.train import Setup, train_one_epoch

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Dropout, batch-norm and augmentation: every random stream and every piece of
# state the probe must leave alone is in play.
STATEFUL = """\
data: {{dataset: mnist, val_size: 200, batch_size: 64, train_subset: 700, augment: {{rotate: 5, shift: 1}}}}
model:
  engine: {engine}
  layers:
    - {{type: conv2d, out_channels: 4, kernel_size: 3}}
    - {{type: batchnorm}}
    - {{type: relu}}
    - {{type: maxpool2d}}
    - {{type: dense, units: 24}}
    - {{type: batchnorm}}
    - {{type: leaky_relu}}
    - {{type: dropout, p: 0.3}}
    - {{type: dense, units: 10}}
optimizer: {{name: adamw, lr: 0.01}}
schedule: {{name: onecycle}}
train: {{epochs: 3, seed: 3}}
tracking: {{store: {store}, plots: false}}
"""


def runs_by_name(store):
    return {json.loads((p / "summary.json").read_text())["name"]: p
            for p in store.iterdir() if (p / "summary.json").exists()}


def weights_and_metrics(run):
    """What training computed: the weights' bytes and the metrics without the wall-clock seconds."""
    rows = [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]
    return (run / "model.npz").read_bytes(), rows


def diagnostics_table(run) -> list[list[str]]:
    with open(run / "diagnostics.csv", newline="") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------- in a run


def test_a_run_writes_one_set_of_rows_per_epoch(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=3")
    assert code == 0, err
    [run] = runs_by_name(store).values()
    table = diagnostics_table(run)
    assert tuple(table[0]) == DIAGNOSTIC_COLUMNS == ("epoch", "layer", "name", "stat", "value")
    by_epoch = {}
    for epoch, layer, name, stat, value in table[1:]:
        by_epoch.setdefault(int(epoch), []).append((int(layer), name, stat))
        assert stat in DIAGNOSTIC_STATS and math.isfinite(float(value))
    assert sorted(by_epoch) == [1, 2, 3]
    assert by_epoch[1] == by_epoch[2] == by_epoch[3]
    # flatten | dense(64) | relu | dense(10): every layer's output, every parameter
    outputs = [(i, kind, stat) for i, kind in enumerate(("flatten", "dense", "relu", "dense"))
               for stat in ("act_mean", "act_std")]
    params = [(i, f"{i}.{p}", stat) for i in (1, 3) for p in ("W", "b")
              for stat in ("grad_norm", "weight_norm", "update_ratio")]
    assert sorted(by_epoch[1]) == sorted(outputs + params + [(2, "relu", "dead_fraction")])
    summary = json.loads((run / "summary.json").read_text())
    assert 0 < summary["diagnostics_seconds"] < summary["total_seconds"]
    assert (run / "plots" / "diagnostics.png").read_bytes()[:8] == PNG_SIGNATURE
    assert diagnose(read_diagnostic_rows(run)) == []  # a healthy run: no warning
    code, out, _ = nnexp("show", run.name, "--store", store)
    assert code == 0 and "diagnostics.csv" in out and "\ndiagnostics\n" not in out
    code, out, _ = nnexp("show", run.name, "--store", store, "--json")
    assert json.loads(out)["warnings"] == []


@pytest.mark.parametrize("engine,extra", [("fast", []), ("reference", []), ("fast", ["train.data_parallel=2"])],
                         ids=["fast", "reference", "fast-dp2"])
def test_diagnostics_change_no_bit_of_training_and_off_write_nothing(nnexp, tmp_path, store, engine, extra):
    config = tmp_path / "stateful.yaml"
    config.write_text(STATEFUL.format(engine=engine, store=store))
    for diagnostics in ("with", "without"):
        code, _, err = nnexp("run", config, "-q", f"train.diagnostics={diagnostics == 'with'}",
                             f"tracking.name={diagnostics}", *extra)
        assert code == 0, err
    runs = runs_by_name(store)
    # the diagnostics read what training leaves behind and write nothing back: the same training, exact
    assert weights_and_metrics(runs["with"]) == weights_and_metrics(runs["without"])
    assert not (runs["without"] / "diagnostics.csv").exists()
    assert "diagnostics_seconds" not in json.loads((runs["without"] / "summary.json").read_text())
    table = diagnostics_table(runs["with"])
    assert {row[0] for row in table[1:]} == {"1", "2", "3"}
    stats = {(row[2], row[3]): float(row[4]) for row in table[1:] if row[0] == "3"}
    assert 0 <= stats[("relu", "dead_fraction")] <= 1 and 0 <= stats[("leaky_relu", "dead_fraction")] <= 1
    assert stats[("0.W", "grad_norm")] > 0 and 0 < stats[("0.W", "update_ratio")] < 1


def test_engines_and_shards_record_the_same_diagnostics(nnexp, tiny_config, store):
    """The fast engine, its two-shard data parallelism (the combined gradient) and the
    reference engine: float32 rounding apart, the same numbers."""
    for name, extra in (("fast", []), ("reference", ["model.engine=reference"]), ("dp2", ["train.data_parallel=2"])):
        code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=1", "tracking.plots=false",
                             f"tracking.name={name}", *extra)
        assert code == 0, err
    tables = {name: pd.read_csv(run / "diagnostics.csv").set_index(["layer", "name", "stat"])["value"]
              for name, run in runs_by_name(store).items()}
    for other in ("reference", "dp2"):
        assert list(tables[other].index) == list(tables["fast"].index)
        np.testing.assert_allclose(tables[other], tables["fast"], rtol=2e-3, atol=1e-5, err_msg=other)


def test_a_resumed_run_drops_the_rows_after_its_checkpoint(nnexp, tmp_path, store, monkeypatch):
    """Killed after epoch 3's rows were written but before its checkpoint: the resumed
    run's diagnostics.csv is the uninterrupted run's, byte for byte, and its plots
    show every epoch, those before the resume too."""
    config = tmp_path / "stateful.yaml"
    config.write_text(STATEFUL.format(engine="fast", store=store).replace("epochs: 3", "epochs: 4"))
    assert nnexp("run", config, "-q", "tracking.name=reference")[0] == 0
    real_save, saves = checkpoint.save, []

    def die_on_third(run_dir, ckpt):
        saves.append(1)
        if len(saves) == 3:
            raise KeyboardInterrupt
        real_save(run_dir, ckpt)

    monkeypatch.setattr(checkpoint, "save", die_on_third)
    assert nnexp("run", config, "-q", "tracking.name=stopped", "tracking.plots=true")[0] == 130
    runs = runs_by_name(store)
    assert {row[0] for row in diagnostics_table(runs["stopped"])[1:]} == {"1", "2", "3"}
    monkeypatch.setattr(checkpoint, "save", real_save)
    drawn = {}
    monkeypatch.setattr(plots, "plot_diagnostics", lambda rows, path: drawn.update(diagnostics=rows))
    monkeypatch.setattr(plots, "plot_learning_curves", lambda rows, path: drawn.update(curves=rows))
    code, _, err = nnexp("resume", runs["stopped"].name, "--store", store, "-q")
    assert code == 0, err
    # resuming computes every epoch as the uninterrupted run does: exact
    assert (runs["stopped"] / "diagnostics.csv").read_bytes() == (runs["reference"] / "diagnostics.csv").read_bytes()
    table = diagnostics_table(runs["stopped"])
    assert [[str(v) for v in row.values()] for row in drawn["diagnostics"]] == table[1:]
    assert all(list(row) == table[0] for row in drawn["diagnostics"])
    assert [row["epoch"] for row in drawn["curves"]] == [1, 2, 3, 4]


def test_truncating_keeps_the_checkpoints_epochs_and_drops_a_half_written_row(tmp_path):
    run = RunStore(tmp_path / "runs").create("t")
    for epoch in (1, 2, 3):
        run.log_diagnostics([(epoch, 0, "relu", "dead_fraction", 0.25), (epoch, 1, "1.W", "grad_norm", 1.5)])
    with open(run.diagnostics_path, "a") as f:
        f.write("4,0,relu,dead_fr")  # a process killed in the middle of a row
    run.truncate_diagnostics(2)
    assert run.diagnostics_path.read_text().splitlines() == [
        "epoch,layer,name,stat,value", "1,0,relu,dead_fraction,0.25", "1,1,1.W,grad_norm,1.5",
        "2,0,relu,dead_fraction,0.25", "2,1,1.W,grad_norm,1.5"]
    run.truncate_diagnostics(0)
    assert not run.diagnostics_path.exists()
    run.truncate_diagnostics(0)  # no file: nothing to do


def test_the_default_leaves_the_checkpoint_digest_as_it_was():
    cfg = validate({"model": {"layers": [{"type": "dense", "units": 10}]}})
    assert cfg["train"]["diagnostics"] is True
    without = copy.deepcopy(cfg)
    del without["train"]["diagnostics"]  # a config written before the key existed
    assert checkpoint.config_digest(cfg) == checkpoint.config_digest(without)
    off = copy.deepcopy(cfg)
    off["train"]["diagnostics"] = False   # it shapes no number: a run may go on with them off
    assert checkpoint.config_digest(off) == checkpoint.config_digest(cfg)
    other = copy.deepcopy(cfg)
    other["train"]["seed"] = 1
    assert checkpoint.config_digest(other) != checkpoint.config_digest(cfg)


def test_diagnostics_must_be_true_or_false(nnexp, tiny_config):
    code, _, err = nnexp("run", tiny_config, "train.diagnostics=sometimes")
    assert code == 2 and "train.diagnostics" in err and "true or false" in err


# ---------------------------------------------------------------- the statistics by hand


def dense_model(activation, W, b):
    """Dense(2 -> 3) and ``activation``, with the given weights (float64)."""
    model = build_model([{"type": "dense", "units": 3}, {"type": activation}, {"type": "dense", "units": 10}],
                        input_shape=(2,), rng=np.random.default_rng(0), dtype=np.float64)
    model.layers[0].params["W"][...] = W
    model.layers[0].params["b"][...] = b
    return model


PROBE = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])


def stats_of(rows, layer):
    return {stat: value for _, i, _, stat, value in rows if i == layer}


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_dead_fraction_by_hand(activation):
    # unit 0 is negative for every image, unit 1 positive for one, unit 2 exactly 0 for every image
    W = np.array([[-1.0, 2.0, 0.0], [-1.0, -3.0, 0.0]])
    model = dense_model(activation, W, np.array([-0.1, 0.0, 0.0]))
    rows = Diagnostics(model, PROBE).rows(1)
    pre = PROBE @ W + np.array([-0.1, 0.0, 0.0])
    alpha = 1.0 if activation == "relu" else 0.01
    post = np.where(pre > 0, pre, 0.0 if activation == "relu" else alpha * pre)
    stats = stats_of(rows, 1)
    assert stats["dead_fraction"] == pytest.approx(2 / 3)
    assert stats["act_mean"] == pytest.approx(post.mean(), rel=1e-5)
    assert stats["act_std"] == pytest.approx(post.std(), rel=1e-5)
    assert {(name, stat) for _, i, name, stat, _ in rows if i == 1} == {
        (activation, "act_mean"), (activation, "act_std"), (activation, "dead_fraction")}


def test_saturated_fraction_by_hand():
    # sigmoid on images (1, 0) and (1, 1): unit 0 at +20 and -20 (saturated, both ways),
    # unit 1 at 4 (0.982: not saturated), unit 2 at -8 (0.0003: saturated)
    sigmoid = dense_model("sigmoid", np.array([[20.0, 4.0, -8.0], [-40.0, 0.0, 0.0]]), np.zeros(3))
    rows = Diagnostics(sigmoid, np.array([[1.0, 0.0], [1.0, 1.0]])).rows(1)
    assert stats_of(rows, 1)["saturated_fraction"] == pytest.approx(2 / 3)
    tanh = dense_model("tanh", np.array([[3.0, 0.5, -3.0], [0.0, 0.0, 0.0]]), np.zeros(3))
    rows = Diagnostics(tanh, np.array([[1.0, 0.0], [2.0, 0.0]])).rows(1)  # tanh(3) = 0.995 > 0.99
    assert stats_of(rows, 1)["saturated_fraction"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("build", [build_model, build_fast_model], ids=["reference", "fast"])
def test_a_conv_channel_is_dead_when_no_pixel_of_any_image_is_positive(build):
    model = build([{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                   {"type": "dense", "units": 10}], input_shape=(1, 6, 6), rng=np.random.default_rng(1))
    conv = model.layers[0]
    conv.params["W"][...] = 0.0
    conv.params["b"][...] = [-1.0, 0.0, 1.0, 0.0]      # channels 0 and 1 dead, 2 alive
    conv.params["W"][3, 0, 1, 1] = 1.0                 # channel 3: the image itself, positive at one pixel
    x = np.zeros((3, 1, 6, 6), np.float32)
    x[2, 0, 4, 5] = 0.5
    stats = stats_of(Diagnostics(model, x).rows(7), 1)
    assert stats["dead_fraction"] == pytest.approx(0.5)


def test_gradient_weight_norms_and_update_ratio_by_hand():
    model = dense_model("relu", np.ones((2, 3)), np.zeros(3))
    diagnostics = Diagnostics(model, PROBE)
    dense = model.layers[0]
    diagnostics.before_last_step()
    dense.params["W"][...] += np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 4.0]])  # the step: a change of norm 5
    dense.grads["W"][...] = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])     # norm 3
    rows = {(name, stat): value for _, _, name, stat, value in diagnostics.rows(2)}
    weight_norm = math.sqrt(4 * 1 + 16 + 25)                                  # [[4,1,1],[1,1,5]]
    assert rows[("0.W", "grad_norm")] == pytest.approx(3.0)
    assert rows[("0.W", "weight_norm")] == pytest.approx(weight_norm, rel=1e-5)
    assert rows[("0.W", "update_ratio")] == pytest.approx(5.0 / weight_norm, rel=1e-5)
    assert math.isnan(rows[("0.b", "update_ratio")])  # unchanged zeros: no ratio to speak of
    again = {(name, stat): value for _, _, name, stat, value in diagnostics.rows(3)}
    assert math.isnan(again[("0.W", "update_ratio")])  # no copy taken before this epoch's last step


def test_layers_are_named_by_their_config_type():
    model = build_fast_model([{"type": "conv2d", "out_channels": 2}, {"type": "batchnorm"}, {"type": "leaky_relu"},
                              {"type": "maxpool2d"}, {"type": "dropout"}, {"type": "dense", "units": 10},
                              {"type": "sigmoid"}, {"type": "tanh"}], rng=np.random.default_rng(0))
    assert [layer_type(layer) for layer in model.layers] == [
        "conv2d", "batchnorm", "leaky_relu", "maxpool2d", "dropout", "flatten", "dense", "sigmoid", "tanh"]


def test_the_probe_is_the_first_training_images_and_touches_no_state():
    model = build_fast_model([{"type": "dense", "units": 8}, {"type": "batchnorm"}, {"type": "relu"},
                              {"type": "dropout", "p": 0.5}, {"type": "dense", "units": 10}],
                             rng=np.random.default_rng(0))
    x = np.random.default_rng(1).random((PROBE_SIZE + 50, 1, 28, 28)).astype(np.float32)
    diagnostics = Diagnostics(model, x)
    assert np.array_equal(diagnostics.probe, x[:PROBE_SIZE])
    dropout_state = model.layers[4].rng.bit_generator.state
    before = model.state_dict()
    grads = {name: g.copy() for name, _, g in model.parameters()}
    diagnostics.before_last_step()
    diagnostics.rows(1)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # weights and running statistics
    assert all(np.array_equal(grads[name], g) for name, _, g in model.parameters())
    assert model.layers[4].rng.bit_generator.state == dropout_state


# ---------------------------------------------------------------- the rules


def rows_for(epochs: int, **series) -> list[dict]:
    """Diagnostics rows: ``series`` maps 'layer|name|stat' to one value per epoch."""
    rows = []
    for key, values in series.items():
        layer, name, stat = key.split("|")
        assert len(values) == epochs
        rows += [{"epoch": e, "layer": int(layer), "name": name, "stat": stat, "value": v}
                 for e, v in enumerate(values, start=1)]
    return rows


HEALTHY = {"1|relu|dead_fraction": [0.1, 0.2, 0.3], "3|relu|dead_fraction": [0.0, 0.5, 0.5],
           "0|0.W|grad_norm": [0.5, 0.4, 0.01], "2|2.W|grad_norm": [1.0, 1.0, 1.0],
           "4|4.W|grad_norm": [2.0, 1.0, 9.0], "4|4.b|grad_norm": [1e-9, 1e-9, 1e-9],
           "0|0.W|update_ratio": [0.2, 0.1, 0.01], "0|0.b|update_ratio": [5.0, 5.0, 5.0],
           "2|2.W|update_ratio": [float("nan")] * 3}


def test_a_healthy_run_gives_no_warning():
    assert diagnose(rows_for(3, **HEALTHY)) == []
    assert diagnose([]) == []


def test_a_mostly_dead_relu_layer_is_reported_since_the_epoch_it_died():
    four_epochs = {key: values + values[-1:] for key, values in HEALTHY.items()}
    rows = rows_for(4, **four_epochs | {"1|relu|dead_fraction": [0.7, 0.2, 0.63, 0.9],
                                        "2|leaky_relu|dead_fraction": [0.6, 0.6, 0.6, 0.6]})
    warnings = diagnose(rows)
    assert [(w["rule"], w["layer"], w["since"], w["epoch"]) for w in warnings] == [
        ("dead_units", 1, 3, 4), ("dead_units", 2, 1, 4)]
    assert warnings[0]["message"] == ("layer 1 (relu): 90% of its units are dead (output 0 for every probe image) "
                                      "since epoch 3")
    assert "output <= 0" in warnings[1]["message"]


def test_vanishing_gradients_compare_the_first_weights_with_the_last():
    rows = rows_for(3, **HEALTHY | {"0|0.W|grad_norm": [1e-2, 2e-6, 1e-7]})
    [warning] = diagnose(rows)
    assert (warning["rule"], warning["layer"], warning["name"], warning["since"]) == ("vanishing_gradients", 0,
                                                                                     "0.W", 2)
    assert warning["value"] == pytest.approx(1e-7 / 9.0)
    assert warning["message"].startswith("vanishing gradients: the first layer's weights (0.W) get a gradient "
                                         "90,000,000 times smaller than the last layer's (4.W)")
    assert diagnose(rows_for(3, **HEALTHY | {"0|0.W|grad_norm": [1e-2, 2e-6, 0.0095]})) == []  # 1/947: fine


def test_large_updates_name_the_layer_and_its_weights():
    rows = rows_for(3, **HEALTHY | {"2|2.W|update_ratio": [0.5, 0.3, 0.35], "2|dense|act_mean": [0.0] * 3})
    [warning] = diagnose(rows)
    assert (warning["rule"], warning["name"], warning["since"], warning["value"]) == ("large_updates", "2.W", 1, 0.35)
    assert warning["message"] == ("layer 2 (dense): one step changes its weights (2.W) by 35% of their norm "
                                  "(update ratio 0.35, above 0.1) since epoch 1: the steps are too large; "
                                  "try a smaller learning rate")
    assert RULES["large_updates"].threshold == 0.1 and RULES["dead_units"].threshold == 0.5
    assert RULES["vanishing_gradients"].threshold == 1e-3


def crafted_run(store, rows: list[dict]):
    run = RunStore(store).create("crafted")
    run.start("crafted", epochs_planned=3)
    for epoch in sorted({r["epoch"] for r in rows}):
        run.log_diagnostics([(r["epoch"], r["layer"], r["name"], r["stat"], r["value"])
                             for r in rows if r["epoch"] == epoch])
    return run


def test_show_warns_in_plain_words_and_lists_the_warnings_in_json(nnexp, store):
    rows = rows_for(3, **HEALTHY | {"1|relu|dead_fraction": [0.1, 0.6, 0.63], "0|0.W|grad_norm": [1e-5] * 3,
                                    "2|2.W|update_ratio": [0.5, 0.3, 0.35]})
    run = crafted_run(store, rows)
    code, out, err = nnexp("show", run.id, "--store", store)
    assert code == 0, err
    block = out.split("\ndiagnostics\n")[1].split("\nfiles\n")[0].splitlines()
    assert block == ["  layer 1 (relu): 63% of its units are dead (output 0 for every probe image) since epoch 2",
                     "  vanishing gradients: the first layer's weights (0.W) get a gradient 900,000 times smaller "
                     "than the last layer's (4.W): norm 1e-05 against 9 (ratio under 0.001) since epoch 1; "
                     "the first layers barely learn",
                     "  layer 2: one step changes its weights (2.W) by 35% of their norm (update ratio 0.35, "
                     "above 0.1) since epoch 1: the steps are too large; try a smaller learning rate"]
    code, out, _ = nnexp("show", run.id, "--store", store, "--json")
    warnings = json.loads(out)["warnings"]
    assert [w["rule"] for w in warnings] == ["dead_units", "vanishing_gradients", "large_updates"]
    assert [w["message"] for w in warnings] == [line[2:] for line in block]


def test_a_half_written_last_row_is_ignored(tmp_path):
    path = tmp_path / "diagnostics.csv"
    path.write_text("epoch,layer,name,stat,value\n1,2,relu,dead_fraction,0.75\n2,2,relu,dead_fr")
    assert read_diagnostic_rows(path) == [{"epoch": 1, "layer": 2, "name": "relu", "stat": "dead_fraction",
                                       "value": 0.75}]
    assert read_diagnostic_rows(tmp_path / "none.csv") == []
    assert read_diagnostic_rows(tmp_path) == read_diagnostic_rows(path)


def test_a_deep_sigmoid_network_s_gradients_vanish_for_real(nnexp, tiny_config, store):
    layers = ", ".join(["{type: dense, units: 32, init: small_normal}, {type: sigmoid}"] * 6)
    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=1", "tracking.plots=false",
                         f"model.layers=[{layers}, {{type: dense, units: 10, init: small_normal}}]",
                         "optimizer.name=sgd", "optimizer.lr=0.1")
    assert code == 0, err
    [run] = runs_by_name(store).values()
    warnings = diagnose(read_diagnostic_rows(run))
    assert "vanishing_gradients" in [w["rule"] for w in warnings]


# ---------------------------------------------------------------- the plot


def diagnostics_rows(epochs: int) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        rows += [(epoch, 2, "relu", "dead_fraction", min(1.0, 0.2 * epoch)),
                 (epoch, 4, "sigmoid", "saturated_fraction", 0.1),
                 (epoch, 1, "1.W", "grad_norm", 10.0 ** -epoch), (epoch, 3, "3.W", "grad_norm", 0.0),
                 (epoch, 1, "1.W", "update_ratio", 0.05 * epoch), (epoch, 1, "1.b", "update_ratio", 100.0)]
    return [dict(zip(DIAGNOSTIC_COLUMNS, row)) for row in rows]


@pytest.mark.parametrize("epochs", [1, 6])
def test_diagnostics_png(tmp_path, epochs):
    import matplotlib.image as mpimg

    path = tmp_path / "plots" / "diagnostics.png"
    plot_diagnostics(diagnostics_rows(epochs), path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    assert pixels.shape[1] > 1000 and np.ptp(pixels) > 0


def test_diagnostics_png_without_rows_or_with_missing_columns(tmp_path):
    plot_diagnostics([], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="lack columns: stat"):
        plot_diagnostics([{k: v for k, v in row.items() if k != "stat"} for row in diagnostics_rows(2)],
                         tmp_path / "bad.png")



def test_the_spread_of_activations_beyond_float32_squares_is_still_measured():
    """A diverging network's outputs (1e20 and more) square beyond float32's range."""
    y = np.array([[1e20, -1e20], [3e20, -3e20]], np.float32)
    stats = dict(output_stats(Dense(2, 2), y))
    assert stats["act_mean"] == 0.0
    assert stats["act_std"] == pytest.approx(math.sqrt(5) * 1e20, rel=1e-6)


def test_show_reads_the_diagnostics_without_numpy_or_pandas(store):
    import subprocess
    import sys

    run = crafted_run(store, rows_for(3, **HEALTHY | {"1|relu|dead_fraction": [0.6, 0.6, 0.6]}))
    code = ("import sys\nfrom nnexp.command import main\n"
            f"main(['show', {run.id!r}, '--store', {str(store)!r}])\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "units are dead" in out and out.strip().splitlines()[-1] == "[]"


class _EpochRecorder:
    """The engine's steps (and their model) and the optimizer of one epoch in one object
    that records what train_one_epoch calls, in order."""

    xp = np

    def __init__(self):
        self.events = []
        self.model = self

    def parameters(self):  # the model's: none
        return []

    def step(self, *args):  # the steps' step(xb, yb, step), or the optimizer's step(lr)
        self.events.append("batch" if len(args) == 3 else "update")
        return 0.5, 0


@pytest.mark.parametrize("n, batch_size", [(100, 32), (96, 32), (3000, 64), (10, 64), (65, 64)])
def test_the_weights_are_copied_once_just_before_an_epoch_s_last_step(n, batch_size):
    r = _EpochRecorder()
    probe = SimpleNamespace(before_last_step=lambda: r.events.append("copy"))
    setup = Setup(cfg={"data": {"batch_size": batch_size}, "train": {"epochs": 1}}, data=None,
                  train_set=(np.zeros((n, 4), np.float32), np.zeros(n, np.int64)), val_set=None, model=r,
                  optimizer=r, steps=r, schedule=lambda step: 0.1, rngs={"shuffle": np.random.default_rng(0)},
                  augment=None, ema=None, diagnostics=probe, stopping=None, run=None, log=None, progress=False,
                  on_epoch=None, started=0.0, data_seconds=0.0)
    train_one_epoch(setup, 1, 0)
    batches = math.ceil(n / batch_size)
    assert r.events == ["batch", "update"] * (batches - 1) + ["batch", "copy", "update"]
