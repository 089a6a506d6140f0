"""Config loading, overrides and validation messages."""

import copy

import pytest
import yaml

from nnexp.augment import AUGMENT_SPECS
from nnexp.commands import training as training_commands
from nnexp.config import EARLY_STOPPING, SCHEMA, apply_overrides, load_config, parse_override, set_path, validate
from nnexp.errors import ConfigError
from nnexp.nn import LAYER_SPECS, OPTIMIZER_SPECS, REQUIRED, SCHEDULE_SPECS

BASE = {
    "model": {"layers": [{"type": "dense", "units": 32}, {"type": "relu"}, {"type": "dense", "units": 10}]},
}


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        validate(raw, source="c.yaml")
    return str(exc.value)


def test_defaults_are_filled_in():
    cfg = validate(BASE)
    assert cfg["data"]["dataset"] == "mnist"
    assert cfg["data"]["batch_size"] == 128
    assert cfg["optimizer"] == {"name": "adam", "lr": 0.001, **{k: cfg["optimizer"][k] for k in cfg["optimizer"] if k not in ("name", "lr")}}
    assert cfg["schedule"]["name"] == "constant"
    assert cfg["train"]["epochs"] == 10
    assert cfg["model"]["layers"][0] == {"type": "dense", "units": 32, "init": "he"}


def test_shipped_configs_validate():
    for name in ("configs/mlp.yaml", "configs/seed-2layer.yaml"):
        cfg = load_config(name)
        assert cfg["model"]["layers"][-1]["units"] == 10


def test_unknown_key_suggests_the_right_one():
    msg = error_of({**BASE, "optimizer": {"name": "adam", "learning_rate": 0.1}})
    assert "unknown key 'optimizer.learning_rate'" in msg
    msg = error_of({**BASE, "trian": {}})
    assert "unknown key 'trian'" in msg and "did you mean 'train'" in msg
    msg = error_of({**BASE, "train": {"epoch": 3}})
    assert "did you mean 'train.epochs'" in msg


def test_wrong_type_names_key_and_value():
    msg = error_of({**BASE, "train": {"epochs": "ten"}})
    assert "'train.epochs' must be an integer" in msg and "'ten'" in msg
    msg = error_of({**BASE, "train": {"epochs": True}})
    assert "'train.epochs' must be an integer" in msg
    msg = error_of({**BASE, "optimizer": {"name": "adam", "lr": [1]}})
    assert "'optimizer.lr' must be a number" in msg


def test_out_of_range_values():
    assert "'data.batch_size' must be > 0, got 0" in error_of({**BASE, "data": {"batch_size": 0}})
    assert "'optimizer.lr' must be > 0" in error_of({**BASE, "optimizer": {"lr": -1}})
    assert "'train.label_smoothing' must be in [0, 1)" in error_of({**BASE, "train": {"label_smoothing": 1.5}})
    layers = [{"type": "dense", "units": 10}, {"type": "dropout", "p": 1.0}]
    msg = error_of({"model": {"layers": layers}})  # the layer's own rule, asked of the code that builds it
    assert "model.layers" in msg and "p must be in [0, 1)" in msg and "1.0" in msg


def test_unknown_names_list_what_is_allowed():
    msg = error_of({**BASE, "optimizer": {"name": "adm"}})
    assert "'optimizer.name' is 'adm'" in msg and "did you mean 'adam'" in msg and "sgd" in msg
    msg = error_of({"model": {"layers": [{"type": "dens", "units": 10}]}})
    assert "'model.layers[0].type' is 'dens'" in msg and "did you mean 'dense'" in msg
    msg = error_of({**BASE, "data": {"dataset": "cifar"}})
    assert "'data.dataset' is 'cifar'" in msg and "fashion-mnist" in msg
    msg = error_of({"model": {"layers": [{"type": "dense", "units": 10, "init": "glorot"}]}})
    assert "model.layers" in msg and "'glorot'" in msg and "xavier" in msg


def test_layer_keys_are_checked():
    msg = error_of({"model": {"layers": [{"type": "dense", "unit": 10}]}})
    assert "unknown key 'model.layers[0].unit'" in msg and "did you mean 'model.layers[0].units'" in msg
    msg = error_of({"model": {"layers": [{"type": "dense"}]}})
    assert "missing required key 'model.layers[0].units'" in msg


