"""The examples/ of tracking your own code, run on a small subset of MNIST:
the plain NumPy network tracked with nnexp.init, and its TPE sweep over seeds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nnexp.tracking.records import make_record
from nnexp.ui.api import Api
from nnexp.ui.snapshot import StoreSnapshot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMALL = "--train-size 1000 --iterations 30"


def network_lines() -> list[str]:
    """The example's lines that are about nnexp (marked so in the file)."""
    return [line for line in (EXAMPLES / "numpy_net.py").read_text().splitlines() if "# nnexp" in line]


def test_the_numpy_network_is_tracked_by_a_handful_of_lines():
    lines = network_lines()
    assert 4 <= len(lines) <= 8
    code = (EXAMPLES / "numpy_net.py").read_text()
    network = code[code.index("def init_params"):code.index("def main")]
    assert "nnexp" not in network  # the forward, backward and update know nothing of the tracker


@pytest.mark.integration
def test_the_example_and_its_tpe_sweep_give_runs_a_comparison_and_dashboard_answers(tmp_path, nnexp):
    store = tmp_path / "runs"
    env = dict(os.environ, NNEXP_STORE=str(store), OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(EXAMPLES / "numpy_net.py"), "--lr", "0.5", *SMALL.split()],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [single] = [p for p in store.iterdir() if p.is_dir()]
    record = make_record(single)
    assert record["summary"]["status"] == "completed" and record["params"]["lr"] == 0.5
    assert 0.3 < record["metrics"]["test_accuracy"] <= 1 and record["metrics"]["epochs"] == 3.0
    assert (single / "weights.npz").exists()

    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder)
    spec = yaml.safe_load((folder / "numpy_net_sweep.yaml").read_text())
    spec.update(n_trials=2, startup_trials=2, command=spec["command"] + " " + SMALL)  # the same sweep, smaller
    (folder / "numpy_net_sweep.yaml").write_text(yaml.safe_dump(spec))
    done = subprocess.run([sys.executable, "-m", "nnexp", "sweep", str(folder / "numpy_net_sweep.yaml"),
                           "--store", str(store), "--workers", "2", "-q"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    code, out, err = nnexp("compare", "--store", store, "--sweep", spec["name"], "--json")
    assert code == 0, err
    table = json.loads(out)
    assert len(table) == 2 and all(row["runs"] == 3 for row in table)  # two points, three seeds each
    assert table[0]["val_accuracy"] >= table[1]["val_accuracy"]

    api = Api(store, StoreSnapshot(store))
    trial = next(r for r in make_records(store) if r["summary"].get("sweep"))
    page = api.run(trial["id"])
    assert page["status"] == "completed" and page["params"]["hidden"] in (10, 32, 64)
    assert page["config"]["seed"] == page["summary"]["seed"]
    charts = api.charts(trial["id"])["charts"]
    curves = next(c for c in charts if c["id"] == "curves")["figure"]
    assert curves["layout"]["xaxis"]["title"]["text"] == "step"
    assert {t["name"] for t in curves["data"]} >= {"train", "validation"}


def make_records(store: Path) -> list[dict]:
    return [make_record(p) for p in sorted(store.iterdir()) if (p / "summary.json").exists()]
