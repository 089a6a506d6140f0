"""model.engine: the reference and the fast engine through the whole program.

The fast engine is the default, and its numbers are pinned: short runs of
every shipped config on the fast engine (configs/seed-2layer.yaml, which
names the reference engine, with model.engine left out; and configs/cnn.yaml with
train.data_parallel=2) give byte-identical model.npz, metrics and test
figures with this code and with the code of PINNED_COMMIT, whose runs the
README's results come from.  The expected files are made inside the test, by
that commit's nnexp (taken from this repository's history with git
archive), on the same machine: the bits depend on the CPU and BLAS, so they
cannot be stored.
"""

import copy
import csv
import json
import os
import subprocess
import sys
import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnexp import checkpoint
from nnexp.config import load_config
from nnexp.engines import ENGINES

REPO = Path(__file__).resolve().parent.parent
#: the code whose training numbers the fast engine reproduces bit for bit
PINNED_COMMIT = "9b99b8f5086a731252aa70876f8da33f5b336df0"
SHORT = ["train.epochs=2", "data.train_subset=256", "data.val_size=128", "tracking.plots=false", "-q"]
SHIPPED = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
CASES = [(name, []) for name in SHIPPED] + [("cnn.yaml", ["train.data_parallel=2"])]


def test_every_shipped_config_is_covered():
    assert len(SHIPPED) >= 7 and "cnn.yaml" in SHIPPED and "seed-2layer.yaml" in SHIPPED