def test_last_layer_must_have_ten_units():
    msg = error_of({"model": {"layers": [{"type": "dense", "units": 7}]}})
    assert "last dense layer must have 10 units" in msg


def test_float_strings_in_scientific_notation_are_accepted():
    cfg = validate({**BASE, "optimizer": {"name": "adam", "lr": "1e-3"}})
    assert cfg["optimizer"]["lr"] == 1e-3


def test_early_stopping_needs_a_validation_set():
    msg = error_of({**BASE, "data": {"val_size": 0}, "train": {"early_stopping": {"patience": 2}}})
    assert "val_size" in msg


def test_data_parallel_needs_a_positive_count_of_at_most_a_batch():
    assert "'train.data_parallel' must be > 0, got 0" in error_of({**BASE, "train": {"data_parallel": 0}})
    assert "'train.data_parallel' must be an integer" in error_of({**BASE, "train": {"data_parallel": 1.5}})
    msg = error_of({**BASE, "data": {"batch_size": 4}, "train": {"data_parallel": 5}})
    assert "'train.data_parallel' is 5, more shards than the 4 images of a batch" in msg
    assert validate({**BASE, "data": {"batch_size": 4}, "train": {"data_parallel": 4}})["train"]["data_parallel"] == 4
    assert validate(BASE)["train"]["data_parallel"] == 1


def test_run_name_cannot_escape_the_store():
    for bad in ("../evil", "/abs", "a/b", "x" * 80, "a\x00b"):
        msg = error_of({**BASE, "tracking": {"name": bad}})
        assert "'tracking.name'" in msg


