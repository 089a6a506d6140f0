"""Layers of the user's own, named in a config by file and class: checked, trained on
both engines, gradient-checked, kept with the run, and never imported by a listing."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import sys
import textwrap
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnexp.config import InvalidConfig, load_config
from nnexp.engines import ENGINES
from nnexp.gradients import TOLERANCE, check_config
from nnexp.layer_code import CODE, MANIFEST
from nnexp.nn import user_layers
from nnexp.sweep.runner import SweepRunner
from nnexp.tracking import RunStore
from nnexp.train import train
from nnexp.ui.server import make_server

EXAMPLE = Path(__file__).parent.parent / "examples" / "layers" / "my_layers.py"

#: a Swish whose backward forgets the sigmoid's own derivative: the mistake gradcheck must name
WRONG_SWISH = """\
import numpy as np
from nnexp.nn import Layer


class Swish(Layer):
    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x, training=True):
        self.x, self.s = x, 1.0 / (1.0 + np.exp(-self.beta * x))
        return x * self.s

    def backward(self, dout):
        return dout * self.s
"""

#: a layer file that leaves a marker file behind when it is imported
MARKING = """\
from pathlib import Path
from nnexp.nn import Layer

Path(__file__).with_name("imported.marker").write_text("imported")


class Identity(Layer):
    def forward(self, x, training=True):
        return x

    def backward(self, dout):
        return dout
"""


def tiny_npz(path: Path, n: int = 240, n_test: int = 60, classes: int = 3, seed: int = 0) -> Path:
    """28x28 grayscale images whose class is a bright band's row: easy to learn in two epochs."""
    rng = np.random.default_rng(seed)

    def images(count):
        y = rng.integers(0, classes, count)
        x = (rng.random((count, 28, 28)) * 60).astype(np.uint8)
        for k in range(classes):
            x[y == k, 4 + 8 * k:8 + 8 * k, :] = 220
        return x, y

    (x, y), (xt, yt) = images(n), images(n_test)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt, classes=np.array([f"c{k}" for k in range(classes)]))
    return path


def write_config(folder: Path, layers: str, engine: str = "fast", store: Path | None = None,
                 epochs: int = 2, name: str = "own") -> Path:
    tiny_npz(folder / "tiny.npz")
    path = folder / "own.yaml"
    path.write_text(textwrap.dedent(f"""\
        data: {{dataset: npz, path: tiny.npz, val_size: 40, batch_size: 32}}
        model:
          engine: {engine}
          layers:
        """) + textwrap.indent(textwrap.dedent(layers), "    ") + textwrap.dedent(f"""\
        optimizer: {{name: adam, lr: 0.01}}
        train: {{epochs: {epochs}, seed: 0}}
        tracking: {{store: {store or folder / 'runs'}, name: {name}, plots: false}}
        """))
    return path


SWISH = """\
- {type: dense, units: 16}
- {type: my_layers.py:Swish, beta: 1.5}
- {type: dense, units: 3}
"""

NORM = """\
- {type: dense, units: 16}
- {type: my_layers.py:LayerNorm}
- {type: relu}
- {type: dense, units: 3}
"""

RESIDUAL = """\
- {type: dense, units: 16}
- type: my_layers.py:Residual
  body:
    - {type: dense, units: 16}
    - {type: my_layers.py:Swish}
- {type: dense, units: 3}
"""


@pytest.fixture
def folder(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "my_layers.py")
    return tmp_path