@pytest.fixture(scope="module")
def pinned_code(tmp_path_factory):
    """The nnexp package of PINNED_COMMIT, unpacked into a folder of its own."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{PINNED_COMMIT}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"commit {PINNED_COMMIT[:12]} is not in this clone's history (a shallow clone?)")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", PINNED_COMMIT, "nnexp"],
                             capture_output=True, check=True).stdout
    root = tmp_path_factory.mktemp("pinned")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def on_the_fast_engine(config: str, folder: Path) -> Path:
    """A copy of a shipped config in ``folder`` with its model.engine left out: the fast
    engine's network (the pinned code has no other), the same for a config on the reference one."""
    cfg = yaml.safe_load((REPO / "configs" / config).read_text())
    cfg["model"].pop("engine", None)
    path = folder / config
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train(code: Path, config: Path, store: Path, extra: list[str]) -> Path:
    """`nnexp run` of a config with the nnexp package found in ``code``."""
    env = dict(os.environ, PYTHONPATH=str(code))
    done = subprocess.run([sys.executable, "-c", "import sys; from nnexp.cli import main; main(sys.argv[1:])",
                           "run", str(config), f"tracking.store={store}", *SHORT, *extra],
                          env=env, cwd=str(code), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = [p for p in store.iterdir() if p.is_dir()]
    return run


def outcome(run: Path) -> tuple:
    """What must not change: the weights' bytes, every metric but the wall-clock
    seconds, the test figures."""
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for row in rows:
        row.pop("seconds")
    s = json.loads((run / "summary.json").read_text())
    figures = {k: s.get(k) for k in ("test_accuracy", "test_loss", "final_val_accuracy", "final_val_loss",
                                     "final_train_loss", "final_train_accuracy", "params")}
    return (run / "model.npz").read_bytes(), rows, figures


@pytest.mark.integration
@pytest.mark.parametrize("config,extra", CASES, ids=[f"{c}{'-dp2' if e else ''}" for c, e in CASES])
def test_shipped_configs_give_the_pinned_bits(pinned_code, tmp_path, config, extra):
    if config.startswith("fashion") and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("dataset-fashion-mnist not installed: apt-get install dataset-fashion-mnist")
    jobs = [(pinned_code, tmp_path / "pinned"), (REPO, tmp_path / "now")]
    for _, store in jobs:
        store.mkdir()
    path = on_the_fast_engine(config, tmp_path)
    with ThreadPoolExecutor(2) as pool:   # the two processes side by side
        pinned, now = pool.map(lambda job: outcome(train(job[0], path, job[1], extra)), jobs)
    # the same operations on the same shapes, on one machine with one thread count: exact on any kernel
    assert now[0] == pinned[0], f"{config} {extra}: model.npz differs from the pinned code's"
    assert now[1] == pinned[1] and now[2] == pinned[2]


# ---------------------------------------------------------------- the reference engine


def test_reference_engine_trains_evaluates_and_predicts(nnexp, tiny_config, store):
    code, out, err = nnexp("run", tiny_config, "-q", "model.engine=reference")
    assert code == 0, err
    [run] = [p for p in store.iterdir() if p.is_dir()]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["test_accuracy"] > 0.8
    assert "engine: reference" in (run / "config.yaml").read_text()
    code, out, err = nnexp("evaluate", run.name, "--store", store, "--json")
    assert code == 0 and json.loads(out)["matches_recorded"], err


def test_fast_and_reference_runs_agree(nnexp, tiny_config, store):
    """The same config and seed on both engines: float32 rounding apart, the same training."""
    for engine in ("fast", "reference"):
        code, _, err = nnexp("run", tiny_config, "-q", f"model.engine={engine}", f"tracking.name={engine}")
        assert code == 0, err
    runs = {json.loads((p / "summary.json").read_text())["name"]: p for p in store.iterdir() if p.is_dir()}
    with np.load(runs["fast"] / "model.npz") as a, np.load(runs["reference"] / "model.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-4, err_msg=key)
    fa, fb = (json.loads((runs[n] / "summary.json").read_text()) for n in ("fast", "reference"))
    assert abs(fa["test_accuracy"] - fb["test_accuracy"]) < 0.01


def test_data_parallel_on_the_reference_engine_is_a_config_error(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "model.engine=reference", "train.data_parallel=2")
    assert code == 2 and "shards are computed by the fast engine only" in err
    assert not store.exists()


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
def test_a_fast_engine_option_on_the_reference_engine_is_a_config_error(nnexp, tmp_path, algorithm):
    config = tmp_path / "cnn.yaml"
    config.write_text("model:\n  engine: reference\n  layers:\n"
                      f"    - {{type: conv2d, out_channels: 8, algorithm: {algorithm}}}\n"
                      "    - {type: dense, units: 10}\n")
    code, _, err = nnexp("run", config)
    assert code == 2 and "'model.layers[0].algorithm' is an option of the fast engine only" in err
    assert len(err.strip().splitlines()) == 1   # one line: no second complaint about the same key


def test_engine_must_be_known(nnexp, tiny_config):
    code, _, err = nnexp("run", tiny_config, "model.engine=turbo")
    assert code == 2 and "model.engine" in err and "fast" in err and "reference" in err


REFERENCE_CNN = ("model:\n  engine: reference\n  layers:\n"
                 "    - {type: conv2d, out_channels: 8, algorithm: auto}\n"
                 "    - {type: dense, units: 10}\n")


def test_a_fast_engine_option_at_its_default_is_dropped_on_the_reference_engine(tmp_path):
    """A config resolved when every engine listed the option (a reference run's config.yaml) still loads."""
    (tmp_path / "cnn.yaml").write_text(REFERENCE_CNN)
    cfg = load_config(tmp_path / "cnn.yaml")
    assert "algorithm" not in cfg["model"]["layers"][0]
    model = ENGINES["reference"].build_model(cfg["model"]["layers"], (1, 28, 28), np.random.default_rng(0))
    assert type(model.layers[0]).__name__ == "Conv2D"


def test_a_reference_config_keeps_its_checkpoint_digest(tmp_path):
    """The digest counts every engine's layer options at their defaults, as the configs of
    checkpoints written when every engine listed them did."""
    (tmp_path / "cnn.yaml").write_text(REFERENCE_CNN.replace(", algorithm: auto", ""))
    cfg = load_config(tmp_path / "cnn.yaml")
    as_resolved_with_every_option = copy.deepcopy(cfg)
    as_resolved_with_every_option["model"]["layers"][0]["algorithm"] = "auto"
    assert checkpoint.config_digest(cfg) == checkpoint.config_digest(as_resolved_with_every_option)
    fast = load_config(tmp_path / "cnn.yaml", ["model.engine=fast"])
    assert checkpoint.config_digest(fast) != checkpoint.config_digest(cfg)   # the engine still counts