def test_overrides_parse_yaml_scalars():
    assert parse_override("optimizer.lr=0.01") == (["optimizer", "lr"], 0.01)
    assert parse_override("train.restore_best=true") == (["train", "restore_best"], True)
    assert parse_override("tracking.tags=[a, b]") == (["tracking", "tags"], ["a", "b"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("optimizer.lr")
    with pytest.raises(ConfigError, match="empty component"):
        parse_override("optimizer..lr=1")


def test_overrides_apply_to_nested_keys_and_list_items():
    cfg = apply_overrides(BASE, ["optimizer.lr=0.01", "model.layers.0.units=64", "train.epochs=3"])
    assert cfg["optimizer"]["lr"] == 0.01
    assert cfg["model"]["layers"][0]["units"] == 64
    assert cfg["train"]["epochs"] == 3
    assert BASE["model"]["layers"][0]["units"] == 32  # the original is untouched
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides(BASE, ["model.layers.9.units=3"])


def test_override_of_unknown_key_fails_validation(tmp_path):
    path = write(tmp_path, "model:\n  layers:\n    - {type: dense, units: 10}\n")
    with pytest.raises(ConfigError, match="unknown key 'optimizer.lrr'.*did you mean 'optimizer.lr'"):
        load_config(path, ["optimizer.lrr=0.1"])


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  layers: [\n    - {type: dense\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "malformed YAML" in str(exc.value) and "line" in str(exc.value) and str(path) in str(exc.value)


def test_non_mapping_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="missing section 'model'"):
        load_config(write(tmp_path, "train: {epochs: 2}\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(path)


def test_optimizer_and_schedule_ranges_are_config_errors():
    msg = error_of({**BASE, "optimizer": {"name": "adam", "beta1": 1.5}})
    assert "optimizer" in msg and "beta1" in msg and "1.5" in msg
    msg = error_of({**BASE, "optimizer": {"name": "sgd", "momentum": -0.1}})
    assert "momentum" in msg
    msg = error_of({**BASE, "schedule": {"name": "onecycle", "warmup_epochs": 1}})
    assert "unknown key 'schedule.warmup_epochs'" in msg
    msg = error_of({**BASE, "schedule": {"name": "step"}})
    assert "missing required key 'schedule.step_epochs'" in msg
    msg = error_of({**BASE, "schedule": {"name": "onecycle", "pct_start": 2.0}})
    assert "schedule" in msg and "pct_start" in msg


def test_augment_section_is_validated():
    cfg = validate({**BASE, "data": {"augment": {"rotate": 10, "shift": 2.5}}})
    assert cfg["data"]["augment"]["rotate"] == 10.0 and cfg["data"]["augment"]["scale"] == 0.0
    assert "did you mean 'data.augment.rotate'" in error_of({**BASE, "data": {"augment": {"rotation": 10}}})
    msg = error_of({**BASE, "data": {"augment": {"p": 2}}})
    assert "augment" in msg and "p" in msg and "2" in msg
    assert validate(BASE)["data"]["augment"] is None


def test_layers_that_do_not_fit_the_image_are_config_errors():
    layers = [{"type": "conv2d", "out_channels": 8, "kernel_size": 40}, {"type": "dense", "units": 10}]
    msg = error_of({"model": {"layers": layers}})
    assert "model.layers" in msg and "40" in msg and "28" in msg
    layers = [{"type": "conv2d", "out_channels": 0}, {"type": "dense", "units": 10}]
    assert "out_channels" in error_of({"model": {"layers": layers}})


def test_every_mistake_is_reported_at_once():
    """A new user's config with a mistake in a layer and one in train: both in one message."""
    raw = {"model": {"layers": [{"type": "dense", "unit": 64}, {"type": "relu"}, {"type": "dense", "units": 10}]},
           "train": {"epochs": "three", "seeed": 1}, "optimizer": {"name": "adam", "lr": -1},
           "data": {"dataset": "cifar"}}
    with pytest.raises(ConfigError) as exc:
        validate(raw, source="c.yaml")
    lines = str(exc.value).splitlines()
    assert lines[0] == "c.yaml: 6 problems:"
    body = "\n".join(lines[1:])
    assert "'data.dataset' is 'cifar'" in body
    assert "unknown key 'model.layers[0].unit'; did you mean 'model.layers[0].units'?" in body
    assert "missing required key 'model.layers[0].units'" in body
    assert "'train.epochs' must be an integer, got 'three' (str)" in body
    assert "unknown key 'train.seeed'; did you mean 'train.seed'?" in body
    assert "'optimizer.lr' must be > 0, got -1.0" in body
    assert len(lines) == 7 and all(line.startswith("  ") for line in lines[1:])
    assert exc.value.problems == [line[2:] for line in lines[1:]]


def test_rules_of_the_code_that_builds_are_collected_after_the_schema():
    layers = [{"type": "conv2d", "out_channels": 8, "kernel_size": 40}, {"type": "dense", "units": 10}]
    raw = {"model": {"layers": layers}, "optimizer": {"name": "adam", "beta1": 1.5},
           "schedule": {"name": "onecycle", "pct_start": 2.0}, "tracking": {"name": "a/b"}}
    msg = error_of(raw)
    assert msg.startswith("c.yaml: 4 problems:")
    assert "model.layers: " in msg and "beta1" in msg and "pct_start" in msg and "'tracking.name'" in msg


def test_a_problem_is_reported_once_not_again_by_the_checks_that_need_its_value():
    msg = error_of({**BASE, "data": {"batch_size": "big"}, "train": {"data_parallel": 2}})
    assert msg == "c.yaml: 'data.batch_size' must be an integer, got 'big' (str)"
    msg = error_of({"model": {"layers": [{"type": "dense", "units": "ten"}]}})
    assert msg == "c.yaml: 'model.layers[0].units' must be an integer, got 'ten' (str)"


def test_several_mistakes_exit_2_with_all_of_them(nnexp, tmp_path):
    path = write(tmp_path, "model:\n  layers:\n  - {type: dense, unit: 10}\ntrain: {epochs: three}\n")
    code, out, err = nnexp("run", path)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: {path}: 3 problems:\n")
    assert "unknown key 'model.layers[0].unit'" in err and "'train.epochs' must be an integer" in err
    assert "missing required key 'model.layers[0].units'" in err


def _number_keys():
    """(raw config, dotted key, the key as messages name it) for every integer and
    number key of every section, layer, optimizer, schedule and augmentation."""
    layers = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    cases = []

    def add(raw, parts, shown):
        cases.append(pytest.param(raw, parts, shown, id=".".join(map(str, parts))))

    def number(spec_type):
        return spec_type in (int, float)

    for section, fields in SCHEMA.items():
        for key, spec in fields.items():
            if number(spec.type):
                add({"model": {"layers": layers}}, [section, key], f"{section}.{key}")
    for key, spec in EARLY_STOPPING.items():
        if number(spec.type):
            add({"model": {"layers": layers}, "data": {"val_size": 100}, "train": {"early_stopping": {}}},
                ["train", "early_stopping", key], f"train.early_stopping.{key}")
    for key, (typ, _) in AUGMENT_SPECS.items():
        if number(typ):
            add({"model": {"layers": layers}, "data": {"augment": {}}}, ["data", "augment", key], f"data.augment.{key}")
    for name, spec in OPTIMIZER_SPECS.items():
        for key, (typ, _) in {"lr": (float, None), **spec}.items():
            if number(typ):
                add({"model": {"layers": layers}, "optimizer": {"name": name}}, ["optimizer", key], f"optimizer.{key}")
    for name, spec in SCHEDULE_SPECS.items():
        required = {k: 2 for k, (_, default) in spec.items() if default is REQUIRED}
        for key, (typ, _) in spec.items():
            if number(typ):
                add({"model": {"layers": layers}, "schedule": {"name": name, **required}}, ["schedule", key],
                    f"schedule.{key}")
    for kind, spec in LAYER_SPECS.items():
        layer = {"type": kind, **{k: 2 for k, (_, default) in spec.items() if default is REQUIRED}}
        for key, (typ, _) in spec.items():
            if number(typ):
                raw = {"model": {"layers": [layer, *layers] if kind != "dense" else [layer]}}
                add(raw, ["model", "layers", "0", key], f"model.layers[0].{key}")
    return cases


@pytest.mark.parametrize("raw, parts, shown", _number_keys())
@pytest.mark.parametrize("value", ["true", "false"])
@pytest.mark.parametrize("how", ["file", "override"])
def test_a_boolean_is_not_a_number(nnexp, tmp_path, monkeypatch, raw, parts, shown, value, how):
    """true and false are not 1 and 0: in the file or as KEY=VALUE, exit 2 with
    the key named, before anything is trained."""
    trained = []
    monkeypatch.setattr(training_commands, "train", lambda cfg, **kw: trained.append(cfg))
    raw = {**copy.deepcopy(raw), "tracking": {"store": str(tmp_path / "runs")}}
    overrides = []
    if how == "file":
        set_path(raw, parts, value == "true", "test")
    else:
        overrides.append(f"{'.'.join(parts)}={value}")
    path = write(tmp_path, yaml.safe_dump(raw))
    code, _, err = nnexp("run", path, *overrides)
    assert code == 2 and trained == [], err
    [line] = [line for line in err.splitlines() if f"'{shown}'" in line]
    assert "must be" in line and f"got {value == 'true'} (bool)" in line


def test_malformed_yaml_names_the_line_and_column_of_the_mistake(tmp_path):
    # "seed" is indented one space more than "epochs": the ':' at line 3, column 8 is the mistake
    path = write(tmp_path, "train:\n  epochs: 3\n   seed: 1\n")
    with pytest.raises(ConfigError, match="malformed YAML at line 3, column 8: "):
        load_config(path)


def test_early_stopping_and_restore_best_with_a_validation_set_are_valid():
    cfg = validate({**BASE, "data": {"val_size": 1000},
                    "train": {"early_stopping": {"patience": 2}, "restore_best": True}})
    assert cfg["train"]["restore_best"] is True and cfg["train"]["early_stopping"]["patience"] == 2
    assert "val_size" in error_of({**BASE, "data": {"val_size": 0}, "train": {"restore_best": True}})


def test_null_ema_means_no_average_and_plots_are_drawn_by_default():
    cfg = validate({**BASE, "train": {"ema": None}})
    assert cfg["train"]["ema"] is None and cfg["tracking"]["plots"] is True
    assert validate({**BASE, "train": {"ema": 0.99}})["train"]["ema"] == 0.99


def test_mirrors_must_be_strings():
    assert "'data.mirrors' must be a list of base URLs" in error_of({**BASE, "data": {"mirrors": [1, 2]}})
    cfg = validate({**BASE, "data": {"mirrors": ["http://127.0.0.1:8000/mnist/"]}})
    assert cfg["data"]["mirrors"] == ["http://127.0.0.1:8000/mnist/"]