def weights(run) -> dict:
    with np.load(run.path / "model.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("layers", [SWISH, NORM, RESIDUAL], ids=["swish", "layer-norm", "residual"])
def test_a_user_layer_trains_the_same_on_both_engines(folder, layers):
    runs = {}
    for engine in ("reference", "fast"):
        cfg = load_config(write_config(folder, layers, engine, name=engine))
        runs[engine] = train(cfg, log=lambda m: None, progress=False)
    ref, fast = weights(runs["reference"]), weights(runs["fast"])
    assert sorted(ref) == sorted(fast)
    for name in ref:
        np.testing.assert_allclose(fast[name], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert runs["fast"].summary["test_accuracy"] > 0.9   # three bands: learnt in two epochs
    assert runs["fast"].summary["test_accuracy"] == runs["reference"].summary["test_accuracy"]


def test_a_layer_with_parameters_keeps_them_with_the_weights(folder):
    run = train(load_config(write_config(folder, NORM)), log=lambda m: None, progress=False)
    w = weights(run)
    assert w["2.gamma"].shape == (16,) and w["2.beta"].shape == (16,)   # 0 dense's flatten, 1 dense, 2 norm
    assert not np.allclose(w["2.gamma"], 1.0)   # trained, not left at its initial ones
    assert run.summary["layers"] == "dense(16) | LayerNorm(1e-05) | relu | dense(3)"   # the class name, not its path


def test_a_residual_block_trains_its_inner_layers(folder):
    """The body's parameters are the model's (named <block>.<inner>.<name>) and the
    fast engine's packed buffers are the arrays the inner layers compute with."""
    cfg = load_config(write_config(folder, RESIDUAL))
    run = train(cfg, log=lambda m: None, progress=False)
    w = weights(run)
    assert {"2.0.W", "2.0.b"} <= set(w)   # 0 flatten, 1 dense, 2 the block
    model = ENGINES["fast"].build_model(cfg["model"]["layers"], (1, 28, 28), np.random.default_rng(0))
    block = model.layers[2]
    assert block.params["0.W"] is block.body.layers[0].params["W"]
    model.load_state_dict(w)
    assert np.array_equal(block.body.layers[0].params["W"], w["2.0.W"])


def test_options_are_checked_from_the_constructor_with_every_other_mistake(folder):
    path = write_config(folder, """\
        - {type: dense, units: 16}
        - {type: my_layers.py:Swish, beta: fast, gamma: 2}
        - {type: my_layers.py:LayerNorm, eps: [1]}
        - {type: my_layers.py:Residual}
        - {type: dense, units: 3}
        """)
    path.write_text(path.read_text().replace("lr: 0.01", "lr: -1"))
    with pytest.raises(InvalidConfig) as err:
        load_config(path)
    problems = "\n".join(err.value.problems)
    assert "'model.layers[1].beta' must be a number, got 'fast' (str)" in problems
    assert "unknown key 'model.layers[1].gamma'" in problems and "allowed: beta" in problems
    assert "'model.layers[2].eps' must be a number" in problems
    assert "missing required key 'model.layers[3].body'" in problems
    assert "'optimizer.lr' must be > 0" in problems
    assert len(err.value.problems) == 5


def test_a_composite_layer_checks_its_inner_specs_by_path(folder):
    path = write_config(folder, """\
        - {type: dense, units: 16}
        - type: my_layers.py:Residual
          body:
            - {type: dense, unit: 16}
        - {type: dense, units: 3}
        """)
    with pytest.raises(InvalidConfig) as err:
        load_config(path)
    assert any("'model.layers[1].body[0].unit'; did you mean 'model.layers[1].body[0].units'" in p
               for p in err.value.problems)


def test_a_block_that_changes_the_shape_is_refused_while_the_model_is_built(folder):
    path = write_config(folder, """\
        - {type: dense, units: 16}
        - type: my_layers.py:Residual
          body: [{type: dense, units: 8}]
        - {type: dense, units: 3}
        """)
    with pytest.raises(InvalidConfig) as err:
        load_config(path)
    assert "model.layers: layer 1 (Residual): Residual.forward fails on a per-sample input of shape (16,)" \
        in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("my_layers.py:Swash", "has no class 'Swash' (its layers: LayerNorm, Residual, Swish)"),
    ("missing.py:Swish", "layer file missing.py not found"),
    ("broken.py:Swish", "importing"),
    ("plain.py:Thing", "is not a subclass of nnexp.nn.Layer"),
    ("lazy.py:Lazy", "does not define backward"),
])
def test_a_bad_layer_reference_is_one_line_naming_it(folder, text, message):
    (folder / "broken.py").write_text("import numpy as np\nraise RuntimeError('half written')\n")
    (folder / "plain.py").write_text("class Thing:\n    pass\n")
    (folder / "lazy.py").write_text("from nnexp.nn import Layer\n\nclass Lazy(Layer):\n"
                                    "    def forward(self, x, training=True):\n        return x\n")
    path = write_config(folder, f"- {{type: {text}}}\n- {{type: dense, units: 3}}\n")
    with pytest.raises(InvalidConfig) as err:
        load_config(path)
    assert err.value.problems[0].startswith("'model.layers[0].type': ")
    assert message in err.value.problems[0]


def test_a_layer_from_an_importable_module(folder, monkeypatch):
    package = folder / "site" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, package / "layers.py")
    monkeypatch.syspath_prepend(str(folder / "site"))
    cfg = load_config(write_config(folder, "- {type: dense, units: 16}\n- {type: mypkg.layers:LayerNorm}\n"
                                           "- {type: dense, units: 3}\n"))
    run = train(cfg, log=lambda m: None, progress=False)
    assert (run.path / CODE / "mypkg.layers.py").read_bytes() == EXAMPLE.read_bytes()


def test_gradcheck_passes_a_correct_layer_and_names_a_wrong_backward(folder, nnexp):
    path = write_config(folder, SWISH)
    code, out, _ = nnexp("gradcheck", path)
    assert code == 0 and "Swish" in out and "FAIL" not in out
    (folder / "my_layers.py").write_text(WRONG_SWISH)
    code, out, err = nnexp("gradcheck", path)
    assert code == 1
    failed = [line.split() for line in out.splitlines() if line.endswith("FAIL")]
    assert failed and {row[1] for row in failed} == {"Swish", "Dense"}   # Swish's input, and what lies below it
    assert [row for row in failed if row[1] == "Swish"][0][2] == "input"
    rows = check_config(load_config(path))
    swish = [r for r in rows if r["type"] == "Swish"][0]
    assert swish["error"] > TOLERANCE
    assert all(r["error"] < TOLERANCE for r in rows if r["layer"] > swish["layer"])   # above it all is well


