"""The worked example of docs/your-layers.md: examples/layers/ checks, its
documented mistake is caught at the layer that makes it, its sweep plans as described."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nnexp.config import load_config
from nnexp.gradients import TOLERANCE, check_config
from nnexp.sweep.spec import load_spec, plan

EXAMPLES = Path(__file__).parent.parent / "examples" / "layers"
#: the mistake docs/your-layers.md shows: beta left out of the backward's second term
RIGHT = "return dout * (s + self.beta * self.x * s * (1.0 - s))"
WRONG = "return dout * (s + self.x * s * (1.0 - s))"


@pytest.mark.parametrize("name", ["swish.yaml", "layer-norm.yaml"])
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_the_example_layers_pass_gradcheck(name, engine):
    rows = check_config(load_config(EXAMPLES / name, [f"model.engine={engine}"]))
    assert {"Swish"} <= {r["type"] for r in rows}
    assert all(r["error"] < TOLERANCE for r in rows), [r for r in rows if r["error"] >= TOLERANCE]


def test_the_documented_mistake_fails_from_the_layer_that_makes_it(tmp_path, nnexp):
    for name in ("my_layers.py", "swish.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    source = (tmp_path / "my_layers.py").read_text()
    assert RIGHT in source
    (tmp_path / "my_layers.py").write_text(source.replace(RIGHT, WRONG))
    code, out, _ = nnexp("gradcheck", tmp_path / "swish.yaml", "model.layers.1.beta=1.5")
    assert code == 1
    rows = [line.split() for line in out.splitlines()[1:]]
    highest_failing = max((r for r in rows if r[-1] == "FAIL"), key=lambda r: int(r[0]))
    assert highest_failing[1] == "Swish"
    assert all(r[-1] == "ok" for r in rows if int(r[0]) > int(highest_failing[0]))


def test_the_sweep_compares_swish_with_relu_over_three_seeds():
    trials = plan(load_spec(EXAMPLES / "swish-vs-relu.yaml"), log=lambda m: None)
    kinds = [t.config["model"]["layers"][1]["type"] for t in trials]
    assert kinds == ["relu"] * 3 + [f"{(EXAMPLES / 'my_layers.py').resolve()}:Swish"] * 3
    assert [t.seed for t in trials] == [0, 1, 2] * 2
