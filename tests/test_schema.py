"""`nnexp schema`: the JSON Schemas editors check configs and sweep specs with say what the validators say."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from nnexp.config import InvalidConfig, load_config, validate
from nnexp.engines import ENGINES
from nnexp.nn import LAYER_SPECS
from nnexp.schema import config_schema, sweep_schema
from nnexp.sweep import load_spec

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
SHIPPED = sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("experiments/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")])
HEADER = re.compile(r"# yaml-language-server: \$schema=(\S+)\n")

CONFIG = {"data": {"dataset": "mnist", "batch_size": 32, "val_size": 100, "train_subset": 200},
          "model": {"layers": [{"type": "conv2d", "out_channels": 4}, {"type": "maxpool2d", "stride": None},
                               {"type": "flatten"}, {"type": "dense", "units": 10}]},
          "optimizer": {"lr": 0.01}, "train": {"epochs": 1, "early_stopping": None}, "tracking": {"plots": False}}


def validator(kind):
    """The schema as nnexp generates it (the committed copies are checked to be the same)."""
    return Draft202012Validator({"config": config_schema, "sweep": sweep_schema}[kind]())


def changed(cfg, path, value):
    """A copy of ``cfg`` with the key at ``path`` (a tuple of keys and list indexes) set to ``value``."""
    cfg = copy.deepcopy(cfg)
    node = cfg
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return cfg


@pytest.mark.parametrize("kind", ["config", "sweep"])
def test_the_committed_schema_is_what_nnexp_schema_prints(nnexp, kind):
    code, out, err = nnexp("schema", kind)
    assert code == 0, err
    assert (SCHEMAS / f"{kind}.schema.json").read_text() == out, \
        f"schemas/{kind}.schema.json is stale: nnexp schema {kind} > schemas/{kind}.schema.json"
    schema = json.loads(out)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_a_shipped_file_names_its_schema_and_both_checks_accept_it(path):
    header = HEADER.match(path.read_text())
    assert header, f"{path.relative_to(ROOT)}: the first line must be '# yaml-language-server: $schema=...'"
    schema_file = (path.parent / header.group(1)).resolve()
    assert schema_file.parent == SCHEMAS and schema_file.is_file(), header.group(1)
    kind = schema_file.name.split(".")[0]
    schema = Draft202012Validator(json.loads(schema_file.read_text()))
    errors = [f"{e.json_path}: {e.message}" for e in schema.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors, errors
    load_config(path) if kind == "config" else load_spec(path)  # nnexp's own validator agrees on the kind


def test_the_base_config_of_these_cases_passes_both():
    validate(CONFIG)
    assert not list(validator("config").iter_errors(CONFIG))


@pytest.mark.parametrize("path,value,named", [
    (("train", "epoch"), 3, "train.epoch"),                                    # unknown key
    (("trainer",), {}, "trainer"),                                             # unknown section
    (("model", "layers", 3, "unit"), 3, "model.layers[3].unit"),              # unknown layer option
    (("optimizer",), {"name": "sgd", "beta1": 0.9}, "optimizer.beta1"),       # adam's option, not sgd's
    (("data", "batch_size"), "big", "data.batch_size"),                       # wrong type
    (("model", "deskew"), 1, "model.deskew"),
    (("model", "layers", 0, "out_channels"), 4.5, "out_channels"),
    (("data", "augment"), {"rotate": "much"}, "data.augment.rotate"),
    (("optimizer", "lr"), 0, "optimizer.lr"),                                  # out of range
    (("train", "epochs"), 0, "train.epochs"),
    (("train", "ema"), 1.0, "train.ema"),
    (("train", "label_smoothing"), 1.0, "train.label_smoothing"),
    (("train", "early_stopping"), {"patience": 0}, "train.early_stopping.patience"),
    (("data", "dataset"), "cifar10", "data.dataset"),                         # not a choice
    (("optimizer", "name"), "lion", "optimizer.name"),
    (("model", "layers", 2), {"type": "flaten"}, "model.layers[2].type"),
    (("schedule",), {"name": "step"}, "schedule.step_epochs"),               # missing
    (("model", "layers", 3), {"type": "dense"}, "model.layers[3].units"),
    (("model", "layers"), [], "model.layers"),
    (("model", "dtype"), None, "model.dtype"),                                 # empty where not allowed
])
def test_a_config_the_validator_refuses_the_schema_refuses(path, value, named):
    cfg = changed(CONFIG, path, value)
    with pytest.raises(InvalidConfig) as info:
        validate(cfg)
    assert named in str(info.value)
    assert list(validator("config").iter_errors(cfg)), f"the schema accepts what the validator refuses: {named}"


def test_both_accept_the_optional_forms():
    for cfg in (changed(CONFIG, ("optimizer",), {"beta1": 0.5}),  # adam's options without its name
                changed(CONFIG, ("data",), None), changed(CONFIG, ("schedule",), {"name": "onecycle"}),
                changed(CONFIG, ("model", "layers", 0, "kernel_size"), 3.0)):
        validate(cfg)
        assert not [e.message for e in validator("config").iter_errors(cfg)], cfg


SPEC = {"base": "base.yaml", "method": "random", "n_trials": 4, "seed": 1, "repeats": 2,
        "parameters": {"optimizer.lr": {"distribution": "loguniform", "low": 1.0e-4, "high": 0.1},
                       "data.batch_size": [32, 64]},
        "halving": {"min_epochs": 1, "eta": 3, "max_epochs": 9}}


@pytest.mark.parametrize("path,value,named", [
    (("parameter",), {}, "unknown key 'parameter'"),                             # unknown key
    (("halving", "eta_"), 3, "unknown key 'halving.eta_'"),
    (("parameters", "optimizer.lr", "lo"), 0.1, "parameters.optimizer.lr.lo"),
    (("n_trials",), "four", "'n_trials' must be an integer"),                    # wrong type
    (("parameters", "data.batch_size"), 64, "parameters.data.batch_size is 64"),
    (("parameters", "optimizer.lr", "log"), "yes", "parameters.optimizer.lr.log"),
    (("n_trials",), 0, "'n_trials' must be >= 1"),                              # out of range
    (("halving", "eta"), 1, "'halving.eta' must be >= 2"),
    (("seed",), -1, "'seed' must be >= 0"),
    (("method",), "bayes", "'method' is 'bayes'"),                              # not a choice
    (("goal",), "up", "'goal' is 'up'"),
    (("metric",), "test_accuracy", "'metric' is 'test_accuracy'"),
    (("halving", "rule"), "bohb", "halving.rule is 'bohb'"),
    (("parameters", "optimizer.lr", "distribution"), "normal", "'distribution' is 'normal'"),
    (("metrics",), ["val_accuracy", "flops"], "metrics[1].name is 'flops'"),
    (("repeats",), None, "'repeats' must not be empty"),
])
def test_a_spec_the_validator_refuses_the_schema_refuses(tmp_path, path, value, named):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(CONFIG))
    spec = changed(SPEC, path, value)
    if path == ("metrics",):
        del spec["halving"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InvalidConfig) as info:
        load_spec(tmp_path / "spec.yaml")
    assert named in str(info.value)
    assert list(validator("sweep").iter_errors(spec)), f"the schema accepts what the validator refuses: {named}"


def test_the_spec_of_these_cases_passes_both(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    load_spec(tmp_path / "spec.yaml")
    assert not list(validator("sweep").iter_errors(SPEC))


def layer_errors(layer):
    return list(Draft202012Validator(config_schema()["properties"]["model"]["properties"]["layers"]).iter_errors([layer]))


def test_the_schema_follows_the_option_tables(monkeypatch):
    conv = {"type": "conv2d", "out_channels": 4, "groups": 2}
    assert layer_errors(conv)
    monkeypatch.setitem(LAYER_SPECS["conv2d"], "groups", (int, 1))
    assert not layer_errors(conv)
    fast_conv = {"type": "conv2d", "out_channels": 4, "algorithm": "winograd"}
    assert not layer_errors(fast_conv)  # an engine's own option is a key of the layer
    monkeypatch.delitem(ENGINES["fast"].layer_options["conv2d"], "algorithm")
    assert layer_errors(fast_conv)