def test_the_run_keeps_a_copy_and_its_sha256(folder):
    run = train(load_config(write_config(folder, RESIDUAL)), log=lambda m: None, progress=False)
    manifest = json.loads((run.path / CODE / MANIFEST).read_text())
    [entry] = manifest["files"]   # one file, though two classes of it are used
    assert entry["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert (run.path / CODE / entry["copy"]).read_bytes() == EXAMPLE.read_bytes()
    assert entry["source"] == str((folder / "my_layers.py").resolve())


def test_resume_refuses_a_changed_layer_file(folder, nnexp, ctrl_c_at_epoch):
    path = write_config(folder, SWISH, epochs=3)
    ctrl_c_at_epoch(2)
    code, _, _ = nnexp("run", path)
    assert code == 130
    ctrl_c_at_epoch(None)
    [info] = RunStore(folder / "runs").runs()
    before = {p.name: p.read_bytes() for p in info.path.iterdir() if p.is_file()}
    layer_file = folder / "my_layers.py"
    original = layer_file.read_text()
    layer_file.write_text(original.replace("return x * self.s", "return 2 * x * self.s"))
    code, _, err = nnexp("resume", info.id, "--store", folder / "runs")
    assert code == 2
    assert f"its layer file {layer_file.resolve()} has changed since the run started" in err
    assert {p.name: p.read_bytes() for p in info.path.iterdir() if p.is_file()} == before   # nothing touched
    # a sweep finding such a trial trains it again from epoch 1 instead (its old files set aside)
    notes = []
    stand_in = types.SimpleNamespace(log=notes.append, _replay_rungs=lambda trial: None)
    trial = types.SimpleNamespace(label=lambda: "trial 0")
    assert SweepRunner._resumable(stand_in, trial, info.path) is False
    assert "has changed since the run started" in notes[0] and notes[0].endswith("training it again from epoch 1")
    layer_file.write_text(original)
    assert SweepRunner._resumable(stand_in, trial, info.path) is True
    code, out, _ = nnexp("resume", info.id, "--store", folder / "runs")
    assert code == 0 and "test accuracy" in out


def test_evaluate_predict_and_ensemble_load_the_runs_copy(folder, nnexp):
    path = write_config(folder, NORM)
    first = train(load_config(path), log=lambda m: None, progress=False)
    second = train(load_config(path, ["train.seed=1"]), log=lambda m: None, progress=False)
    # the user's file now breaks on import: only the run's own copy can give the network
    (folder / "my_layers.py").write_text("raise RuntimeError('being rewritten')\n")
    store = folder / "runs"
    code, out, err = nnexp("evaluate", first.id, "--store", store, "--json")
    assert code == 0, err
    assert json.loads(out)["matches_recorded"] is True
    image = folder / "band.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[12:16, :] = 255   # the band of class c1
    Image.fromarray(pixels).save(image)
    code, out, err = nnexp("predict", first.id, image, "--store", store, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["prediction"] in ("c0", "c1", "c2")
    code, out, err = nnexp("ensemble", first.id, second.id, "--store", store, "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] > 0.9


def test_evaluate_refuses_a_copy_that_no_longer_matches_its_sha256(folder, nnexp):
    run = train(load_config(write_config(folder, SWISH)), log=lambda m: None, progress=False)
    copy = run.path / CODE / "my_layers.py"
    copy.write_text(copy.read_text() + "\n# edited\n")
    code, _, err = nnexp("evaluate", run.id, "--store", folder / "runs")
    assert code == 1 and "no longer matches the sha256" in err


def test_listing_showing_comparing_and_serving_runs_import_no_user_code(folder, nnexp):
    (folder / "marking.py").write_text(MARKING)
    path = write_config(folder, "- {type: dense, units: 16}\n- {type: marking.py:Identity}\n"
                                "- {type: dense, units: 3}\n")
    run = train(load_config(path), log=lambda m: None, progress=False)
    other = train(load_config(path, ["train.seed=1"]), log=lambda m: None, progress=False)
    marker = folder / "imported.marker"
    assert marker.exists()   # running the config did import it
    marker.unlink()
    # forget the imported file, so that any import below would run it (and write the marker) again
    user_layers._FILES.clear()
    for name in [m for m in sys.modules if m.startswith("nnexp_user_layers.")]:
        del sys.modules[name]
    store = folder / "runs"
    for args in (("runs",), ("runs", "--json"), ("show", run.id), ("compare", run.id, other.id),
                 ("diff", run.id, other.id)):
        code, _, err = nnexp(*args, "--store", store)
        assert code == 0, (args, err)
    server = make_server(store, "127.0.0.1", 0)
    server.dashboard.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        for target in ("/api/runs", f"/api/runs/{run.id}", f"/api/runs/{run.id}/metrics",
                       f"/api/runs/{run.id}/diagnostics", f"/api/runs/{run.id}/charts", f"/runs/{run.id}"):
            conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
            conn.request("GET", target)
            assert conn.getresponse().status == 200, target
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
        server.dashboard.stop()
    assert not marker.exists() and not list(store.rglob("imported.marker"))
